#!/usr/bin/env python3
"""GET /healthz against nginx returning a fixed 200 (SPEC §12).

In one run, on one machine, under the same wrk load (threads, connections,
seconds): privacyd with `io_threads: 2` and nginx with `worker_processes
2`, alternating for ROUNDS rounds. Medians and their ratio are printed;
nothing is asserted (the machine is shared and noisy).
"""
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import Daemon, free_port, wait_for, write_config  # noqa: E402

WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
CONNECTIONS = int(os.environ.get("BENCH_CONNECTIONS", "64"))
SECONDS = int(os.environ.get("BENCH_SECONDS", "10"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))

NGINX_CONF = """
daemon off;
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  keepalive_requests 1000000;
  server {{
    listen 127.0.0.1:{port};
    location = /healthz {{ default_type application/json; return 200 '{{"status":"ok"}}'; }}
  }}
}}
"""


def cpu_ms(pids):
    """User plus system CPU of these processes so far, from /proc."""
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total * 1000 / os.sysconf("SC_CLK_TCK")


def wrk(port, pids):
    before = cpu_ms(pids)
    out = subprocess.run(["wrk", "-t", str(WORKERS), "-c", str(CONNECTIONS), "-d", f"{SECONDS}s", "--latency",
                          f"http://127.0.0.1:{port}/healthz"], capture_output=True, text=True, timeout=SECONDS + 60)
    if out.returncode != 0:
        raise SystemExit(f"wrk failed: {out.stdout} {out.stderr}")
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out.stdout).group(1))
    def ms(label):
        m = re.search(rf"{label}%\s+([\d.]+)(us|ms|s)", out.stdout)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out.stdout)
    served = int(re.search(r"(\d+) requests in", out.stdout).group(1))
    # CPU per request is steadier than the rate on a shared machine: wrk
    # runs on the same cores, and what one server saves wrk can use.
    cpu_us = (cpu_ms(pids) - before) * 1000 / max(served, 1)
    return {"rate": rate, "p50_ms": ms("50"), "p99_ms": ms("99"), "cpu_us": cpu_us,
            "non2xx": int(errors.group(1)) if errors else 0}


def main():
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None and not os.path.exists(f"/usr/sbin/{tool}"):
            raise SystemExit(f"{tool} is not installed (make bench installs it)")
    work = tempfile.mkdtemp(prefix="privacyd-http-bench-")
    nginx = None
    daemon = None
    try:
        config = write_config(work, log_level="info", extra=f"io_threads: {WORKERS}\n"
                                                               f"limits: {{ max_connections: 4096 }}\n")
        daemon = Daemon(config)
        daemon.wait_ready()
        port = free_port()
        conf = os.path.join(work, "nginx.conf")
        with open(conf, "w") as f:
            f.write(NGINX_CONF.format(workers=WORKERS, root=work, port=port))
        nginx = subprocess.Popen(["nginx", "-c", conf, "-p", work], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        def nginx_workers():
            found = subprocess.run(["pgrep", "-P", str(nginx.pid)], capture_output=True, text=True).stdout.split()
            return [int(p) for p in found] if len(found) == WORKERS else None
        workers = wait_for(nginx_workers, what="nginx's workers")
        ours, theirs = [], []
        for i in range(ROUNDS):
            ours.append(wrk(daemon.port(), [daemon.proc.pid]))
            theirs.append(wrk(port, workers))
            print(f"round {i + 1}: privacyd {ours[-1]['rate']:.0f}/s (p99 {ours[-1]['p99_ms']:.2f} ms), "
                  f"nginx {theirs[-1]['rate']:.0f}/s (p99 {theirs[-1]['p99_ms']:.2f} ms)", flush=True)
        med = lambda rows, k: statistics.median(r[k] for r in rows)
        rate, base = med(ours, "rate"), med(theirs, "rate")
        print()
        print(f"GET /healthz, {WORKERS} workers, wrk -t{WORKERS} -c{CONNECTIONS} -d{SECONDS}s x {ROUNDS} rounds (medians)")
        print(f"  privacyd  {rate:9.0f} req/s   p50 {med(ours, 'p50_ms'):6.2f} ms   p99 {med(ours, 'p99_ms'):6.2f} ms"
              f"   CPU {med(ours, 'cpu_us'):5.2f} us/request   non-2xx {sum(r['non2xx'] for r in ours)}")
        print(f"  nginx     {base:9.0f} req/s   p50 {med(theirs, 'p50_ms'):6.2f} ms   p99 {med(theirs, 'p99_ms'):6.2f} ms"
              f"   CPU {med(theirs, 'cpu_us'):5.2f} us/request")
        print(f"  ratio     {rate / base:9.2f}   (SPEC §12 bar: >= 1.0)")
        print(f"  CPU per request, nginx / privacyd: {med(theirs, 'cpu_us') / med(ours, 'cpu_us'):.2f}")
    finally:
        if nginx:
            nginx.terminate()
            nginx.wait(timeout=30)
        if daemon:
            daemon.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
