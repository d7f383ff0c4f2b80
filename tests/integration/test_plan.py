"""Dry runs (SPEC §16), through the real binary on SQLite and on PostgreSQL:
`privacyd plan` and GET /v1/plan say, for each request type on the demo
data, what running the request then does (the same systems, the same rows
for access, the same recipients), and change nothing: every table of
privacyd's database and of the data systems holds the same rows after."""
import json
import os
import sqlite3
import subprocess
import unittest

from harness import Daemon, OnPostgres, run, wait_for
from test_admin import AdminSetup


class Plans(AdminSetup):
    def prepare_config(self, config):
        # The Partner Center is called back at each request's end: the plan says so.
        with open(config, "a") as f:
            f.write(f"partner_center:\n  callback_url: {self.partners.url}\n"
                    f"  secret_file: var/keys/partner-P-1001.secret\n")

    def demo_tables(self):
        out = {}
        folder = os.path.join(self.dir.name, "var", "demo")
        for name in sorted(os.listdir(folder)):
            if name.endswith(".db"):
                db = sqlite3.connect(os.path.join(folder, name))
                try:
                    out[name] = list(db.iterdump())
                finally:
                    db.close()
        return out

    def plan(self, *args):
        r = run(["plan", "--config", self.config, *args, "--json"])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return json.loads(r.stdout)

    def api_plan(self, query):
        status, _, raw = self.d.request("GET", "/v1/plan?" + query, listener="admin",
                                        headers={"Authorization": "Bearer " + self.tokens["ops"]})
        return status, json.loads(raw)

    def finish(self, rid):
        def state():
            status, _, raw = self.d.request("GET", f"/v1/requests/{rid}", listener="admin",
                                            headers={"Authorization": "Bearer " + self.tokens["ops"]})
            shown = json.loads(raw)
            if shown["status"] == "awaiting_approval":
                self.d.request("POST", f"/v1/requests/{rid}/approve", body=b"{}", listener="admin",
                               headers={"Authorization": "Bearer " + self.tokens["ops"],
                                        "Content-Type": "application/json"})
            return shown["status"] in ("completed", "rejected", "failed") and shown
        return wait_for(state, timeout=60, what=f"{rid} to finish")

    def step_output(self, shown, step_id):
        return next(s for s in shown["steps"] if s["id"] == step_id)

    def test_a_plan_changes_nothing_and_says_what_the_request_then_does(self):
        cases = [("access", "demo-001", None), ("deletion", "demo-002", None),
                 ("disassociation", "demo-005", "P-1001")]
        # With privacyd stopped, so that only the plan could change anything.
        self.assertEqual(self.d.stop(), 0)
        plans = {}
        before = (self.tables(), self.demo_tables())
        for type_, subject, partner in cases:
            plans[type_] = self.plan(type_, "--subject", subject, *(["--partner", partner] if partner else []))
            text = run(["plan", "--config", self.config, type_, "--subject", subject,
                        *(["--partner", partner] if partner else [])])
            self.assertEqual(text.returncode, 0, text.stderr)
            self.assertIn("nothing was changed", text.stdout)
            self.assertNotIn(subject, text.stdout + json.dumps(plans[type_]))
        self.assertEqual((self.tables(), self.demo_tables()), before)

        self.d = Daemon(self.config)
        self.addCleanup(self.d.kill)
        self.d.wait_ready()
        # The API plans the same.
        status, api = self.api_plan("type=disassociation&subject=demo-005&partner=P-1001")
        self.assertEqual(status, 200, api)
        self.assertEqual(api["steps"], plans["disassociation"]["steps"])
        status, refused = self.api_plan("type=erasure&subject=demo-005")
        self.assertEqual((status, refused["error"]["code"]), (400, "bad_plan"))
        viewer = self.d.request("GET", "/v1/plan?type=access&subject=demo-001", listener="admin",
                                headers={"Authorization": "Bearer " + self.tokens["watcher"]})[0]
        self.assertEqual(viewer, 403)

        ran = {}
        for type_, subject, partner in cases:
            rid = self.submit(f"request.{type_}", subject, partner)
            ran[type_] = (rid, self.finish(rid))
            self.assertEqual(ran[type_][1]["status"], "completed", ran[type_][1])

        def steps(type_):
            return {s["id"]: s for s in plans[type_]["steps"]}

        # Access: the same systems and categories, the same rows.
        collect = steps("access")["collect"]["systems"]
        read = self.output(ran["access"][0], "collect")["read"]
        self.assertEqual(sorted((e["system"], e["category"], e["rows"]) for e in collect),
                         sorted((e["system"], e["category"], e["rows"]) for e in read))
        self.assertTrue(any(e["rows"] > 0 for e in collect))
        # Deletion: erased or held where the plan said, held where it said.
        erase = steps("deletion")["erase"]["systems"]
        done = self.output(ran["deletion"][0], "erase")
        self.assertEqual(sorted((e["system"], e["category"]) for e in erase),
                         sorted([(e["system"], e["category"]) for e in done["erased"]] +
                                [(e["system"], e["category"]) for e in done["retained"]]))
        self.assertEqual(sorted((e["system"], e["category"]) for e in erase if "hold" in e),
                         sorted((e["system"], e["category"]) for e in done["retained"]))
        # Disassociation: the systems unlinked.
        unlink = steps("disassociation")["unlink"]["systems"]
        self.assertEqual(sorted(e["system"] for e in unlink),
                         sorted(self.output(ran["disassociation"][0], "unlink")["unlinked"]))
        self.assertTrue(steps("disassociation")["unlink"]["associated_in_ledger"])
        # Every type: the same recipients.
        for type_ in plans:
            planned = sorted([(n["channel"], n["recipient"]) for s in plans[type_]["steps"] for n in s.get("notices", [])]
                             + [(n["channel"], n["recipient"]) for n in plans[type_]["on_completion"]["notices"]])
            sent = sorted((n["channel"], n["recipient"]) for n in ran[type_][1]["notices"])
            self.assertEqual(planned, sent, type_)
            self.assertTrue(planned, type_)
            self.assertIn(("partner_center", "partner-center"), planned, type_)


class PlansOnSqlite(Plans, unittest.TestCase):
    def tables(self):
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "privacyd.db"))
        try:
            return list(db.iterdump())
        finally:
            db.close()

    def output(self, rid, step_id):
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "privacyd.db"))
        try:
            (text,) = db.execute("SELECT output FROM request_steps WHERE request_id = ? AND step_id = ?",
                                 (rid, step_id)).fetchone()
            return json.loads(text)
        finally:
            db.close()


class PlansOnPostgres(OnPostgres, Plans, unittest.TestCase):
    def database_url(self):
        return self.database()

    def tables(self):
        dump = subprocess.run([f"{self.pg.bindir}/pg_dump", "-h", "127.0.0.1", "-p", str(self.pg.port), "-U",
                               "privacyd", "--data-only", self.dbname], check=True, capture_output=True, timeout=120)
        # Recent pg_dump wraps each dump in \restrict KEY … \unrestrict KEY
        # with a random key: not table contents.
        return [line for line in dump.stdout.splitlines() if not line.startswith((b"\\restrict", b"\\unrestrict"))]

    def output(self, rid, step_id):
        return json.loads(self.query(f"SELECT output FROM request_steps WHERE request_id = '{rid}'"
                                     f" AND step_id = '{step_id}'"))


if __name__ == "__main__":
    unittest.main()
