"""Faults the engine and the notifier must survive (issue 11), through the
real binary: a notice settling while its step decides to wait, a crashed
instance's long step taken over after a lease, a step's attempt that
outlives its lease, an identifier no key opens, a system down on the
first attempt, and a notice outcome whose claim was lost. Each window is
widened by a test hook or by the test itself acting on the database,
never by sleeping and hoping."""
import json
import os
import signal
import sqlite3
import subprocess
import tempfile
import time
import unittest

from harness import (REPO, Daemon, OnPostgres, Receiver, demo_setup, new_secret, run, use_policies, wait_for, write_config,
                     write_secrets)

ENGINE = "engine: { lease: 2s, poll: 100ms }\n"
NOTICES = "  file_dir: var/notices\n  timeout: 1s\n  retry_schedule: [0s, 300ms, 300ms, 300ms, 300ms]\n"

LATE_SYSTEM = """
  - name: late-system
    database: "sqlite3://db=var/demo/late.db"
    categories:
      learning_records:
        access: "SELECT course FROM late_records WHERE huawei_id = :subject"
        erase:  "DELETE FROM late_records WHERE huawei_id = :subject"
    unlink: "DELETE FROM late_members WHERE huawei_id = :subject AND partner_id = :partner"
"""


class FaultTests:
    """The demo policies with each partner on a receiver of its own."""

    def database(self):
        return "sqlite3://db=var/privacyd.db"

    def query(self, sql):
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "privacyd.db"), timeout=10)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    def execute(self, sql):
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "privacyd.db"), timeout=10)
        try:
            db.execute(sql)
            db.commit()
        finally:
            db.close()

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.partner_secret = new_secret()
        self.p1 = Receiver(self.partner_secret)
        self.p2 = Receiver(self.partner_secret)
        self.addCleanup(self.p1.close)
        self.addCleanup(self.p2.close)
        self.secret = new_secret()
        self.gate = os.path.join(self.dir.name, "gate")
        self.daemons = []

    def prepare(self, extra_systems="", workflows=None):
        policies = demo_setup(self.dir.name, self.p1.url, self.partner_secret,
                              replace={"http://127.0.0.1:9101/notices": self.p2.url})
        if extra_systems:
            with open(os.path.join(policies, "systems.yaml"), "a") as f:
                f.write(extra_systems)
        self.config = write_config(self.dir.name, database=self.database(), extra=ENGINE, workflows=workflows)
        use_policies(self.config, policies, NOTICES)
        write_secrets(self.dir.name, [self.secret])
        r = run(["demo", "--config", self.config])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def start(self, env=None):
        d = Daemon(self.config, env=env)
        self.daemons.append(d)
        self.addCleanup(d.kill)
        d.wait_ready()
        return d

    def send(self, d, body):
        body.setdefault("occurred_at", "2026-11-26T05:00:00Z")
        status, resp = d.webhook(body, self.secret)
        self.assertEqual(status, 202, resp)
        return resp["request_id"]

    def status(self, rid):
        rows = self.query(f"SELECT status, reason FROM requests WHERE id = '{rid}'")
        return tuple(rows[0]) if rows else None

    def finish(self, rid, timeout=30):
        wait_for(lambda: self.status(rid)[0] in ("completed", "failed", "rejected"), timeout=timeout,
                 what=f"{rid} to finish (is {self.status(rid)})")
        return self.status(rid)

    def step(self, rid, step_id):
        rows = self.query(f"SELECT status, attempts, output, error FROM request_steps"
                          f" WHERE request_id = '{rid}' AND step_id = '{step_id}'")
        status, attempts, output, error = rows[0]
        return status, int(attempts), json.loads(output) if output else None, error

    def test_a_notice_settling_while_its_step_decides_to_wait_still_wakes_it(self):
        # demo-002's data went to both partners: the deletion notifies both.
        # P-1001 answers at once, which wakes the step; P-1002 is held, so
        # the step finds one notice pending and decides to wait. The hook
        # holds that commit until P-1002's notice has settled: a commit that
        # trusted what it read before would wait for ever.
        self.prepare()
        self.p2.hold_steps.add("notice.erasure")
        d = self.start(env={"PRIVACYD_TEST_AWAIT_GATE": self.gate})
        rid = self.send(d, {"type": "request.deletion", "subject": {"huawei_id": "demo-002"}})
        d.wait_log(rf"test hook: holding a notify step's commit request_id={rid}")
        self.p2.release.set()
        wait_for(lambda: self.query(f"SELECT status FROM notices WHERE request_id = '{rid}'"
                                    f" AND recipient = 'P-1002'") == [("delivered",)],
                 what="P-1002's notice to be delivered")
        with open(self.gate, "w"):
            pass
        self.assertEqual(self.finish(rid), ("completed", None))
        self.assertEqual(self.step(rid, "tell-partners")[0], "succeeded")

    def one_call_workflow(self, step_id, timeout):
        """A workflows folder whose access workflow is one webhook.call to P-1001's receiver."""
        flows = os.path.join(self.dir.name, "workflows")
        os.makedirs(flows)
        with open(os.path.join(flows, "hooks.secret"), "w") as f:
            f.write(self.partner_secret + "\n")
        with open(os.path.join(flows, "access.yaml"), "w") as f:
            f.write("workflow: access\nversion: 1\non: request.access\nsteps:\n"
                    f"  - id: {step_id}\n    action: webhook.call\n    timeout: {timeout}\n"
                    f"    with: {{ url: \"{self.p1.url}\", secret_file: hooks.secret }}\n")
        return flows

    def test_a_crashed_instances_long_step_is_taken_over_after_a_lease(self):
        # A step whose timeout is an hour: the lease, renewed while it runs,
        # is what another instance waits for, not lease + timeout.
        self.prepare(workflows=self.one_call_workflow("slow", "1h"))
        self.p1.hold_steps.add("slow")
        first = self.start()
        rid = self.send(first, {"type": "request.access", "subject": {"huawei_id": "demo-003"}})
        self.assertTrue(self.p1.holding.wait(30))
        first.kill()
        self.p1.release.set()
        self.start()
        self.assertEqual(self.finish(rid, timeout=20), ("completed", None))
        self.assertEqual(set(self.p1.ids()), {f"{rid}:slow"})

    def test_a_step_outliving_its_lease_is_never_driven_twice(self):
        # Lease 2s; the call is held until the lease has been renewed twice.
        # Without renewal (or if this process claimed what it still drives)
        # a second coroutine would run the step: a second delivery.
        self.prepare(workflows=self.one_call_workflow("held", "30s"))
        self.p1.hold_steps.add("held")
        d = self.start()
        rid = self.send(d, {"type": "request.access", "subject": {"huawei_id": "demo-003"}})
        self.assertTrue(self.p1.holding.wait(30))
        seen = set()

        def renewed_twice():
            seen.add(self.query(f"SELECT lease_until FROM requests WHERE id = '{rid}'")[0][0])
            return len(seen) >= 3
        wait_for(renewed_twice, timeout=20, what="the lease to be renewed while the step runs")
        self.p1.release.set()
        self.assertEqual(self.finish(rid), ("completed", None))
        self.assertEqual(self.p1.ids(), [f"{rid}:held"])
        self.assertEqual(self.p1.overlaps, 0)
        self.assertEqual(self.step(rid, "held")[1], 1)

    def test_an_identifier_no_key_opens_fails_the_step_without_retry(self):
        empty = os.path.join(self.dir.name, "no-workflows")
        os.makedirs(empty)
        self.prepare(workflows=empty)
        d = self.start()
        rid = self.send(d, {"type": "request.deletion", "subject": {"huawei_id": "demo-001"}})
        self.assertEqual(d.stop(), 0)
        # A new data key, and the old one not kept: nothing sealed opens.
        with open(os.path.join(self.dir.name, "var", "keys", "data.key"), "wb") as f:
            f.write(os.urandom(32))
        with open(self.config) as f:
            text = f.read().replace(f"workflows: {empty}", f"workflows: {os.path.join(REPO, 'workflows')}")
        with open(self.config, "w") as f:
            f.write(text)
        self.start()
        self.assertEqual(self.finish(rid), ("failed", "step erase failed"))
        status, attempts, _, error = self.step(rid, "erase")
        self.assertEqual((status, attempts), ("failed", 1), "no retry can mend a missing key")
        self.assertIn("cannot be decrypted", error)
        institute = sqlite3.connect(os.path.join(self.dir.name, "var", "demo", "institute.db"))
        try:
            left = institute.execute("SELECT COUNT(*) FROM exam_results WHERE huawei_id = 'demo-001'").fetchone()[0]
        finally:
            institute.close()
        self.assertGreater(left, 0, "nothing was erased under an empty identifier")

    def late_system(self, members=(), records=()):
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "demo", "late.db"))
        try:
            db.execute("CREATE TABLE late_members (huawei_id TEXT, partner_id TEXT)")
            db.execute("CREATE TABLE late_records (huawei_id TEXT, course TEXT)")
            db.executemany("INSERT INTO late_members VALUES (?, ?)", members)
            db.executemany("INSERT INTO late_records VALUES (?, ?)", records)
            db.commit()
        finally:
            db.close()

    def first_attempt_failed(self, rid):
        wait_for(lambda: int(self.query(f"SELECT COUNT(*) FROM audit_log WHERE request_id = '{rid}'"
                                        " AND event = 'step.failed'")[0][0]) >= 1,
                 what="the first attempt to fail on late-system")

    def test_an_unlink_retried_remembers_what_the_first_attempt_ended(self):
        # hw-fault-7 is a member of P-1001 in partner-center only, with no
        # association in the ledger. The first attempt unlinks it there and
        # then fails on late-system (its file is not there yet); the retry
        # finds nothing left to unlink, and must not call that
        # "not associated".
        self.prepare(extra_systems=LATE_SYSTEM)
        pc = sqlite3.connect(os.path.join(self.dir.name, "var", "demo", "partner-center.db"))
        pc.execute("INSERT INTO partner_members (huawei_id, partner_id, joined_at)"
                   " VALUES ('hw-fault-7', 'P-1001', '2026-01-01')")
        pc.commit()
        pc.close()
        d = self.start()
        rid = self.send(d, {"type": "request.disassociation", "subject": {"huawei_id": "hw-fault-7"},
                            "partner": {"id": "P-1001"}})
        self.first_attempt_failed(rid)
        self.assertFalse(os.path.exists(os.path.join(self.dir.name, "var", "demo", "late.db")),
                         "a data system's missing SQLite file is never created")
        self.late_system()
        self.assertEqual(self.finish(rid, timeout=30), ("completed", None))
        status, attempts, output, _ = self.step(rid, "unlink")
        self.assertEqual(status, "succeeded")
        self.assertGreaterEqual(attempts, 2)
        self.assertEqual(output["unlinked"], {"partner-center": 1, "late-system": 0})

    def test_an_erase_retried_tells_the_person_everything_erased(self):
        self.prepare(extra_systems=LATE_SYSTEM)
        d = self.start()
        rid = self.send(d, {"type": "request.deletion", "categories": ["exam_records", "learning_records"],
                            "subject": {"huawei_id": "demo-001", "email": "p@example.test"}})
        self.first_attempt_failed(rid)
        self.late_system(records=[("demo-001", "c1")])
        self.assertEqual(self.finish(rid, timeout=30), ("completed", None))
        _, attempts, output, _ = self.step(rid, "erase")
        self.assertGreaterEqual(attempts, 2)
        rows = {(e["system"], e["category"]): e["rows"] for e in output["erased"]}
        self.assertGreater(rows[("developer-institute", "exam_records")], 0, "the first attempt's rows count")
        self.assertGreater(rows[("developer-institute", "learning_records")], 0)
        self.assertEqual(rows[("late-system", "learning_records")], 1)
        notice = self.query(f"SELECT id FROM notices WHERE request_id = '{rid}' AND channel = 'subject'")[0][0]
        with open(os.path.join(self.dir.name, "var", "notices", f"{notice}.eml"), encoding="utf-8") as f:
            mail = f.read()
        self.assertIn("exam records", mail.lower())

    def test_a_late_outcome_of_a_lost_claim_changes_nothing(self):
        # While P-1001 holds the delivery, the notice is claimed again (as
        # another instance would after the lease): the first attempt's
        # outcome must not be recorded over the second claim.
        self.prepare()
        self.p1.hold_steps.add("notice.disassociation")
        d = self.start()
        rid = self.send(d, {"type": "request.disassociation", "subject": {"huawei_id": "demo-001"},
                            "partner": {"id": "P-1001"}})
        self.assertTrue(self.p1.holding.wait(30))
        self.execute(f"UPDATE notices SET claim_token = 'another-claim' WHERE request_id = '{rid}'"
                     " AND channel = 'partner'")
        self.p1.release.set()
        d.wait_log(r"notice attempt outcome dropped: its claim was lost")
        self.assertEqual(self.query(f"SELECT status, attempts FROM notices WHERE request_id = '{rid}'"
                                    " AND channel = 'partner'"), [("pending", 0)])
        # The other claim's lease lapses; the notice goes again, same id.
        self.assertEqual(self.finish(rid, timeout=40), ("completed", None))
        ids = [i for (i, b, t) in self.p1.deliveries if b.get("request_id") == rid]
        self.assertEqual(len(ids), 2)
        self.assertEqual(len(set(ids)), 1)
        self.assertEqual(self.query(f"SELECT status, attempts FROM notices WHERE request_id = '{rid}'"
                                    " AND channel = 'partner'"), [("delivered", 1)])


