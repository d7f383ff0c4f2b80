"""The three request types end to end (SPEC §4) through the real binary,
against the demo data systems created by `privacyd demo` — on SQLite, and
again with the systems on PostgreSQL."""
import json
import os
import sqlite3
import tempfile
import unittest

from harness import (Daemon, OnPostgres, Receiver, demo_setup, new_secret, run, use_policies, wait_for, write_config,
                     write_secrets)

ENGINE = "engine: { lease: 2s, poll: 100ms }\n"
HOSTILE = ["demo-001' OR '1'='1", "x'; DROP TABLE accounts; --", "demo-001\" OR 1=1 --", "%"]


class RequestTypes:
    """Subclasses say where the data systems live."""

    def system_url(self, name):
        raise NotImplementedError

    def system_query(self, system, sql):
        raise NotImplementedError

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        # The partners' notice webhooks: one loopback receiver that checks
        # every signature (both partners share its secret here).
        self.partner_secret = new_secret()
        self.partners = Receiver(self.partner_secret)
        self.addCleanup(self.partners.close)
        policies = demo_setup(self.dir.name, self.partners.url, self.partner_secret,
                              systems={"partner-center": self.system_url("partner-center"),
                                       "developer-institute": self.system_url("developer-institute")},
                              replace={"hold: 3y": "hold: 3s"})  # so the test sees the hold end
        self.secret = new_secret()
        self.config = write_config(self.dir.name, extra=ENGINE)
        use_policies(self.config, policies)
        write_secrets(self.dir.name, [self.secret])
        r = run(["demo", "--config", self.config])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("demo ledger: 5 association(s) recorded", r.stdout)
        again = run(["demo", "--config", self.config])
        self.assertIn("demo ledger: 0 association(s) recorded", again.stdout)
        self.d = Daemon(self.config)
        self.addCleanup(self.d.kill)
        self.d.wait_ready()

    def ledger(self, sql):
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "privacyd.db"), timeout=10)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    def request(self, body):
        body.setdefault("occurred_at", "2026-11-26T05:00:00Z")
        status, resp = self.d.webhook(body, self.secret)
        self.assertEqual(status, 202, resp)
        return resp.get("request_id") or resp.get("event_id")

    def finish(self, rid, status="completed"):
        wait_for(lambda: self.ledger(f"SELECT status FROM requests WHERE id = '{rid}'")[0][0] in
                 ("completed", "failed", "rejected"), timeout=60, what=f"{rid} to finish")
        got = self.ledger(f"SELECT status, reason FROM requests WHERE id = '{rid}'")[0]
        self.assertEqual(got[0], status, got)
        return {step: json.loads(out) if out else None for step, out in
                self.ledger(f"SELECT step_id, output FROM request_steps WHERE request_id = '{rid}'")}

    def partner_notices(self, rid):
        with self.partners._lock:
            return [(i, b) for (i, b, t) in self.partners.deliveries if b.get("request_id") == rid]

    def subject_notice(self, notice_id):
        with open(os.path.join(self.dir.name, "var", "notices", f"{notice_id}.eml"), encoding="utf-8") as f:
            return f.read()

    def package(self, rid):
        r = run(["export", "--config", self.config, rid])
        self.assertEqual(r.returncode, 0, r.stderr)
        return json.loads(r.stdout)

    def test_access_returns_exactly_the_demo_data_and_the_recipients(self):
        rid = self.request({"type": "request.access", "subject": {"huawei_id": "demo-002"}})
        steps = self.finish(rid)
        self.assertEqual(steps["package"]["categories"], 8)
        p = self.package(rid)
        self.assertEqual(p["subject"], {"huawei_id": "demo-002"})
        c = p["categories"]
        self.assertEqual(c["email_address"]["systems"]["partner-center"], [{"email": "alex.morgan@demo.example"}])
        self.assertEqual(c["personal_name"]["description"], "Personal name")
        self.assertEqual(c["exam_records"]["systems"]["developer-institute"],
                         [{"exam": "HCIA-Cloud", "score": 74, "taken_at": "2026-04-10"}])
        self.assertEqual(len(c["learning_records"]["systems"]["developer-institute"]), 2)
        self.assertEqual(c["certificates"]["systems"]["developer-institute"], [])
        recipients = sorted((r["partner_id"], r["category"]) for r in p["disclosed_to"])
        self.assertEqual(recipients, sorted(
            [("P-1001", c) for c in ["account_name", "account_id", "personal_name", "phone_number", "email_address"]]
            + [("P-1002", c) for c in ["account_name", "account_id", "exam_records", "certificates"]]))
        self.assertTrue(all(r["first_disclosed_at"] == "2026-01-15T09:00:00Z" for r in p["disclosed_to"]))
        # The collected rows are sealed at rest; only counts are in the step.
        self.assertEqual(steps["collect"]["rows"]["learning_records"], 2)
        with open(os.path.join(self.dir.name, "var", "privacyd.db"), "rb") as f:
            self.assertNotIn(b"alex.morgan@demo.example", f.read())

    def test_deletion_erases_all_but_the_held_and_the_hold_ends_on_its_day(self):
        rid = self.request({"type": "request.deletion", "subject": {"huawei_id": "demo-001"}})
        steps = self.finish(rid)
        erased = {(e["system"], e["category"]) for e in steps["erase"]["erased"]}
        self.assertIn(("partner-center", "email_address"), erased)
        self.assertIn(("developer-institute", "exam_records"), erased)
        retained = steps["erase"]["retained"]
        self.assertEqual([(r["category"], r["reason"]) for r in retained],
                         [("certificates", "certificate verification for partner programme audits")])
        self.assertEqual(self.system_query("partner-center",
                                           "SELECT email, personal_name FROM accounts WHERE huawei_id = 'demo-001'"),
                         [(None, None)])
        self.assertEqual(self.system_query("developer-institute",
                                           "SELECT COUNT(*) FROM exam_results WHERE huawei_id = 'demo-001'"), [(0,)])
        # Account ids have no erase query: they stay, as the policy says.
        self.assertEqual(self.system_query("partner-center",
                                           "SELECT account_id FROM accounts WHERE huawei_id = 'demo-001'"), [("100001",)])
        # Other subjects are untouched.
        self.assertEqual(self.system_query("developer-institute",
                                           "SELECT COUNT(*) FROM exam_results WHERE huawei_id = 'demo-002'"), [(1,)])
        # The certificate is kept until the hold (3s here) ends, then erased.
        # The hold is marked erased after the system's row is gone, so wait
        # for the mark and then look at the system.
        wait_for(lambda: self.ledger(f"SELECT status FROM retention_holds WHERE request_id = '{rid}'") == [("erased",)],
                 timeout=30, what="the hold to end and its category to be erased")
        self.assertEqual(self.system_query("developer-institute",
                                           "SELECT COUNT(*) FROM certificates WHERE huawei_id = 'demo-001'"), [(0,)])
        self.assertEqual(self.system_query("developer-institute",
                                           "SELECT COUNT(*) FROM certificates WHERE huawei_id = 'demo-003'"), [(1,)])
        self.assertEqual(self.ledger("SELECT COUNT(*) FROM audit_log WHERE event = 'retention.erased'"), [(1,)])
        # Both partners that received demo-001's data... only P-1001 did:
        # it is asked to erase what it got.
        notices = self.partner_notices(rid)
        self.assertEqual([(b["type"], b["partner_id"]) for _, b in notices], [("notice.erasure", "P-1001")])
        self.assertEqual(sorted(notices[0][1]["categories"]),
                         sorted(["account_name", "account_id", "personal_name", "phone_number", "email_address"]))
        mail = self.subject_notice(steps["tell-subject"]["notices"][0])
        self.assertIn("certificate verification for partner programme audits", mail)

    def test_disassociation_unlinks_and_computes_what_the_partner_holds(self):
        # More disclosed to P-1001 after the demo association, on two days.
        self.request({"type": "data.disclosed", "occurred_at": "2026-03-01T10:00:00Z",
                      "subject": {"huawei_id": "demo-001"}, "partner": {"id": "P-1001"},
                      "categories": ["exam_records"]})
        self.request({"type": "data.disclosed", "occurred_at": "2026-05-01T10:00:00Z",
                      "subject": {"huawei_id": "demo-001"}, "partner": {"id": "P-1001"},
                      "categories": ["exam_records", "email_address"]})
        rid = self.request({"type": "request.disassociation", "subject": {"huawei_id": "demo-001"},
                            "partner": {"id": "P-1001"}})
        steps = self.finish(rid)
        self.assertEqual(steps["unlink"]["unlinked"], {"partner-center": 1})
        h = steps["holdings"]
        self.assertEqual(h["partner_id"], "P-1001")
        self.assertEqual(h["partner_name"], "Example Partner Ltd.")
        self.assertEqual(h["categories"], sorted(["account_name", "account_id", "personal_name", "phone_number",
                                                  "email_address", "exam_records"]))
        by = {d["category"]: d for d in h["disclosed"]}
        self.assertEqual(by["exam_records"]["first_disclosed_at"], "2026-03-01T10:00:00Z")
        self.assertEqual(by["exam_records"]["last_disclosed_at"], "2026-05-01T10:00:00Z")
        self.assertEqual(by["email_address"]["first_disclosed_at"], "2026-01-15T09:00:00Z")
        self.assertEqual(by["email_address"]["last_disclosed_at"], "2026-05-01T10:00:00Z")
        self.assertEqual(h["associated_from"], "2026-01-15T09:00:00Z")
        self.assertEqual(h["disassociated_at"], steps["unlink"]["disassociated_at"])
        # The partner was told exactly what it still holds, signed, once.
        notices = self.partner_notices(rid)
        self.assertEqual(len(notices), 1, notices)
        notice_id, body = notices[0]
        self.assertEqual(body["type"], "notice.disassociation")
        self.assertEqual(body["notice_id"], notice_id)
        self.assertEqual(body["partner_id"], "P-1001")
        self.assertEqual(body["subject"], {"huawei_id": "demo-001"})
        self.assertEqual(body["categories"], h["categories"])
        self.assertEqual(body["disclosed"], h["disclosed"])
        self.assertEqual(body["disassociated_at"], h["disassociated_at"])
        self.assertIn("Example Partner Ltd.", body["text"])
        self.assertIn("remain responsible for the security", body["text"])
        self.assertEqual(steps["notify-partner"]["notices"], [notice_id])
        # The person was told who may hold what, and how to reach them, in
        # their language (demo-001's locale is zh-CN).
        mail = self.subject_notice(steps["notify-subject"]["notices"][0])
        self.assertIn("To: <lin.wei@demo.example>", mail)
        self.assertIn("Example Partner Ltd.", mail)
        self.assertIn("privacy@partner.example", mail)
        self.assertIn("解除关联", mail)
        self.assertEqual(self.partners.bad_signatures, 0)
        self.assertEqual(self.system_query("partner-center",
                                           "SELECT partner_id FROM partner_members WHERE huawei_id = 'demo-001'"), [])
        # demo-002 stays with P-1001 (and P-1002).
        self.assertEqual(len(self.system_query("partner-center",
                                               "SELECT partner_id FROM partner_members WHERE huawei_id = 'demo-002'")), 2)

        # Associated again, disclosed more, disassociated again: the partner
        # holds what it got in both periods.
        self.request({"type": "association.created", "occurred_at": "2026-08-01T00:00:00Z",
                      "subject": {"huawei_id": "demo-001"}, "partner": {"id": "P-1001"},
                      "categories": ["learning_records"], "statement_version": "2.0"})
        second = self.request({"type": "request.disassociation", "subject": {"huawei_id": "demo-001"},
                               "partner": {"id": "P-1001"}})
        h2 = self.finish(second)["holdings"]
        self.assertIn("learning_records", h2["categories"])
        self.assertIn("exam_records", h2["categories"])
        self.assertEqual(h2["associated_from"], "2026-01-15T09:00:00Z")

    def test_a_subject_never_associated_is_rejected(self):
        rid = self.request({"type": "request.disassociation", "subject": {"huawei_id": "demo-004"},
                            "partner": {"id": "P-1001"}})
        self.finish(rid, "rejected")
        self.assertEqual(self.ledger(f"SELECT reason FROM requests WHERE id = '{rid}'"), [("not_associated",)])
        steps = self.ledger(f"SELECT step_id FROM request_steps WHERE request_id = '{rid}'")
        self.assertEqual(steps, [("unlink",)])  # holdings never ran

    def test_hostile_subject_ids_change_nothing(self):
        accounts = self.system_query("partner-center", "SELECT COUNT(*) FROM accounts")
        members = self.system_query("partner-center", "SELECT COUNT(*) FROM partner_members")
        exams = self.system_query("developer-institute", "SELECT COUNT(*) FROM exam_results")
        for hostile in HOSTILE:
            with self.subTest(hostile):
                access = self.request({"type": "request.access", "subject": {"huawei_id": hostile}})
                self.assertEqual(self.finish(access)["collect"]["rows"]["email_address"], 0)
                deletion = self.request({"type": "request.deletion", "subject": {"huawei_id": hostile}})
                self.assertTrue(all(e["rows"] == 0 for e in self.finish(deletion)["erase"]["erased"]))
                unlink = self.request({"type": "request.disassociation", "subject": {"huawei_id": hostile},
                                       "partner": {"id": "P-1001"}})
                self.finish(unlink, "rejected")
        self.assertEqual(self.system_query("partner-center", "SELECT COUNT(*) FROM accounts"), accounts)
        self.assertEqual(self.system_query("partner-center", "SELECT COUNT(*) FROM partner_members"), members)
        self.assertEqual(self.system_query("developer-institute", "SELECT COUNT(*) FROM exam_results"), exams)
        self.assertEqual(self.system_query("partner-center",
                                           "SELECT email FROM accounts WHERE huawei_id = 'demo-001'"),
                         [("lin.wei@demo.example",)])


