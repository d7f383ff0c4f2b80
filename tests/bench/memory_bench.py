#!/usr/bin/env python3
"""Resident memory, idle and with 100,000 requests queued (SPEC §12).

privacyd serves on a throwaway PostgreSQL with no workflows loaded, so
every request it accepts stays queued (`received`); the load generator
sends TOTAL signed request webhooks. VmRSS is sampled from /proc: idle
after start, the peak while the queue fills, and settled afterwards. The
SPEC's bars are absolute (40 MB idle, 200 MB queued); the figures are
printed beside them and nothing is asserted.
"""
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import BIN, Daemon, PgCluster, write_config  # noqa: E402

BUILD = os.path.dirname(os.path.abspath(BIN))
LOADGEN = os.environ.get("PRIVACYD_LOADGEN", os.path.join(BUILD, "tests", "bench", "privacyd_loadgen"))
TOTAL = int(os.environ.get("BENCH_QUEUED", "100000"))
CLIENTS = int(os.environ.get("BENCH_CLIENTS", "32"))


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def main():
    pg = PgCluster()
    work = tempfile.mkdtemp(prefix="privacyd-memory-bench-")
    daemon = None
    try:
        empty = os.path.join(work, "no-workflows")
        os.makedirs(empty)
        config = write_config(work, database=pg.dsn(), workflows=empty, log_level="info")
        daemon = Daemon(config)
        daemon.wait_ready()
        pid = daemon.proc.pid
        time.sleep(2)
        idle = []
        for _ in range(5):
            idle.append(rss_mb(pid))
            time.sleep(0.5)
        peak = [0.0]
        done = threading.Event()

        def sample():
            while not done.is_set():
                peak[0] = max(peak[0], rss_mb(pid))
                time.sleep(0.1)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.monotonic()
        out = subprocess.run([LOADGEN, "--port", str(daemon.port()), "--connections", str(CLIENTS),
                              "--secret-file", os.path.join(work, "var", "keys", "webhook-secrets"),
                              "--total", str(TOTAL)], capture_output=True, text=True, timeout=3600)
        took = time.monotonic() - started
        if out.returncode != 0:
            raise SystemExit(f"load generator failed: {out.stdout} {out.stderr}")
        time.sleep(5)
        settled = []
        for _ in range(5):
            settled.append(rss_mb(pid))
            time.sleep(0.5)
        done.set()
        queued = int(pg.psql("SELECT COUNT(*) FROM requests WHERE status = 'received'").strip())
        print(f"resident memory, privacyd on PostgreSQL, no workflows (requests stay queued)")
        print(f"  idle                {statistics.median(idle):7.1f} MB   (SPEC §12 bar: <= 40 MB;"
              f" {statistics.median(idle) / 40:.2f} of it)")
        print(f"  filling, peak       {peak[0]:7.1f} MB   ({TOTAL} webhooks from {CLIENTS} clients in {took:.0f} s)")
        print(f"  {queued:6d} queued      {statistics.median(settled):7.1f} MB   (SPEC §12 bar: <= 200 MB;"
              f" {statistics.median(settled) / 200:.2f} of it)")
    finally:
        if daemon:
            daemon.stop()
        pg.destroy()
        subprocess.run(["rm", "-rf", work])


if __name__ == "__main__":
    main()