class FaultsOnSqlite(FaultTests, unittest.TestCase):
    def test_a_data_systems_sqlite_file_keeps_its_journal_mode(self):
        self.prepare()
        path = os.path.join(self.dir.name, "var", "demo", "institute.db")
        db = sqlite3.connect(path)
        db.execute("PRAGMA journal_mode=DELETE")
        db.close()
        d = self.start()
        rid = self.send(d, {"type": "request.access", "subject": {"huawei_id": "demo-001"}})
        self.assertEqual(self.finish(rid), ("completed", None))
        db = sqlite3.connect(path)
        try:
            self.assertEqual(db.execute("PRAGMA journal_mode").fetchone()[0], "delete")
        finally:
            db.close()


class FaultsOnPostgres(OnPostgres, FaultTests, unittest.TestCase):
    def database(self):
        return OnPostgres.database(self)

    def query(self, sql):
        # psql prints text: numbers and NULLs come back as sqlite3 gives them.
        def value(v):
            return None if v == "" else int(v) if v.lstrip("-").isdigit() else v
        out = self.pg.psql(sql, dbname=self.dbname).strip()
        return [tuple(value(v) for v in line.split("|")) for line in out.split("\n")] if out else []

    def execute(self, sql):
        self.pg.psql(sql, dbname=self.dbname)

    def postgres_pids(self):
        with open(os.path.join(self.pg.data, "postmaster.pid")) as f:
            main = int(f.readline())
        children = subprocess.run(["pgrep", "-P", str(main)], capture_output=True, text=True).stdout.split()
        return [main] + [int(p) for p in children]

    def test_readyz_says_no_while_the_database_hangs(self):
        self.prepare()
        d = self.start()
        self.assertEqual(d.get_json("/readyz")[0], 200)
        pids = self.postgres_pids()
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        try:
            status, body = d.get_json("/readyz")
            self.assertEqual((status, body["database"]), (503, "unreachable"))
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)
        wait_for(lambda: d.get_json("/readyz")[0] == 200, what="ready again")

    def test_a_lock_held_elsewhere_fails_a_statement_instead_of_holding_a_thread(self):
        self.prepare()
        with open(self.config, "a") as f:
            f.write("database_timeouts: { lock: 1s }\n")
        d = self.start()
        holder = subprocess.Popen([f"{self.pg.bindir}/psql", "-h", "127.0.0.1", "-p", str(self.pg.port), "-U",
                                   "privacyd", "-d", self.dbname, "-c",
                                   "BEGIN; LOCK TABLE requests IN ACCESS EXCLUSIVE MODE; SELECT pg_sleep(30);"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.addCleanup(holder.kill)
        wait_for(lambda: self.query("SELECT COUNT(*) FROM pg_locks WHERE mode = 'AccessExclusiveLock'"
                                    " AND relation = 'requests'::regclass")[0][0] == 1, what="the lock")
        status, resp = d.webhook({"type": "request.access", "occurred_at": "2026-11-26T05:00:00Z",
                                  "subject": {"huawei_id": "demo-001"}}, self.secret)
        self.assertEqual(status, 503, resp)
        self.query("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE mode = 'AccessExclusiveLock'"
                   " AND relation = 'requests'::regclass")
        holder.wait()
        self.send(d, {"type": "request.access", "subject": {"huawei_id": "demo-001"}})


if __name__ == "__main__":
    unittest.main()