class RequestsOnSqliteSystems(RequestTypes, unittest.TestCase):
    def system_url(self, name):
        return f"sqlite3://db=var/demo/{name}.db"

    def system_query(self, system, sql):
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "demo", f"{system}.db"), timeout=10)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()


class RequestsOnPostgresSystems(OnPostgres, RequestTypes, unittest.TestCase):
    """The data systems on PostgreSQL (the cluster is OnPostgres's); privacyd
    itself stays on SQLite."""

    def setUp(self):
        type(self).databases += 1
        self.suffix = type(self).databases
        for name in ("pc", "institute"):
            self.pg.psql(f"CREATE DATABASE {name}_{self.suffix}")
        super().setUp()

    def dbname(self, system):
        return f"{'pc' if system == 'partner-center' else 'institute'}_{self.suffix}"

    def system_url(self, name):
        return self.pg.dsn(self.dbname(name))

    def system_query(self, system, sql):
        # psql prints text; counts come back as numbers, like sqlite3's.
        counting = sql.upper().startswith("SELECT COUNT(")
        out = self.pg.psql(sql, dbname=self.dbname(system)).strip()
        return [tuple(None if v == "" else (int(v) if counting else v) for v in line.split("|"))
                for line in (out.split("\n") if out else [])]


if __name__ == "__main__":
    unittest.main()
