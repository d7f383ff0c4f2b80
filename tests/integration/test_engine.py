"""The workflow engine through the real binary: multi-step workflows with
retries, halts and durable waits; kill -9 in the middle of a step; version
pinning across a reload; two instances sharing one PostgreSQL; and the
audit chain checked by `privacyd audit verify`."""
import json
import os
import signal
import sqlite3
import tempfile
import threading
import time
import unittest

from harness import (Daemon, OnPostgres, PgCluster, Receiver, demo_setup, new_secret, run, use_policies, wait_for,
                     write_config, write_secrets)

ENGINE = "engine: { lease: 2s, poll: 100ms }\n"


def access_request(n):
    return {"type": "request.access", "occurred_at": "2026-11-26T05:00:00Z",
            "subject": {"huawei_id": f"hw-engine-{n}"}}


class EngineTests:
    """Shared set-up; subclasses pick the database."""

    def database(self):
        raise NotImplementedError

    def query(self, sql):
        raise NotImplementedError

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.flows = os.path.join(self.dir.name, "workflows")
        os.makedirs(self.flows)
        self.hook_secret = new_secret()
        with open(os.path.join(self.flows, "hooks.secret"), "w") as f:
            f.write(self.hook_secret + "\n")
        self.receiver = Receiver(self.hook_secret)
        self.addCleanup(self.receiver.close)
        self.secret = new_secret()
        self.config = write_config(self.dir.name, database=self.database(), extra=ENGINE, workflows=self.flows)
        write_secrets(self.dir.name, [self.secret])
        self.daemons = []

    def tearDown(self):
        for d in self.daemons:
            d.kill()
        self.assertEqual(self.receiver.bad_signatures, 0)

    def workflow(self, steps, version=1, name="access"):
        with open(os.path.join(self.flows, f"{name}.yaml"), "w") as f:
            f.write(f"workflow: {name}\nversion: {version}\non: request.access\nsteps:\n{steps}")

    def call(self, step_id, extra=""):
        return (f"  - id: {step_id}\n    action: webhook.call\n{extra}"
                f"    with: {{ url: \"{self.receiver.url}\", secret_file: hooks.secret }}\n")

    def start(self):
        d = Daemon(self.config)
        self.daemons.append(d)
        d.wait_ready()
        return d

    def submit(self, d, n=1):
        status, resp = d.webhook(access_request(n), self.secret)
        self.assertEqual(status, 202, resp)
        return resp["request_id"]

    def status(self, request_id):
        return self.query(f"SELECT status FROM requests WHERE id = '{request_id}'")

    def wait_status(self, request_id, status, timeout=30):
        wait_for(lambda: self.status(request_id) == status, timeout=timeout,
                 what=f"{request_id} to be {status} (is {self.status(request_id)})")

    def audit_verify(self):
        return run(["audit", "verify", "--config", self.config])

    def test_a_multi_step_workflow_completes_and_the_audit_chain_verifies(self):
        self.workflow(self.call("first") + "  - id: pause\n    action: wait\n    with: { for: 500ms }\n"
                      + self.call("second"))
        d = self.start()
        rid = self.submit(d)
        self.wait_status(rid, "completed")
        self.assertEqual(self.receiver.steps_for(rid), ["first", "second"])
        self.assertEqual(self.receiver.ids(), [f"{rid}:first", f"{rid}:second"])
        r = self.audit_verify()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r"audit chain intact: \d+ entries")

    def test_a_failing_call_is_retried_with_the_same_id(self):
        self.receiver.fail_first["flaky"] = 2
        self.workflow(self.call("flaky", "    retry: { attempts: 4, backoff: 100ms, max_backoff: 1s }\n"))
        d = self.start()
        rid = self.submit(d)
        self.wait_status(rid, "completed")
        self.assertEqual(self.receiver.ids(), [f"{rid}:flaky"] * 3)
        self.assertEqual(self.query(f"SELECT attempts FROM request_steps WHERE request_id = '{rid}'"), "3")

    def test_a_call_that_keeps_failing_fails_the_request(self):
        self.receiver.fail_first["doomed"] = 100
        self.workflow(self.call("doomed", "    retry: { attempts: 2, backoff: 100ms }\n"))
        d = self.start()
        rid = self.submit(d)
        self.wait_status(rid, "failed")
        self.assertEqual(self.query(f"SELECT reason FROM requests WHERE id = '{rid}'"), "step doomed failed")
        self.assertEqual(self.query(f"SELECT error FROM request_steps WHERE request_id = '{rid}'"),
                         "webhook.call answered 503")

    def test_a_step_past_its_timeout_is_a_failed_attempt(self):
        self.receiver.hang_steps.add("stuck")
        self.workflow(self.call("stuck", "    timeout: 500ms\n    retry: { attempts: 2, backoff: 100ms }\n"))
        d = self.start()
        rid = self.submit(d)
        self.wait_status(rid, "failed")
        self.assertEqual(self.receiver.steps_for(rid), ["stuck", "stuck"])
        error = self.query(f"SELECT error FROM request_steps WHERE request_id = '{rid}'")
        self.assertIn("webhook.call", error)
        self.assertIn("timed out", error.lower())

    def test_halt_parks_the_request_for_an_operator(self):
        self.receiver.halt_steps.add("gate")
        self.workflow(self.call("gate") + self.call("after"))
        d = self.start()
        rid = self.submit(d)
        self.wait_status(rid, "awaiting_approval")
        self.assertEqual(self.receiver.steps_for(rid), ["gate"])

    def test_kill_9_in_the_middle_of_a_step_resumes_it_with_the_same_id(self):
        self.receiver.hang_steps.add("slow")
        self.workflow(self.call("before") + self.call("slow", "    timeout: 30s\n") + self.call("after"))
        d = self.start()
        rid = self.submit(d)
        self.assertTrue(self.receiver.hanging.wait(30), "the slow step never arrived")
        d.kill()  # SIGKILL while the step's call is in flight
        self.receiver.release.set()
        self.assertEqual(self.status(rid), "running")
        d2 = self.start()
        self.wait_status(rid, "completed", timeout=60)
        steps = self.receiver.steps_for(rid)
        self.assertEqual(steps.count("before"), 1, steps)
        self.assertEqual(steps.count("slow"), 2, steps)   # once cut short, once to completion
        self.assertEqual(steps.count("after"), 1, steps)
        self.assertEqual(set(self.receiver.ids()), {f"{rid}:before", f"{rid}:slow", f"{rid}:after"})
        self.assertEqual(self.audit_verify().returncode, 0)
        self.assertEqual(d2.stop(), 0)

    def test_a_wait_outlives_a_restart(self):
        self.workflow("  - id: pause\n    action: wait\n    with: { for: 3s }\n" + self.call("after"))
        d = self.start()
        started = time.time()
        rid = self.submit(d)
        wait_for(lambda: self.query(f"SELECT status FROM request_steps WHERE request_id = '{rid}'") == "waiting",
                 what="the wait to start")
        self.assertEqual(d.stop(), 0)
        self.start()
        self.wait_status(rid, "completed")
        calls = [t for (i, b, t) in self.receiver.deliveries if b["request_id"] == rid]
        self.assertEqual(len(calls), 1)
        self.assertGreaterEqual(calls[0] - started, 3.0)

    def test_a_request_finishes_on_the_version_it_started_with(self):
        self.workflow("  - id: pause\n    action: wait\n    with: { for: 2s }\n" + self.call("old"), version=1)
        d = self.start()
        first = self.submit(d, 1)
        wait_for(lambda: self.query(f"SELECT status FROM request_steps WHERE request_id = '{first}'") == "waiting",
                 what="the first request to wait")
        self.workflow(self.call("new"), version=2)
        d.signal(signal.SIGHUP)
        d.wait_log(r'reloaded what="workflows, policies')
        second = self.submit(d, 2)
        self.wait_status(second, "completed")
        self.wait_status(first, "completed")
        self.assertEqual(self.receiver.steps_for(first), ["old"])
        self.assertEqual(self.receiver.steps_for(second), ["new"])
        self.assertEqual(self.query(f"SELECT workflow_version FROM requests WHERE id = '{first}'"), "1")
        self.assertEqual(self.query(f"SELECT workflow_version FROM requests WHERE id = '{second}'"), "2")

    def test_a_changed_file_under_the_same_version_is_refused_on_reload(self):
        # check reads every key the policies name: the partners' secrets too.
        use_policies(self.config, demo_setup(self.dir.name, "http://127.0.0.1:9/notices", new_secret()))
        self.workflow(self.call("old"), version=1)
        d = self.start()
        self.workflow(self.call("sneaky"), version=1)
        d.signal(signal.SIGHUP)
        line = d.wait_log(r"reload refused")
        self.assertIn("changed since it was first loaded", line)
        # check says the same before anyone reloads.
        r = run(["check", "--config", self.config])
        self.assertEqual(r.returncode, 1)
        self.assertIn("access.yaml:1:1: workflow \"access\" version 1 changed since it was first loaded", r.stdout)
        rid = self.submit(d)
        self.wait_status(rid, "completed")
        self.assertEqual(self.receiver.steps_for(rid), ["old"])

    def test_an_invalid_workflow_stops_start_up_with_its_position(self):
        self.workflow("  - id: a\n    action: webhook.cal\n")
        d = Daemon(self.config)
        self.daemons.append(d)
        self.assertEqual(d.wait_exit(), 1)
        self.assertTrue(any("access.yaml:6:13: unknown action \\\"webhook.cal\\\"" in l for l in d.lines), d.lines)


