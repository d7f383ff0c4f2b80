#!/usr/bin/env python3
"""Intake throughput against the PostgreSQL baseline (SPEC §12).

In one run, on one machine, against one PostgreSQL cluster (fsync on):
  - privacyd serve takes signed webhooks from the load generator
    (build/tests/bench/privacyd_loadgen, C connections, unique ids);
  - pgbench, at the same client concurrency, inserts the same rows (the
    delivery, the subject upsert, the request) into the same tables with
    the same indexes, created by `privacyd migrate`, one transaction each.
Each side runs ROUNDS times, alternating; medians and their ratio are
printed. Nothing is asserted: the machine is shared and noisy.
"""
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import BIN, Daemon, PgCluster, write_config  # noqa: E402

BUILD = os.path.dirname(os.path.abspath(BIN))
LOADGEN = os.environ.get("PRIVACYD_LOADGEN", os.path.join(BUILD, "tests", "bench", "privacyd_loadgen"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))
SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))

PGBENCH_SCRIPT = r"""
\set n random(1, 999999999999)
BEGIN;
INSERT INTO webhook_deliveries(webhook_id, body_sha256, status, response, received_at) VALUES ('pgb_' || :client_id || '_' || :n, 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855', 202, '{"request_id":"req_01m8b5n71ye5fm6f43330awtfk","status":"received","deadline":"2026-12-26T05:36:06.718Z"}', 1795669200000) ON CONFLICT (webhook_id) DO NOTHING RETURNING webhook_id;
INSERT INTO subjects(id, huawei_index, huawei_id_enc, contact_enc, locale, created_at, updated_at) VALUES ('sub_' || :client_id || '_' || :n, md5('a' || :client_id || '_' || :n) || md5('b' || :client_id || '_' || :n), 'v1.0123456789ab.QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2', 'v1.0123456789ab.QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9wcXJzdHV2QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWZnaGlqa2xtbm9w', 'en', 1795669200000, 1795669200000) ON CONFLICT (huawei_index) DO UPDATE SET contact_enc = COALESCE(excluded.contact_enc, subjects.contact_enc), locale = COALESCE(excluded.locale, subjects.locale), updated_at = excluded.updated_at RETURNING id;
INSERT INTO requests(id, webhook_id, type, subject_id, partner_id, categories, jurisdiction, status, occurred_at, received_at, deadline_at, updated_at) VALUES ('req_' || :client_id || '_' || :n, 'pgb_' || :client_id || '_' || :n, 'access', 'sub_' || :client_id || '_' || :n, NULL, '[]', 'default', 'received', 1795669200000, 1795669200000, 1797261200000, 1795669200000);
COMMIT;
"""


def run_loadgen(daemon, secrets):
    out = subprocess.run([LOADGEN, "--port", str(daemon.port()), "--secret-file", secrets,
                          "--connections", str(CLIENTS), "--duration", str(SECONDS), "--warmup", "2"],
                         capture_output=True, text=True, timeout=SECONDS + 120)
    if out.returncode != 0:
        raise SystemExit(f"load generator failed: {out.stdout} {out.stderr}")
    return json.loads(out.stdout)


def run_pgbench(pg, script, logdir):
    for f in os.listdir(logdir):
        os.remove(os.path.join(logdir, f))
    out = subprocess.run([f"{pg.bindir}/pgbench", "-h", "127.0.0.1", "-p", str(pg.port), "-U", "privacyd",
                          "-n", "-M", os.environ.get("BENCH_PGBENCH_MODE", "extended"), "-c", str(CLIENTS), "-j", "2", "-T", str(int(SECONDS)),
                          "-f", script, "--log", f"--log-prefix={logdir}/tx", "pgbench"],
                         capture_output=True, text=True, timeout=SECONDS + 120)
    if out.returncode != 0:
        raise SystemExit(f"pgbench failed: {out.stdout} {out.stderr}")
    tps = float(re.search(r"tps = ([\d.]+)", out.stdout).group(1))
    latencies = []
    for name in os.listdir(logdir):
        with open(os.path.join(logdir, name)) as f:
            for line in f:
                parts = line.split()
                latencies.append(int(parts[2]) / 1000.0)  # microseconds → ms
    latencies.sort()
    pct = lambda p: latencies[min(len(latencies) - 1, int(p * len(latencies)))] if latencies else 0.0
    return {"rate": tps, "p50_ms": pct(0.50), "p99_ms": pct(0.99)}


def main():
    pg = PgCluster(fsync=True)
    work = tempfile.mkdtemp(prefix="privacyd-bench-")
    try:
        pg.psql("CREATE DATABASE pgbench")
        config = write_config(work, database=pg.dsn("privacyd"), log_level="info")
        # The baseline's tables are privacyd's own, created by migrate.
        base_cfg = write_config(os.path.join(work, "baseline"), database=pg.dsn("pgbench"))
        subprocess.run([BIN, "migrate", "--config", base_cfg], check=True, capture_output=True)
        script = os.path.join(work, "intake.sql")
        with open(script, "w") as f:
            f.write(PGBENCH_SCRIPT)
        logdir = os.path.join(work, "pgbench-log")
        os.makedirs(logdir)
        daemon = Daemon(config)
        daemon.wait_ready()
        secrets = os.path.join(work, "var", "keys", "webhook-secrets")
        ours, theirs = [], []
        for i in range(ROUNDS):
            ours.append(run_loadgen(daemon, secrets))
            theirs.append(run_pgbench(pg, script, logdir))
            print(f"round {i + 1}: privacyd {ours[-1]['rate']:.0f}/s (p99 {ours[-1]['p99_ms']:.1f} ms), "
                  f"pgbench {theirs[-1]['rate']:.0f}/s (p99 {theirs[-1]['p99_ms']:.1f} ms)", flush=True)
        daemon.stop()
        med = lambda rows, k: statistics.median(r[k] for r in rows)
        rate, base = med(ours, "rate"), med(theirs, "rate")
        stored = int(pg.psql("SELECT COUNT(*) FROM requests").strip())
        print()
        print(f"intake on PostgreSQL, {CLIENTS} clients, {SECONDS:.0f} s x {ROUNDS} rounds (medians)")
        print(f"  privacyd  {rate:9.0f} webhooks/s   p50 {med(ours, 'p50_ms'):6.2f} ms   p99 {med(ours, 'p99_ms'):6.2f} ms")
        print(f"  pgbench   {base:9.0f} tx/s         p50 {med(theirs, 'p50_ms'):6.2f} ms   p99 {med(theirs, 'p99_ms'):6.2f} ms")
        print(f"  ratio     {rate / base:9.2f}   (SPEC §12 bar: >= 1.0)")
        print(f"  requests committed by privacyd: {stored}")
    finally:
        pg.destroy()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
