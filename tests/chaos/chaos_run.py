"""One chaos run: a throwaway PostgreSQL (fsync on), one or more `privacyd
serve` on it (supervised: an instance that exits without being killed is
counted and started again, as systemd would), the chaos peers, and senders
that play the Partner Center (each delivery again, with the same
webhook-id, until it is answered 2xx). A scenario adds its faults; the
checks are in chaos_check.py. Subjects are synthetic (`chaos-N`,
`sN@chaos.invalid`); nothing personal is printed."""
import http.client
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
from harness import (BIN, Daemon, PgCluster, demo_setup, new_secret, use_policies, write_config,  # noqa: E402
                     write_secrets)
from chaos_peers import MailSink, Partner  # noqa: E402

FINAL = ("completed", "rejected", "failed")
OCCURRED = "2026-11-26T05:00:00Z"
# Long enough that a fault hitting half of all attempts at random cannot
# exhaust it in practice: a notice dies after 40 failures in a row, about
# 1 in 10^12, where 16 (one full run once had one) gave 5,000 notices a 7%
# chance of a dead one. An exhausted schedule making a notice dead is the
# contract (SPEC §7), not what these scenarios test.
SCHEDULE = "[0s, 200ms, 500ms" + ", 1s" * 37 + "]"


def env_int(name, default):
    return int(os.environ.get(name, str(default)))


class Sizes:
    """CHAOS_REQUESTS, CHAOS_SECONDS (the sending is spread over it, and the
    faults last as long), CHAOS_CLIENTS, CHAOS_STALL (a request not finished
    when nothing has finished for this long is stuck), CHAOS_SEED."""

    def __init__(self, short):
        self.short = short
        self.requests = env_int("CHAOS_REQUESTS", 200 if short else 5000)
        self.seconds = env_int("CHAOS_SECONDS", 40 if short else 300)
        self.clients = env_int("CHAOS_CLIENTS", 8 if short else 16)
        self.stall = env_int("CHAOS_STALL", 60 if short else 120)
        self.settle_max = env_int("CHAOS_SETTLE_MAX", 300 if short else 3600)
        self.give_up = env_int("CHAOS_GIVE_UP", 120 if short else 300)  # a sender stops retrying one delivery
        self.seed = env_int("CHAOS_SEED", int(time.time() * 1000) % 1_000_000)


class Item:
    """One request to send. kind: dis (associated: completes), rej (never
    associated: rejected not_associated), del (deletion), acc (access)."""

    def __init__(self, i, kind, partners):
        self.i, self.kind, self.partners = i, kind, partners
        self.huawei_id = f"chaos-{i}"
        self.email = f"s{i}@chaos.invalid"
        self.request_id = None

    def body(self):
        subject = {"huawei_id": self.huawei_id, "email": self.email}
        if self.kind in ("dis", "rej"):
            return {"type": "request.disassociation", "occurred_at": OCCURRED, "partner": {"id": "P-1001"},
                    "subject": subject}
        return {"type": "request.deletion" if self.kind == "del" else "request.access", "occurred_at": OCCURRED,
                "subject": subject}

    def expected(self):
        """(status, reason, {(channel, recipient, template)}) when it is done."""
        if self.kind == "dis":
            return "completed", "", {("partner", "P-1001", "partner-holdings"),
                                     ("subject", "subject", "subject-disassociated")}
        if self.kind == "rej":
            return "rejected", "not_associated", {("subject", "subject", "subject-rejected")}
        if self.kind == "del":
            return "completed", "", ({("partner", p, "partner-erasure") for p in self.partners}
                                     | {("subject", "subject", "subject-erased")})
        return "completed", "", {("subject", "subject", "subject-access-ready")}


