#!/usr/bin/env python3
"""Master key rotation speed (SPEC §14): subject keys re-wrapped per second
by `privacyd keys rotate`, with the key store on PostgreSQL (fsync on) and
BENCH_SUBJECTS (100,000) subject keys wrapped under the old master key.

The keys are written straight into the key store, wrapped exactly as
privacyd wraps them (AES-256-GCM under the master key, bound to
"subject_keys:" + id), so the bench measures the rotation, not intake.
Printed: the rate per batch size, median of BENCH_RUNS runs, and the
PostgreSQL transactions it took. Nothing is asserted.
"""
import base64
import hashlib
import hmac
import os
import statistics
import subprocess
import sys
import tempfile
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import BIN, PgCluster, write_config  # noqa: E402

SUBJECTS = int(os.environ.get("BENCH_SUBJECTS", "100000"))
RUNS = int(os.environ.get("BENCH_RUNS", "3"))
BATCHES = [int(b) for b in os.environ.get("BENCH_BATCHES", "500,5000").split(",")]


def key_id(key):
    return hmac.new(key, b"privacyd/key-id/v1", hashlib.sha256).hexdigest()[:12]


def wrap(master, kid, subject_key):
    nonce = os.urandom(12)
    sealed = AESGCM(master).encrypt(nonce, subject_key, f"subject_keys:{kid}".encode())
    return f"v1.{key_id(master)}.{base64.b64encode(nonce + sealed).decode()}"


def fill(pg, db, master):
    """SUBJECTS keys under `master`, loaded with COPY."""
    rows = []
    mid = key_id(master)
    for i in range(SUBJECTS):
        kid = f"sk_bench{i:09d}"
        rows.append(f"{kid}\t{mid}\t{wrap(master, kid, os.urandom(32))}\t0\n")
    path = os.path.join(pg.root, "keys.tsv")
    with open(path, "w") as f:
        f.writelines(rows)
    os.chmod(path, 0o644)
    pg.psql("TRUNCATE subject_keys", dbname=db)
    pg.psql(f"COPY subject_keys(id, master_key_id, wrapped, created_at) FROM '{path}'", dbname=db)


def commits(pg, db):
    return int(pg.psql(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{db}'").strip())


def main():
    pg = PgCluster(fsync=True)
    try:
        with tempfile.TemporaryDirectory() as d:
            pg.psql("CREATE DATABASE bench_keys")
            config = write_config(d, database=pg.dsn(), extra="")
            with open(config) as f:
                text = f.read()
            with open(config, "w") as f:
                f.write(text.replace("  data_key_file: var/keys/data.key\n",
                                     "  data_key_file: var/keys/new.key\n  previous_key_files: [var/keys/data.key]\n"
                                     "  index_key_file: var/keys/data.key\n"
                                     f'  store: "{pg.dsn("bench_keys")}"\n'))
            with open(os.path.join(d, "var", "keys", "data.key"), "rb") as f:
                old = f.read()
            with open(os.path.join(d, "var", "keys", "new.key"), "wb") as f:
                f.write(os.urandom(32))
            status = subprocess.run([BIN, "keys", "status", "--config", config], capture_output=True, text=True)
            if status.returncode != 0:
                raise SystemExit(status.stderr)
            print(f"key rotation: {SUBJECTS} subject keys, key store on PostgreSQL (fsync on), median of {RUNS}")
            for batch in BATCHES:
                rates, xacts = [], []
                for _ in range(RUNS):
                    fill(pg, "bench_keys", old)
                    before = commits(pg, "bench_keys")
                    start = time.monotonic()
                    r = subprocess.run([BIN, "keys", "rotate", "--config", config, "--batch", str(batch)],
                                       capture_output=True, text=True)
                    took = time.monotonic() - start
                    if r.returncode != 0 or "rotation complete" not in r.stdout:
                        raise SystemExit(r.stdout + r.stderr)
                    rates.append(SUBJECTS / took)
                    xacts.append(commits(pg, "bench_keys") - before)
                print(f"  --batch {batch:>5}: {statistics.median(rates):,.0f} keys re-wrapped/s "
                      f"(runs: {', '.join(f'{x:,.0f}' for x in rates)}), "
                      f"{statistics.median(xacts):,.0f} key-store transactions")
    finally:
        pg.destroy()


if __name__ == "__main__":
    main()
