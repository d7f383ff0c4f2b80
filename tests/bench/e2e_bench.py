#!/usr/bin/env python3
"""Disassociations end to end against the intake rate (SPEC §12).

One run, one machine, PostgreSQL with fsync on (BENCH_FSYNC=off to see
what durability costs), the shipped workflows and
policies with the demo data systems, and `privacyd receive` playing the
partner on loopback (it verifies every signature). N subjects are
associated with P-1001; then N disassociation webhooks are sent as fast as
they are accepted while the engine works. Printed: the intake rate (N over
the time to accept them all), the end-to-end rate (N over the time until
every request has finished: unlink, holdings, the partner's notice
delivered, the person's notice written), and their ratio; PostgreSQL
transactions and CPU milliseconds (privacyd's, and PostgreSQL's) per
request; then, on the idle system, one disassociation at a time: the
median and 99th percentile from receipt to completion, and the median
transactions each took. Nothing is asserted.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import (BIN, Daemon, PgCluster, demo_setup, free_port, new_secret, use_policies, wait_for,  # noqa: E402
                     write_config)

BUILD = os.path.dirname(os.path.abspath(BIN))
LOADGEN = os.environ.get("PRIVACYD_LOADGEN", os.path.join(BUILD, "tests", "bench", "privacyd_loadgen"))
N = int(os.environ.get("BENCH_REQUESTS", "2000"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))
CONCURRENCY = int(os.environ.get("BENCH_ENGINE_CONCURRENCY", "16"))  # engine.concurrency
POOL = int(os.environ.get("BENCH_DATABASE_POOL", "4"))  # database_pool
STATEMENTS = os.environ.get("BENCH_STATEMENTS") == "1"  # print pg_stat_statements' top statements


def loadgen(daemon, secrets, *args):
    out = subprocess.run([LOADGEN, "--port", str(daemon.port()), "--secret-file", secrets, "--connections",
                          str(CLIENTS), "--partner", "P-1001", "--subject-prefix", "e2e", "--subjects", str(N),
                          "--total", str(N), *args], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise SystemExit(f"load generator failed: {out.stdout} {out.stderr}")


IDLE = int(os.environ.get("BENCH_IDLE_REQUESTS", "40"))
TICK_MS = 1000 / os.sysconf("SC_CLK_TCK")


def cpu_ms(pid, children=False):
    """CPU time of a process (and of its children it has waited for)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    ticks = int(fields[11]) + int(fields[12])  # utime, stime
    if children:
        ticks += int(fields[13]) + int(fields[14])  # cutime, cstime
    return ticks * TICK_MS


def postgres_cpu_ms(pg):
    """The cluster's CPU time: the postmaster, the backends it has reaped,
    and every process still running under it."""
    with open(os.path.join(pg.data, "postmaster.pid")) as f:
        postmaster = int(f.readline())
    total = cpu_ms(postmaster, children=True)
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            if int(fields[1]) == postmaster:
                total += (int(fields[11]) + int(fields[12])) * TICK_MS
        except (OSError, ValueError):
            continue  # gone meanwhile
    return total


def xids(pg):
    """The next transaction id: how many write transactions the cluster has
    begun (counted exactly, where xact_commit is flushed late)."""
    return int(pg.psql("SELECT pg_snapshot_xmax(pg_current_snapshot())").strip())


def wal(pg):
    """Where PostgreSQL's write-ahead log stands, in bytes."""
    return int(pg.psql("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").strip().split(".")[0])


