"""The signed webhook intake (SPEC §3) through the real binary, on SQLite
and on a throwaway PostgreSQL: every status code, idempotency under
concurrency, durability, and no personal data at rest or in the logs."""
import datetime
import glob
import json
import os
import signal
import sqlite3
import tempfile
import threading
import time
import unittest

from harness import BIN, Daemon, OnPostgres, PgCluster, new_secret, run, sign, wait_for, write_config, write_secrets

# Distinctive personal data, to search for afterwards.
PERSON = {"huawei_id": "hw-zq81-subject", "account_name": "zq81acct", "name": "Lin Zq81Wei",
          "email": "lin.zq81@example.com", "phone": "+86 138 9999 7781", "locale": "zh-CN"}


def body(type_="request.access", **extra):
    b = {"type": type_, "occurred_at": "2026-11-26T05:00:00Z", "subject": dict(PERSON)}
    b.update(extra)
    return b


class IntakeContract:
    """The tests; subclasses say which database."""

    def database(self):
        raise NotImplementedError

    def count(self, sql):
        raise NotImplementedError

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.secret = new_secret()
        # No workflows: intake is tested alone, so requests stay `received`.
        idle = os.path.join(self.dir.name, "no-workflows")
        os.makedirs(idle)
        self.config = write_config(self.dir.name, database=self.database(), workflows=idle)
        write_secrets(self.dir.name, [self.secret])
        self.d = Daemon(self.config)
        self.addCleanup(self.d.kill)
        self.d.wait_ready()

    def send(self, b, **kw):
        return self.d.webhook(b, self.secret, **kw)

    def test_a_request_is_accepted_with_its_deadline(self):
        status, resp = self.send(body("request.deletion", categories=["exam_records"], jurisdiction="EU"))
        self.assertEqual(status, 202, resp)
        self.assertEqual(resp["status"], "received")
        self.assertRegex(resp["request_id"], r"^req_[0-9a-z]{26}$")
        deadline = datetime.datetime.fromisoformat(resp["deadline"].replace("Z", "+00:00"))
        expected = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=30)
        self.assertLess(abs((deadline - expected).total_seconds()), 120)
        self.assertEqual(self.count(f"SELECT COUNT(*) FROM requests WHERE id = '{resp['request_id']}'"
                                    " AND status = 'received' AND type = 'deletion'"), 1)

    def test_events_are_recorded_in_the_ledger(self):
        status, resp = self.send(body("association.created", partner={"id": "P-1001"}, statement_version="1.0",
                                      categories=["account_name", "email_address"]))
        self.assertEqual((status, resp["status"]), (202, "recorded"))
        self.assertRegex(resp["event_id"], r"^evt_")
        status, _ = self.send(body("data.disclosed", partner={"id": "P-1001"}, categories=["exam_records"]))
        self.assertEqual(status, 202)
        self.assertEqual(self.count("SELECT COUNT(*) FROM associations WHERE partner_id = 'P-1001'"
                                    " AND statement_version = '1.0' AND ended_at IS NULL"), 1)
        self.assertEqual(self.count("SELECT COUNT(*) FROM disclosures WHERE partner_id = 'P-1001'"), 3)
        self.assertEqual(self.count("SELECT COUNT(*) FROM subjects"), 1)

    def test_a_repeat_answers_the_same_and_creates_nothing(self):
        b = json.dumps(body()).encode()
        first = self.send(b, msg_id="msg_repeat")
        second = self.send(b, msg_id="msg_repeat")
        self.assertEqual(first[0], 202)
        self.assertEqual(first, second)
        self.assertEqual(self.count("SELECT COUNT(*) FROM requests"), 1)

    def test_the_same_id_with_another_body_is_a_conflict(self):
        self.assertEqual(self.send(body(), msg_id="msg_c")[0], 202)
        status, resp = self.send(body("request.deletion"), msg_id="msg_c")
        self.assertEqual(status, 409)
        self.assertEqual(resp["error"]["code"], "idempotency_conflict")
        self.assertEqual(self.count("SELECT COUNT(*) FROM requests"), 1)

    def test_simultaneous_deliveries_of_one_id_create_one_request(self):
        b = json.dumps(body()).encode()
        ts = int(time.time())
        answers = []
        lock = threading.Lock()
        start = threading.Barrier(16)

        def deliver():
            start.wait()
            a = self.send(b, msg_id="msg_race", timestamp=ts)
            with lock:
                answers.append(a)

        threads = [threading.Thread(target=deliver) for _ in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(answers), 16)
        self.assertEqual({a[0] for a in answers}, {202})
        self.assertEqual(len({json.dumps(a[1], sort_keys=True) for a in answers}), 1)
        self.assertEqual(self.count("SELECT COUNT(*) FROM requests"), 1)
        self.assertEqual(self.count("SELECT COUNT(*) FROM webhook_deliveries"), 1)

    def test_signature_failures_are_401(self):
        b = json.dumps(body()).encode()
        now = int(time.time())
        cases = {
            "wrong secret": dict(signature=sign(new_secret(), "msg_x", now, b), msg_id="msg_x", timestamp=now),
            # Taken when sent, with room: a slow run must not drift into the
            # tolerance (a `now` read before the other cases once did).
            "stale": lambda: dict(timestamp=int(time.time()) - 310),
            "future": lambda: dict(timestamp=int(time.time()) + 310),
            "no signature": dict(headers={"webhook-signature": ""}),
            "no id": dict(headers={"webhook-id": ""}),
            "not numeric": dict(headers={"webhook-timestamp": "soon"}),
        }
        for name, kw in cases.items():
            with self.subTest(name):
                status, resp = self.send(b, **(kw() if callable(kw) else kw))
                self.assertEqual(status, 401)
                self.assertEqual(resp["error"]["code"], "invalid_signature")
        tampered = self.d.webhook(b, self.secret, msg_id="msg_t", timestamp=now,
                                  signature=sign(self.secret, "msg_t", now, b + b" "))
        self.assertEqual(tampered[0], 401)
        self.assertEqual(self.count("SELECT COUNT(*) FROM requests"), 0)

    def test_rotated_secrets_any_one_verifies_and_sighup_reloads_them(self):
        newer = new_secret()
        write_secrets(self.dir.name, [self.secret, newer])
        self.d.signal(signal.SIGHUP)
        self.d.wait_log(r'reloaded what="[^"]*webhook secrets')
        self.assertEqual(self.d.webhook(body(), newer)[0], 202)
        self.assertEqual(self.d.webhook(body(), self.secret)[0], 202)
        # Rotation done: the old secret is dropped.
        write_secrets(self.dir.name, [newer])
        self.d.signal(signal.SIGHUP)
        wait_for(lambda: self.d.webhook(body(), self.secret)[0] == 401, what="the old secret to be refused")
        self.assertEqual(self.d.webhook(body(), newer)[0], 202)

    def test_a_bad_secrets_file_on_reload_keeps_the_old_ones(self):
        with open(os.path.join(self.dir.name, "var", "keys", "webhook-secrets"), "w") as f:
            f.write("not-a-secret\n")
        self.d.signal(signal.SIGHUP)
        self.d.wait_log("reload refused")
        self.assertEqual(self.send(body())[0], 202)
        self.assertFalse(any("not-a-secret" in l for l in self.d.lines), "a secret-file line was logged")

    def test_bad_bodies_are_400_with_the_field(self):
        cases = [
            (b"{not json", "malformed_json", None),
            (json.dumps({"type": "request.erase", "occurred_at": "2026-11-26T05:00:00Z",
                         "subject": PERSON}).encode(), "unknown_type", "type"),
            (json.dumps(body(subject={"email": PERSON["email"]})).encode(), "missing_field", "subject.huawei_id"),
            (json.dumps(body("request.disassociation")).encode(), "missing_field", "partner"),
            (json.dumps(body(occurred_at="last tuesday")).encode(), "invalid_field", "occurred_at"),
            (json.dumps(body(subject=dict(PERSON, email="not-an-address"))).encode(), "invalid_field",
             "subject.email"),
            (json.dumps(body(categories=["exam_records", 5])).encode(), "invalid_field", "categories[1]"),
        ]
        for raw, code, field in cases:
            with self.subTest(code=code, field=field):
                status, resp = self.send(raw)
                self.assertEqual(status, 400, resp)
                self.assertEqual(resp["error"]["code"], code)
                self.assertEqual(resp["error"].get("field"), field)
                for value in PERSON.values():
                    self.assertNotIn(value, json.dumps(resp))
        self.assertEqual(self.count("SELECT COUNT(*) FROM requests"), 0)

    def test_unknown_partners_and_categories_are_refused(self):
        status, resp = self.send(body("request.disassociation", partner={"id": "P-9999"}))
        self.assertEqual(status, 404)
        self.assertEqual(resp["error"], {"code": "unknown_partner", "message": "no partner with this id",
                                         "field": "partner.id"})
        status, resp = self.send(body("request.deletion", categories=["email_address", "shoe_size"]))
        self.assertEqual(status, 400)
        self.assertEqual(resp["error"]["field"], "categories[1]")
        self.assertEqual(self.count("SELECT COUNT(*) FROM requests"), 0)

    def test_the_deadline_follows_the_jurisdiction(self):
        now = datetime.datetime.now(datetime.timezone.utc)
        for jurisdiction, days in (("US-CA", 45), ("EU", 30), ("Atlantis", 30)):
            with self.subTest(jurisdiction):
                status, resp = self.send(body(jurisdiction=jurisdiction))
                self.assertEqual(status, 202)
                deadline = datetime.datetime.fromisoformat(resp["deadline"].replace("Z", "+00:00"))
                self.assertLess(abs((deadline - now - datetime.timedelta(days=days)).total_seconds()), 120)

    def test_an_association_without_categories_discloses_the_partners_defaults(self):
        status, _ = self.send(body("association.created", partner={"id": "P-1002"}, statement_version="2.0"))
        self.assertEqual(status, 202)
        shared = ["account_name", "account_id", "exam_records", "certificates"]  # policies/partners.yaml
        self.assertEqual(self.count("SELECT COUNT(*) FROM disclosures WHERE partner_id = 'P-1002'"), len(shared))

    def test_wrong_media_type_is_415(self):
        status, resp = self.send(body(), headers={"Content-Type": "text/plain"})
        self.assertEqual(status, 415)
        self.assertEqual(resp["error"]["code"], "unsupported_media_type")

    def test_a_body_over_the_limit_is_413_and_not_read(self):
        big = json.dumps(body(padding="x" * (65 * 1024))).encode()
        status, resp = self.send(big)
        self.assertEqual(status, 413)
        self.assertEqual(resp["error"]["code"], "body_too_large")
        self.assertEqual(self.d.get_json("/healthz")[0], 200)

    def test_the_trigger_command_sends_a_signed_webhook(self):
        secrets = os.path.join(self.dir.name, "var", "keys", "webhook-secrets")
        url = f"http://127.0.0.1:{self.d.port()}/v1/webhooks/partner-center"
        r = run(["trigger", "request.disassociation", "--subject", "demo-001", "--partner", "P-1001",
                 "--url", url, "--secret-file", secrets])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertRegex(r.stdout, r'^202 \{"request_id":"req_[0-9a-z]{26}","status":"received","deadline":"')
        stale = run(["trigger", "request.access", "--url", url, "--secret-file", secrets,
                     "--timestamp", str(int(time.time()) - 3600)])
        self.assertEqual(stale.returncode, 1)
        self.assertIn("401", stale.stdout)

    def test_no_personal_data_in_logs(self):
        self.send(body("association.created", partner={"id": "P-1001"}, statement_version="1.0"))
        self.send(body())
        self.send(json.dumps(body(subject=dict(PERSON, email="broken"))).encode())
        self.d.stop()
        for line in self.d.lines:
            for value in PERSON.values():
                if len(value) > 5:
                    self.assertNotIn(value, line)