def plan(n, rng):
    """80% disassociations, 5% never associated, 10% deletions (half of them
    associated with both partners), 5% access; shuffled."""
    rej, dele, acc = max(1, n // 20), max(1, n // 10), max(1, n // 20)
    kinds = ["rej"] * rej + ["del"] * dele + ["acc"] * acc
    kinds += ["dis"] * (n - len(kinds))
    rng.shuffle(kinds)
    items = []
    for i, kind in enumerate(kinds):
        partners = {"dis": ["P-1001"], "del": ["P-1001", "P-1002"] if i % 2 else ["P-1001"]}.get(kind, [])
        items.append(Item(i, kind, partners))
    return items


class Run:
    def __init__(self, name, short, instances=1, partner_fail=0.0, smtp_drop=None):
        self.name, self.sizes, self.instances = name, Sizes(short), instances
        self.rng = random.Random(self.sizes.seed)
        self.items = plan(self.sizes.requests, self.rng)
        self.lock = threading.Lock()
        self.slots = [None] * instances
        self.retired = []             # (label, Daemon) no longer in a slot
        self.killed = set()           # Daemons we killed on purpose
        self.exits = []               # (slot, code, last log lines): exits nobody asked for
        self.failed_starts = []       # (slot, code, last log lines): instances that never got ready
        self.database_down = False    # set by a scenario that stops PostgreSQL (a start may fail then)
        self.broken = None            # why the run cannot go on (an instance that will not start)
        self.sigterm_codes = []
        self.answers = {}             # unexpected webhook answers: status -> count
        self.never = 0                # deliveries never answered 2xx
        self.faults = []              # what the scenario did, for the report
        self.stop = threading.Event()
        self.sending_done = threading.Event()
        self.started = self.sent_at = self.settled_at = None
        self.work = tempfile.mkdtemp(prefix=f"privacyd-chaos-{name}-")
        self.t0 = int(time.time() * 1000)
        delay = float(os.environ.get("CHAOS_PEER_DELAY", "0.3"))
        self.partner = Partner(new_secret(), partner_fail, delay, seed=self.sizes.seed + 1)
        self.mail = MailSink(smtp_drop, delay, seed=self.sizes.seed + 2) if smtp_drop is not None else None
        self.pg = None

    def setup(self):
        """The database, the config (pointing at the peers) and the demo systems."""
        self.pg = PgCluster(fsync=True)
        policies = demo_setup(self.work, self.partner.url, self.partner.secret)
        self.secret = new_secret()
        self.config = write_config(self.work, database=self.pg.dsn(), log_level="info",
                                   extra="engine: { lease: 3s, poll: 200ms, concurrency: 64 }\n")
        where = (f"  smtp: smtp://127.0.0.1:{self.mail.port}\n" if self.mail else "  file_dir: var/notices\n")
        use_policies(self.config, policies, where + f"  timeout: 2s\n  retry_schedule: {SCHEDULE}\n")
        write_secrets(self.work, [self.secret])
        demo = subprocess.run([BIN, "demo", "--config", self.config], capture_output=True, text=True, timeout=120)
        if demo.returncode != 0:
            raise RuntimeError(f"privacyd demo exited {demo.returncode}: {demo.stderr.strip()[-2000:]}")

    # -- daemons ---------------------------------------------------------

    def start_slot(self, slot):
        """Starts an instance in `slot`; retries while it cannot start."""
        for attempt in range(30):
            d = Daemon(self.config)
            try:
                d.wait_ready(timeout=60)
            except AssertionError:
                d.kill()
                self.failed_starts.append((slot, d.proc.returncode, d.lines[-15:]))
                self.retired.append((f"slot{slot}-failed-start", d))
                time.sleep(1)
                continue
            with self.lock:
                self.slots[slot] = d
            return d
        raise RuntimeError(f"instance {slot} would not start")

    def kill_slot(self, slot, delay=0.0):
        """SIGKILL the instance in `slot`, then start a new one after `delay`."""
        with self.lock:
            d = self.slots[slot]
            self.slots[slot] = None
            self.killed.add(d)
        d.proc.kill()
        d.wait_exit(timeout=30)
        self.retired.append((f"slot{slot}", d))
        time.sleep(delay)
        self.start_slot(slot)

    def supervise(self):
        while not self.stop.is_set():
            for slot in range(self.instances):
                with self.lock:
                    d = self.slots[slot]
                if d is not None and d not in self.killed and d.proc.poll() is not None:
                    with self.lock:
                        if self.slots[slot] is not d:
                            continue
                        self.slots[slot] = None
                    d.wait_exit(timeout=30)
                    self.exits.append((slot, d.proc.returncode, d.lines[-15:]))
                    self.retired.append((f"slot{slot}-exited", d))
                    time.sleep(1)
                    try:
                        self.start_slot(slot)
                    except RuntimeError as e:
                        self.broken = str(e)
                        return
            self.stop.wait(0.2)

    def pick(self):
        with self.lock:
            live = [d for d in self.slots if d is not None and "public" in d.addr]
        return self.rng.choice(live) if live else None

    # -- the Partner Center ------------------------------------------------

    def send(self, body, msg_id):
        give_up = time.monotonic() + self.sizes.give_up
        while time.monotonic() < give_up and not self.broken:
            d = self.pick()
            if d is None:
                time.sleep(0.2)
                continue
            try:
                status, resp = d.webhook(body, self.secret, msg_id=msg_id)
            except (OSError, http.client.HTTPException, KeyError, ValueError):
                time.sleep(0.2)
                continue
            if status in (200, 202) and isinstance(resp, dict):
                return resp
            if status != 503:
                with self.lock:
                    self.answers[status] = self.answers.get(status, 0) + 1
                return None
            time.sleep(0.2)
        with self.lock:
            self.never += 1
        return None

    def in_parallel(self, work, jobs):
        """Runs work(job) for every job on CHAOS_CLIENTS threads."""
        jobs = list(jobs)

        def worker(w):
            for job in jobs[w::self.sizes.clients]:
                work(job)
        threads = [threading.Thread(target=worker, args=(w,)) for w in range(self.sizes.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def associate(self):
        pairs = [(item, p) for item in self.items for p in item.partners]
        self.in_parallel(lambda ip: self.send(
            {"type": "association.created", "occurred_at": OCCURRED, "statement_version": "1.0",
             "partner": {"id": ip[1]}, "subject": {"huawei_id": ip[0].huawei_id}}, f"assoc-{ip[0].i}-{ip[1]}"), pairs)

    def send_requests(self):
        """Sends the requests in waves of random size (one every ~2 s, a
        wave as fast as the senders go) spread over CHAOS_SECONDS, so the
        faults find the daemon idle, busy, and with a backlog."""
        start = time.monotonic()
        waves = max(1, self.sizes.seconds // 2)
        cuts = sorted(self.rng.randrange(len(self.items) + 1) for _ in range(waves - 1))
        at = {}
        for wave, (lo, hi) in enumerate(zip([0] + cuts, cuts + [len(self.items)])):
            for i in range(lo, hi):
                at[i] = start + wave * self.sizes.seconds / waves

        def one(item):
            delay = at[item.i] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            resp = self.send(item.body(), f"req-{item.i}")
            if resp is not None:
                item.request_id = resp.get("request_id")
        self.in_parallel(one, self.items)
        left = start + self.sizes.seconds - time.monotonic()
        if left > 0:
            time.sleep(left)

    # -- the run ---------------------------------------------------------

    def execute(self, faults=None):
        """Associates, then sends while `faults(run)` runs; stops the faults
        when the sending is done, then lets everything finish."""
        self.setup()
        for slot in range(self.instances):
            self.start_slot(slot)
        watcher = threading.Thread(target=self.supervise, daemon=True)
        watcher.start()
        self.associate()
        self.started = time.monotonic()
        chaos = threading.Thread(target=faults, args=(self,)) if faults else None
        if chaos:
            chaos.start()
        try:
            self.send_requests()
        finally:
            self.sending_done.set()
            if chaos:
                chaos.join()
        if self.broken:
            raise RuntimeError(self.broken)
        self.sent_at = time.monotonic()
        self.settle()
        self.settled_at = time.monotonic()
        self.stop.set()
        watcher.join()
        for slot, d in enumerate(self.slots):
            if d is not None:
                with self.lock:
                    self.slots[slot] = None
                self.sigterm_codes.append(d.stop(timeout=60))
                self.retired.append((f"slot{slot}-final", d))

    def query(self, sql):
        """Rows of `sql` as lists of strings (fields split on U+001F)."""
        out = subprocess.run([f"{self.pg.bindir}/psql", "-h", "127.0.0.1", "-p", str(self.pg.port), "-U", "privacyd",
                              "-d", "privacyd", "-At", "-F", "\x1f", "-c", sql], check=True, capture_output=True,
                             text=True, timeout=120)
        return [line.split("\x1f") for line in out.stdout.splitlines() if line]

    def settle(self):
        """Waits until every request is finished and the outbox is empty, or
        until nothing has moved for CHAOS_STALL seconds."""
        began = last_move = time.monotonic()
        last = None
        while time.monotonic() - began < self.sizes.settle_max:
            try:
                by_status = dict(self.query("SELECT status, COUNT(*) FROM requests GROUP BY status"))
                pending = self.query("SELECT COUNT(*) FROM notices WHERE status = 'pending'")[0][0]
            except subprocess.SubprocessError:
                time.sleep(1)
                continue
            unfinished = sum(int(c) for s, c in by_status.items() if s not in FINAL)
            if unfinished == 0 and pending == "0":
                return
            now = (tuple(sorted(by_status.items())), pending)
            if now != last:
                last, last_move = now, time.monotonic()
            elif time.monotonic() - last_move > self.sizes.stall:
                return
            time.sleep(1)

    def all_logs(self):
        with self.lock:
            current = [(f"slot{s}", d) for s, d in enumerate(self.slots) if d is not None]
        return self.retired + current

    def cleanup(self, keep):
        self.stop.set()
        for slot, d in enumerate(self.slots):
            if d is not None:
                d.kill()
        self.partner.close()
        if self.mail:
            self.mail.close()
        if keep:
            os.makedirs(os.path.join(self.work, "logs"), exist_ok=True)
            for n, (label, d) in enumerate(self.all_logs()):
                with open(os.path.join(self.work, "logs", f"{n:03d}-{label}.log"), "w") as f:
                    f.write("\n".join(d.lines) + "\n")
            if self.pg and os.path.exists(os.path.join(self.pg.root, "log")):
                shutil.copy(os.path.join(self.pg.root, "log"), os.path.join(self.work, "logs", "postgresql.log"))
        if self.pg:
            self.pg.destroy()
        if not keep:
            shutil.rmtree(self.work, ignore_errors=True)