def percentile(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    pg = PgCluster(fsync=os.environ.get("BENCH_FSYNC", "on") == "on")
    if STATEMENTS:
        # Where PostgreSQL's time goes, statement by statement.
        pg.psql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'")
        pg.stop()
        pg.start()
        pg.psql("CREATE EXTENSION pg_stat_statements")
    work = tempfile.mkdtemp(prefix="privacyd-e2e-bench-")
    receiver = daemon = None
    try:
        port = free_port()
        partner_secret = new_secret()
        policies = demo_setup(work, f"http://127.0.0.1:{port}/notices", partner_secret)
        config = write_config(work, database=pg.dsn(), log_level="info",
                              extra=f"engine: {{ concurrency: {CONCURRENCY} }}\ndatabase_pool: {POOL}\n")
        use_policies(config, policies)
        subprocess.run([BIN, "demo", "--config", config], check=True, capture_output=True)
        receiver = subprocess.Popen([BIN, "receive", "--listen", f"127.0.0.1:{port}", "--secret-file",
                                     os.path.join(work, "var", "keys", "partner-P-1001.secret"),
                                     "--dir", os.path.join(work, "partner-notices")],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        daemon = Daemon(config)
        daemon.wait_ready()
        secrets = os.path.join(work, "var", "keys", "webhook-secrets")
        # Intake alone: association webhooks start no workflow, so what
        # they cost is what accepting a webhook costs.
        intake_cpu_before, intake_wal_before = cpu_ms(daemon.proc.pid) + postgres_cpu_ms(pg), wal(pg)
        loadgen(daemon, secrets, "--type", "association.created")
        intake_cpu = (cpu_ms(daemon.proc.pid) + postgres_cpu_ms(pg) - intake_cpu_before) / N
        intake_wal = (wal(pg) - intake_wal_before) / N
        xacts = lambda: int(pg.psql("SELECT xact_commit FROM pg_stat_database WHERE datname = 'privacyd'").strip())
        time.sleep(11)  # the association phase's counts flushed first
        if STATEMENTS:
            pg.psql("SELECT pg_stat_statements_reset()")
        xact_before, xid_before, wal_before = xacts(), xids(pg), wal(pg)
        cpu_before = (cpu_ms(daemon.proc.pid), postgres_cpu_ms(pg))
        started = time.monotonic()
        loadgen(daemon, secrets, "--type", "request.disassociation")
        accepted = time.monotonic() - started
        count = lambda sql: int(pg.psql(sql).strip())
        wait_for(lambda: count("SELECT COUNT(*) FROM requests WHERE status IN ('completed', 'failed', 'rejected')") >= N,
                 timeout=3600, interval=0.1, what="every disassociation to finish")
        finished = time.monotonic() - started
        # Long-lived connections report their counts to pg_stat_database
        # only every few seconds, and 10 s after they go idle: both counts
        # are taken after that (the idle daemon's few polls included).
        time.sleep(11)
        committed = xacts() - xact_before
        writes = xids(pg) - xid_before
        logged = (wal(pg) - wal_before) / N
        cpu_privacyd = cpu_ms(daemon.proc.pid) - cpu_before[0]
        cpu_postgres = postgres_cpu_ms(pg) - cpu_before[1]
        completed = count("SELECT COUNT(*) FROM requests WHERE status = 'completed'")
        delivered = count("SELECT COUNT(*) FROM notices WHERE channel = 'partner' AND status = 'delivered'")
        intake, e2e = N / accepted, N / finished
        print(f"disassociations end to end, PostgreSQL (fsync {'on' if pg.fsync else 'off'}), {CLIENTS} clients, {N} requests,"
              f" engine.concurrency {CONCURRENCY}")
        print(f"  intake        {intake:8.0f} requests/s accepted   ({accepted:.1f} s)")
        print(f"  end to end    {e2e:8.0f} requests/s finished   ({finished:.1f} s; {completed} completed,"
              f" {delivered} partner notices delivered)")
        print(f"  ratio         {e2e / intake:8.2f}   (SPEC §12 bar: >= 0.5)")
        print(f"  PostgreSQL    {committed / finished:8.0f} transactions/s committed"
              f" ({committed / N:.1f} per request; {writes / N:.1f} transaction ids assigned, i.e. writes)")
        print(f"  CPU           {cpu_privacyd / N:8.2f} ms privacyd, {cpu_postgres / N:.2f} ms PostgreSQL per request")
        # Sustained, the cores carry intake and engine both: a machine that
        # accepts 1/I webhooks a CPU-millisecond finishes at most
        # I/(I+E) of that many requests end to end (I: intake alone, per
        # webhook; E: the rest of a request, per request).
        whole = (cpu_privacyd + cpu_postgres) / N
        print(f"  capacity      {intake_cpu:8.2f} ms CPU per webhook for intake alone (association webhooks),"
              f" {whole:.2f} ms per request end to end: sustained ratio at most {intake_cpu / whole:.2f}")
        # What the durable record costs: the log each writes (the requests'
        # include their webhooks').
        print(f"  WAL           {intake_wal / 1024:8.1f} KiB per webhook for intake alone, {logged / 1024:.1f} KiB per"
              f" request end to end")
        # Where the time goes: each step's median time from start to
        # finish, and from the request's receipt to the step's start.
        rows = pg.psql("SELECT s.step_id, percentile_cont(0.5) WITHIN GROUP (ORDER BY s.finished_at - s.started_at),"
                       " percentile_cont(0.5) WITHIN GROUP (ORDER BY s.started_at - r.received_at)"
                       " FROM request_steps s JOIN requests r ON r.id = s.request_id"
                       " GROUP BY s.step_id, s.idx ORDER BY s.idx")
        print("  step                 median ms in step   median ms from receipt to start")
        for line in rows.strip().splitlines():
            step, in_step, to_start = line.split("|")
            print(f"  {step:20s} {float(in_step or 0):17.0f}   {float(to_start or 0):17.0f}")
        if STATEMENTS:
            top = pg.psql("SELECT calls, round(total_exec_time::numeric, 0), round(mean_exec_time::numeric, 3),"
                          " left(regexp_replace(query, '\\s+', ' ', 'g'), 110)"
                          " FROM pg_stat_statements ORDER BY total_exec_time DESC LIMIT 15")
            print("  PostgreSQL's statements by total time (calls, total ms, mean ms, statement)")
            for line in top.strip().splitlines():
                calls, total, mean, query = line.split("|", 3)
                print(f"  {int(calls):8d} {float(total):9.0f} {float(mean):8.3f}  {query}")
        idle(daemon, pg, secrets)
    finally:
        if daemon:
            daemon.stop()
        if receiver:
            receiver.terminate()
            receiver.wait(timeout=30)
        pg.destroy()
        subprocess.run(["rm", "-rf", work])


def idle(daemon, pg, secrets):
    """One disassociation at a time on an otherwise idle system: receipt to
    completion as the database records it, and the write transactions it
    took, counted exactly by the transaction ids PostgreSQL handed out
    meanwhile (xact_commit is flushed by long-lived connections only every
    few seconds; the background jobs' few writes are included)."""
    subprocess.run([LOADGEN, "--port", str(daemon.port()), "--secret-file", secrets, "--connections", "1",
                    "--partner", "P-1001", "--subject-prefix", "idle", "--subjects", str(IDLE), "--total",
                    str(IDLE), "--type", "association.created"], check=True, capture_output=True, timeout=600)
    with open(secrets) as f:
        secret = next(line.strip() for line in f if line.startswith("whsec_"))
    latencies, per_request = [], []
    for i in range(IDLE):
        before = xids(pg)
        status, resp = daemon.webhook({"type": "request.disassociation", "occurred_at": "2026-11-26T05:00:00Z",
                                       "subject": {"huawei_id": f"idle-{i}"}, "partner": {"id": "P-1001"}}, secret)
        if status != 202:
            raise SystemExit(f"idle request refused: {status} {resp}")
        rid = resp["request_id"]
        wait_for(lambda: pg.psql(f"SELECT status FROM requests WHERE id = '{rid}'").strip() in
                 ("completed", "failed", "rejected"), timeout=60, interval=0.005, what="an idle request")
        per_request.append(xids(pg) - before)
        latencies.append(float(pg.psql(f"SELECT updated_at - received_at FROM requests WHERE id = '{rid}'").strip()))
    print(f"  idle, one at a time ({IDLE} requests): receipt to completion p50 {statistics.median(latencies):.0f} ms,"
          f" p99 {percentile(latencies, 99):.0f} ms; {statistics.median(per_request):.0f} write transactions each (median)")


if __name__ == "__main__":
    main()