class EngineOnSqlite(EngineTests, unittest.TestCase):
    def database(self):
        return "sqlite3://db=var/privacyd.db"

    def query(self, sql):
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "privacyd.db"), timeout=10)
        try:
            row = db.execute(sql).fetchone()
            return None if row is None else str(row[0])
        finally:
            db.close()

    def test_an_edited_audit_entry_is_found(self):
        self.workflow(self.call("only"))
        d = self.start()
        rid = self.submit(d)
        self.wait_status(rid, "completed")
        self.assertEqual(d.stop(), 0)
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "privacyd.db"))
        with self.assertRaises(sqlite3.DatabaseError):
            db.execute("UPDATE audit_log SET event = 'nothing.happened' WHERE seq = 2")
        db.execute("DROP TRIGGER audit_log_no_update")
        db.execute("UPDATE audit_log SET event = 'nothing.happened' WHERE seq = 2")
        db.commit()
        db.close()
        r = self.audit_verify()
        self.assertEqual(r.returncode, 1)
        self.assertIn("audit chain broken at entry 2: entry 2 was altered", r.stdout)


class EngineOnPostgres(OnPostgres, EngineTests, unittest.TestCase):
    def test_two_instances_share_500_requests_and_never_run_a_step_twice_at_once(self):
        self.workflow(self.call("one") + self.call("two"))
        a = self.start()
        b = self.start()
        ids = []
        lock = threading.Lock()

        def send(daemon, start):
            for n in range(start, start + 250):
                status, resp = daemon.webhook(access_request(n), self.secret)
                assert status == 202, resp
                with lock:
                    ids.append(resp["request_id"])

        threads = [threading.Thread(target=send, args=(a, 0)), threading.Thread(target=send, args=(b, 250))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(ids), 500)
        wait_for(lambda: self.query("SELECT COUNT(*) FROM requests WHERE status = 'completed'") == "500",
                 timeout=180, what="all 500 requests to complete")
        self.assertEqual(self.receiver.overlaps, 0, "a step ran in two places at once")
        delivered = self.receiver.ids()
        self.assertEqual(len(delivered), 1000)
        self.assertEqual(len(set(delivered)), 1000)  # no step ran twice at all (nothing crashed)
        completed_by = [sum(1 for l in d.lines if "request completed" in l) for d in (a, b)]
        self.assertEqual(sum(completed_by), 500)
        self.assertGreater(min(completed_by), 0, f"one instance did all the work: {completed_by}")
        r = self.audit_verify()
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("intact", r.stdout)
        self.assertEqual(a.stop(), 0)
        self.assertEqual(b.stop(), 0)

    def test_an_edited_audit_entry_is_found(self):
        self.workflow(self.call("only"))
        d = self.start()
        rid = self.submit(d)
        self.wait_status(rid, "completed")
        self.assertEqual(d.stop(), 0)
        self.pg.psql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only", dbname=self.dbname)
        self.pg.psql("DELETE FROM audit_log WHERE seq = 2", dbname=self.dbname)
        r = self.audit_verify()
        self.assertEqual(r.returncode, 1)
        self.assertIn("audit chain broken at entry 2: entry 2 is missing", r.stdout)


if __name__ == "__main__":
    unittest.main()