class IntakeOnSqlite(IntakeContract, unittest.TestCase):
    def database(self):
        return "sqlite3://db=var/privacyd.db"

    def count(self, sql):
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "privacyd.db"))
        try:
            return db.execute(sql).fetchone()[0]
        finally:
            db.close()

    def test_the_database_files_hold_no_plaintext_personal_data(self):
        self.send(body("association.created", partner={"id": "P-1001"}, statement_version="1.0"))
        self.send(body("request.disassociation", partner={"id": "P-1001"}))
        self.assertEqual(self.d.stop(), 0)
        files = glob.glob(os.path.join(self.dir.name, "var", "privacyd.db*"))
        self.assertTrue(files)
        for path in files:
            with open(path, "rb") as f:
                data = f.read()
            for key, value in PERSON.items():
                if key != "locale":
                    self.assertNotIn(value.encode(), data, f"{key} in plaintext in {os.path.basename(path)}")


class IntakeOnPostgres(OnPostgres, IntakeContract, unittest.TestCase):
    def test_the_database_holds_no_plaintext_personal_data(self):
        self.send(body("association.created", partner={"id": "P-1001"}, statement_version="1.0"))
        self.send(body("request.disassociation", partner={"id": "P-1001"}))
        dump = self.pg.dump(self.dbname)
        self.assertIn(b"webhook_deliveries", dump)
        for key, value in PERSON.items():
            if key != "locale":
                self.assertNotIn(value.encode(), dump, f"{key} in plaintext in the dump")

    def test_database_down_is_503_and_nothing_acknowledged_is_lost(self):
        acknowledged = []
        unavailable = []
        stop = threading.Event()

        def stream():
            i = 0
            while not stop.is_set() and i < 2000:
                i += 1
                status, resp = self.send(body(), msg_id=f"msg_stream_{i}")
                if status == 202:
                    acknowledged.append(resp["request_id"])
                elif status == 503:
                    self.assertEqual(resp["error"]["code"], "unavailable")
                    unavailable.append(i)
                else:
                    raise AssertionError(f"unexpected {status}")

        t = threading.Thread(target=stream)
        t.start()
        try:
            wait_for(lambda: len(acknowledged) >= 5, what="some webhooks before the outage")
            self.pg.stop()
            wait_for(lambda: len(unavailable) >= 3, what="503s while the database is down")
        finally:
            self.pg.start()
        before = len(acknowledged)
        wait_for(lambda: len(acknowledged) >= before + 5, timeout=30, what="recovery after the outage")
        stop.set()
        t.join(timeout=60)
        stored = set(self.pg.psql("SELECT id FROM requests", dbname=self.dbname).split())
        self.assertTrue(set(acknowledged) <= stored, "a 202 was sent for a request that is not in the database")
        # A 503 may still have committed (the answer, not the commit, was
        # lost); the sender retries it. The reverse is what must never be.
        self.assertGreaterEqual(self.count("SELECT COUNT(*) FROM webhook_deliveries"), len(acknowledged))

if __name__ == "__main__":
    unittest.main()
