#!/usr/bin/env python3
"""kill -9 at random instants during a run of disassociations (SPEC §12).

PostgreSQL with fsync on, the shipped workflows and demo systems, and
`privacyd receive` playing the partner. N subjects are associated; then N
disassociation webhooks are sent by CLIENTS threads that, like the Partner
Center, send a delivery again (same webhook-id) until it is answered. While
they send and while the engine works, privacyd is killed with SIGKILL at
random instants and started again at once, KILLS times. Then it runs until
every accepted request has finished. Printed: what was accepted, what
finished, what was lost (must be nothing), and notice deliveries: repeats
are allowed only with the same notice id, and no request may have two
partner notices. Nothing is asserted; the verdict line says whether the
SPEC's crash bar held.
"""
import collections
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import (BIN, Daemon, PgCluster, demo_setup, free_port, new_secret, use_policies, wait_for,  # noqa: E402
                     write_config, write_secrets)

N = int(os.environ.get("BENCH_REQUESTS", "5000"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "8"))
KILLS = int(os.environ.get("BENCH_KILLS", "8"))
ENGINE = "engine: { lease: 3s, poll: 200ms, concurrency: 64 }\n"


def main():
    random.seed(int(os.environ.get("BENCH_SEED", str(int(time.time())))))
    pg = PgCluster(fsync=True)
    work = tempfile.mkdtemp(prefix="privacyd-crash-bench-")
    state = {"daemon": None}
    receiver = None
    try:
        port = free_port()
        policies = demo_setup(work, f"http://127.0.0.1:{port}/notices", new_secret())
        secret = new_secret()
        config = write_config(work, database=pg.dsn(), log_level="info", extra=ENGINE)
        use_policies(config, policies)
        write_secrets(work, [secret])
        subprocess.run([BIN, "demo", "--config", config], check=True, capture_output=True)
        receiver = subprocess.Popen([BIN, "receive", "--listen", f"127.0.0.1:{port}", "--secret-file",
                                     os.path.join(work, "var", "keys", "partner-P-1001.secret"),
                                     "--dir", os.path.join(work, "partner-notices")],
                                    stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        received = collections.Counter()

        def read_receiver():
            for line in receiver.stdout:
                parts = line.split()
                if len(parts) >= 2 and parts[0] == "received":
                    received[parts[1]] += 1
        threading.Thread(target=read_receiver, daemon=True).start()

        lock = threading.Lock()
        state["daemon"] = Daemon(config)
        state["daemon"].wait_ready()

        def send(body, msg_id):
            # The Partner Center's side: again, with the same id, until answered.
            while True:
                with lock:
                    d = state["daemon"]
                try:
                    status, resp = d.webhook(body, secret, msg_id=msg_id)
                    if status in (200, 202):
                        return resp
                    if status not in (503,):
                        raise SystemExit(f"unexpected answer {status}: {resp}")
                except (OSError, KeyError, ValueError):
                    pass
                time.sleep(0.2)

        def associate(worker):
            for i in range(worker, N, CLIENTS):
                send({"type": "association.created", "occurred_at": "2026-11-26T05:00:00Z",
                      "statement_version": "1.0", "partner": {"id": "P-1001"},
                      "subject": {"huawei_id": f"crash-{i}"}}, f"assoc-{i}")
        threads = [threading.Thread(target=associate, args=(w,)) for w in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

        accepted = []

        def disassociate(worker):
            for i in range(worker, N, CLIENTS):
                resp = send({"type": "request.disassociation", "occurred_at": "2026-11-26T05:00:00Z",
                             "partner": {"id": "P-1001"},
                             "subject": {"huawei_id": f"crash-{i}", "email": f"crash-{i}@example.com"}},
                            f"disassoc-{i}")
                with lock:
                    accepted.append(resp["request_id"])

        def killer():
            for _ in range(KILLS):
                time.sleep(random.uniform(0.5, 4.0))
                with lock:
                    d = state["daemon"]
                d.proc.kill()
                d.wait_exit(timeout=30)
                fresh = Daemon(config)
                fresh.wait_ready(timeout=60)
                with lock:
                    state["daemon"] = fresh
        started = time.monotonic()
        threads = [threading.Thread(target=disassociate, args=(w,)) for w in range(CLIENTS)]
        threads.append(threading.Thread(target=killer))
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        count = lambda sql: int(pg.psql(sql).strip())
        wait_for(lambda: count("SELECT COUNT(*) FROM requests WHERE type = 'disassociation'"
                               " AND status IN ('completed', 'failed', 'rejected')") >= len(set(accepted)),
                 timeout=3600, interval=0.5, what="every accepted request to finish")
        wait_for(lambda: count("SELECT COUNT(*) FROM notices WHERE status = 'pending'") == 0, timeout=600,
                 interval=0.5, what="the outbox to empty")
        took = time.monotonic() - started
        statuses = dict(line.split("|") for line in
                        pg.psql("SELECT id, status FROM requests WHERE type = 'disassociation'").split())
        stored = sum(1 for r in set(accepted) if r in statuses)
        completed = sum(1 for r in set(accepted) if statuses.get(r) == "completed")
        notices = pg.psql("SELECT id FROM notices WHERE channel = 'partner' AND status = 'delivered'").split()
        doubled = count("SELECT COUNT(*) FROM (SELECT request_id FROM notices WHERE channel = 'partner'"
                        " GROUP BY request_id HAVING COUNT(*) > 1) x")
        never = [n for n in notices if received[n] == 0]
        repeats = sum(c - 1 for c in received.values() if c > 1)
        lost = len(set(accepted)) - completed
        print(f"kill -9 x {KILLS} during {N} disassociations (PostgreSQL fsync on), {took:.0f} s")
        print(f"  accepted {len(set(accepted))}, stored {stored}, completed {completed}, lost {lost}")
        print(f"  partner notices delivered {len(notices)}, received {len(received)} distinct ids,"
              f" repeats with the same id {repeats}, delivered but never received {len(never)},"
              f" requests with two partner notices {doubled}")
        held = lost == 0 and stored == len(set(accepted)) and not never and doubled == 0
        print(f"  verdict: {'held' if held else 'BROKEN'} (SPEC §12: every accepted request completes,"
              f" no notice is lost, duplicates only with the same id)")
    finally:
        if state["daemon"]:
            state["daemon"].kill()
        if receiver:
            receiver.terminate()
            receiver.wait(timeout=30)
        pg.destroy()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
