"""The admin API and the operator's command line (SPEC §8), through the real
binary: who may call what, what each action does to a real request, paging,
the audit check, reload, and /metrics as promtool reads it."""
import http.client
import json
import os
import re
import shutil
import sqlite3
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from harness import (REPO, Daemon, OnPostgres, Receiver, demo_setup, make_certificates, new_secret, run, sign,
                     use_policies, wait_for, write_admin_tokens, write_config, write_secrets)

ENGINE = "engine: { lease: 2s, poll: 100ms }\n"
NOTICES = "  file_dir: var/notices\n  timeout: 1s\n  retry_schedule: [0s, 300ms]\n"

# (method, path, role needed); {r} is a request id, {n} a notice id.
ENDPOINTS = [
    ("GET", "/v1/requests", "viewer"),
    ("GET", "/v1/requests/{r}", "viewer"),
    ("POST", "/v1/requests/{r}/approve", "operator"),
    ("POST", "/v1/requests/{r}/reject", "operator"),
    ("POST", "/v1/requests/{r}/retry", "operator"),
    ("POST", "/v1/requests/{r}/extend", "operator"),
    ("GET", "/v1/requests/{r}/export", "operator"),
    ("GET", "/v1/requests/{r}/audit", "viewer"),
    ("GET", "/v1/overview", "viewer"),
    ("GET", "/v1/whoami", "viewer"),
    ("GET", "/v1/notices", "viewer"),
    ("POST", "/v1/notices/{n}/retry", "operator"),
    ("POST", "/v1/notices/{n}/acknowledge", "operator"),
    ("GET", "/v1/audit/verify", "viewer"),
    ("POST", "/v1/reload", "operator"),
]


def admin_workflows(folder):
    """The shipped workflows with an approval step before deletion erases."""
    workflows = os.path.join(folder, "workflows")
    shutil.copytree(os.path.join(REPO, "workflows"), workflows)
    path = os.path.join(workflows, "deletion.yaml")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("steps:\n", "steps:\n  - id: review\n    action: approval\n", 1))
    return workflows


class AdminSetup:
    """A test-case mixin: the demo with its partners played by a Receiver,
    deletion waiting for an operator's approval, admin tokens for a viewer
    ("watcher") and an operator ("ops"), and privacyd serving. Subclasses
    say which database privacyd uses, and may change the workflows first."""

    def database_url(self):
        return None

    def prepare_workflows(self, workflows):
        pass

    def prepare_config(self, config):
        pass

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.partner_secret = new_secret()
        self.partners = Receiver(self.partner_secret)
        self.addCleanup(self.partners.close)
        policies = demo_setup(self.dir.name, self.partners.url, self.partner_secret)
        secret_file = os.path.join(self.dir.name, "var", "keys", "partner-P-1001.secret")
        self.workflows = workflows = admin_workflows(self.dir.name)
        self.partner_secret_file = secret_file
        self.prepare_workflows(workflows)
        self.secret = new_secret()
        self.config = write_config(self.dir.name, database=self.database_url(), extra=ENGINE, workflows=workflows)
        use_policies(self.config, policies, NOTICES)
        self.prepare_config(self.config)
        write_secrets(self.dir.name, [self.secret])
        self.tokens = write_admin_tokens(self.dir.name, self.config)
        r = run(["demo", "--config", self.config])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.d = Daemon(self.config)
        self.addCleanup(self.d.kill)
        self.d.wait_ready()

    def submit(self, type_, subject="demo-001", partner=None, **subject_fields):
        body = {"type": type_, "occurred_at": "2026-11-26T05:00:00Z",
                "subject": {"huawei_id": subject, **subject_fields}}
        if partner:
            body["partner"] = {"id": partner}
        status, resp = self.d.webhook(body, self.secret)
        self.assertEqual(status, 202, resp)
        return resp["request_id"]


class Admin(AdminSetup):
    def prepare_workflows(self, workflows):
        self.access_check(workflows, self.partner_secret_file)

    def access_check(self, workflows, secret_file):
        """A webhook.call step before access collects, which the receiver
        can be told to refuse."""
        path = os.path.join(workflows, "access.yaml")
        with open(path) as f:
            text = f.read()
        step = (f"  - id: check\n    action: webhook.call\n    retry: {{ attempts: 3, backoff: 100ms }}\n"
                f"    with: {{ url: \"{self.partners.url}\", secret_file: \"{secret_file}\" }}\n")
        with open(path, "w") as f:
            f.write(text.replace("steps:\n", "steps:\n" + step, 1))

    # --- helpers -----------------------------------------------------------

    def call(self, method, path, token="ops", body=None):
        headers = {}
        if token is not None:
            headers["Authorization"] = "Bearer " + self.tokens.get(token, token)
        data = None
        if body is not None:
            data = json.dumps(body).encode() if not isinstance(body, bytes) else body
            headers["Content-Type"] = "application/json"
        status, resp_headers, raw = self.d.request(method, path, body=data, headers=headers, listener="admin")
        try:
            parsed = json.loads(raw) if raw else None
        except ValueError:
            parsed = raw.decode(errors="replace")
        return status, parsed, resp_headers

    def status_of(self, rid, wanted, timeout=60):
        def current():
            s, r, _ = self.call("GET", f"/v1/requests/{rid}", token="watcher")
            self.assertEqual(s, 200, r)
            return r if r["status"] == wanted else None
        return wait_for(current, timeout=timeout, what=f"{rid} to be {wanted}")

    # --- who may call what ---------------------------------------------------

    def test_every_endpoint_refuses_without_a_token_or_with_the_wrong_role(self):
        rid = self.submit("request.deletion")
        self.status_of(rid, "awaiting_approval")
        forged = "x" * 32
        for method, pattern, role in ENDPOINTS:
            path = pattern.format(r=rid, n="ntc_0000000000000000000000000")
            with self.subTest(method=method, path=pattern):
                s, body, headers = self.call(method, path, token=None)
                self.assertEqual(s, 401, body)
                self.assertEqual(body["error"]["code"], "unauthorized")
                self.assertIn("Bearer", headers.get("WWW-Authenticate", ""))
                s, body, _ = self.call(method, path, token=forged)
                self.assertEqual(s, 401, body)
                s, body, _ = self.call(method, path, token="watcher")
                if role == "operator":
                    self.assertEqual(s, 403, body)
                    self.assertEqual(body["error"]["code"], "forbidden")
                elif method == "GET":
                    self.assertEqual(s, 200, body)  # everything a viewer may read, it reads
                else:
                    self.assertNotIn(s, (401, 403), body)
        # Nothing a refused call asked for happened.
        self.assertEqual(self.call("GET", f"/v1/requests/{rid}")[1]["status"], "awaiting_approval")
        # The right role passes (the request is then approved by "ops").
        s, body, _ = self.call("POST", f"/v1/requests/{rid}/approve")
        self.assertEqual(s, 200, body)
        metrics = self.d.request("GET", "/metrics", listener="admin")[2].decode()
        failures = {m.group(1): float(m.group(2)) for m in
                    re.finditer(r'privacyd_admin_auth_failures_total\{reason="(\w+)"\} (\S+)', metrics)}
        n = len(ENDPOINTS)
        operator_only = sum(1 for e in ENDPOINTS if e[2] == "operator")
        self.assertEqual(failures, {"missing": n, "invalid": n, "forbidden": operator_only})
        self.assertFalse(any(forged in line for line in self.d.lines), "a presented token was logged")
        self.assertFalse(any(t in line for t in self.tokens.values() for line in self.d.lines))

    def test_health_and_metrics_need_no_token(self):
        for path in ("/healthz", "/readyz", "/metrics"):
            with self.subTest(path):
                self.assertEqual(self.d.request("GET", path, listener="admin")[0], 200)

    # --- what each action does ------------------------------------------------

    def test_approve_lets_the_request_run_and_says_who(self):
        rid = self.submit("request.deletion")
        shown = self.status_of(rid, "awaiting_approval")
        self.assertEqual(shown["reason"], "approval")
        self.assertEqual(shown["steps"][0]["id"], "review")
        s, body, _ = self.call("POST", f"/v1/requests/{rid}/approve")
        self.assertEqual(s, 200, body)
        done = self.status_of(rid, "completed")
        self.assertEqual([(st["id"], st["status"]) for st in done["steps"][:2]],
                         [("review", "succeeded"), ("erase", "succeeded")])
        again = self.call("POST", f"/v1/requests/{rid}/approve")
        self.assertEqual(again[0], 409)
        self.assertEqual(again[1]["error"]["code"], "wrong_status")
        self.assertIn(("request.approved", '{"by":"ops"}'), self.audit(rid))

    def test_reject_tells_the_person_the_operators_reason(self):
        rid = self.submit("request.deletion", subject="demo-002", email="alex.morgan@demo.example", locale="en")
        self.status_of(rid, "awaiting_approval")
        for bad, code in [({}, "missing_field"), ({"reason": "  "}, "invalid_field"),
                          ({"reason": "a\nb"}, "invalid_field"), ({"reason": "x" * 501}, "invalid_field"),
                          ({"reason": "ok", "extra": 1}, "unknown_field"), (b"[1,2]", "malformed_json")]:
            with self.subTest(bad=bad):
                s, body, _ = self.call("POST", f"/v1/requests/{rid}/reject", body=bad)
                self.assertEqual((s, body["error"]["code"]), (400, code))
        s, body, _ = self.call("POST", f"/v1/requests/{rid}/reject",
                               body={"reason": "We don't hold an account under that HUAWEI ID & region"})
        self.assertEqual(s, 200, body)
        self.assertEqual((body["status"], body["reason"]),
                         ("rejected", "We don't hold an account under that HUAWEI ID & region"))
        notice = wait_for(lambda: [n for n in self.call("GET", f"/v1/requests/{rid}")[1]["notices"]
                                   if n["status"] == "delivered"], what="the rejection mail")[0]
        self.assertEqual((notice["channel"], notice["template"]), ("subject", "subject-rejected"))
        with open(os.path.join(self.dir.name, "var", "notices", notice["id"] + ".eml"), encoding="utf-8") as f:
            mail = f.read()
        self.assertIn("To: <alex.morgan@demo.example>", mail)
        self.assertIn("Hello,\n\nWe could not carry out your privacy request (reference " + rid + ").\n\n"
                      "Our privacy team reviewed it and gave this reason: "
                      "We don't hold an account under that HUAWEI ID & region\n\nIf you think", mail,
                      "plain text, not HTML-escaped, and no blanks where nothing was given")
        self.assertIn(rid, mail)
        self.assertEqual(self.call("POST", f"/v1/requests/{rid}/reject", body={"reason": "again"})[0], 409)

    def test_a_rejection_by_a_step_tells_the_person_in_their_language(self):
        rid = self.submit("request.disassociation", subject="demo-004", partner="P-1001",
                          email="demo4@demo.example", locale="zh-CN")
        done = self.status_of(rid, "rejected")
        self.assertEqual(done["reason"], "not_associated")
        notice = wait_for(lambda: [n for n in self.call("GET", f"/v1/requests/{rid}")[1]["notices"]
                                   if n["status"] == "delivered"], what="the rejection mail")[0]
        with open(os.path.join(self.dir.name, "var", "notices", notice["id"] + ".eml"), encoding="utf-8") as f:
            mail = f.read()
        self.assertIn("没有关联", mail)
        self.assertNotIn("not_associated", mail)

    def test_retry_runs_a_failed_step_again_from_its_first_attempt(self):
        self.partners.script["check"] = [(400, {})]
        rid = self.submit("request.access", subject="demo-002")
        failed = self.status_of(rid, "failed")
        self.assertEqual(failed["reason"], "step check failed")
        self.assertEqual((failed["steps"][0]["status"], failed["steps"][0]["error"]),
                         ("failed", "webhook.call answered 400"))
        s, body, _ = self.call("POST", f"/v1/requests/{rid}/retry")
        self.assertEqual(s, 200, body)
        done = self.status_of(rid, "completed")
        self.assertEqual((done["steps"][0]["status"], done["steps"][0]["attempts"]), ("succeeded", 1))
        self.assertEqual(self.call("POST", f"/v1/requests/{rid}/retry")[0], 409)
        self.assertIn(("request.retried", '{"by":"ops","step":0}'), self.audit(rid))

    def test_a_failed_request_is_closed_by_rejecting_it_and_the_person_is_told(self):
        self.partners.script["check"] = [(400, {})]
        rid = self.submit("request.access", subject="demo-002", email="alex.morgan@demo.example", locale="en")
        self.status_of(rid, "failed")
        s, body, _ = self.call("POST", f"/v1/requests/{rid}/reject", body={"reason": "The partner no longer exists"})
        self.assertEqual(s, 200, body)
        self.assertEqual((body["status"], body["reason"]), ("rejected", "The partner no longer exists"))
        self.assertEqual((body["steps"][0]["status"], body["steps"][0]["error"]),
                         ("failed", "webhook.call answered 400"), "the failed step keeps its own error")
        notice = wait_for(lambda: [n for n in self.call("GET", f"/v1/requests/{rid}")[1]["notices"]
                                   if n["status"] == "delivered"], what="the rejection mail")[0]
        self.assertEqual(notice["template"], "subject-rejected")
        with open(os.path.join(self.dir.name, "var", "notices", notice["id"] + ".eml"), encoding="utf-8") as f:
            self.assertIn("The partner no longer exists", f.read())
        retried = self.call("POST", f"/v1/requests/{rid}/retry")
        self.assertEqual((retried[0], retried[1]["error"]["code"]), (409, "wrong_status"))
        again = self.call("POST", f"/v1/requests/{rid}/reject", body={"reason": "again"})
        self.assertEqual((again[0], again[1]["error"]["message"]),
                         (409, "the request is rejected, not awaiting_approval or failed"))
        events = [e for e, d in self.audit(rid) if e == "request.rejected"]
        self.assertEqual(events, ["request.rejected"])
        self.assertIn('"was":"failed"', [d for e, d in self.audit(rid) if e == "request.rejected"][0])

    def test_a_failed_request_that_already_acted_is_not_rejected(self):
        # Unlinked, then its partner notice died: "not carried out" would be untrue.
        self.partners.script["notice.disassociation"] = [(400, {})]
        rid = self.submit("request.disassociation", partner="P-1001", email="alex.morgan@demo.example")
        self.status_of(rid, "failed")
        s, body, _ = self.call("POST", f"/v1/requests/{rid}/reject", body={"reason": "The partner is gone"})
        self.assertEqual((s, body["error"]["code"]), (409, "acted_outside"), body)
        shown = self.call("GET", f"/v1/requests/{rid}")[1]
        self.assertEqual(shown["status"], "failed")
        self.assertEqual([n["template"] for n in shown["notices"] if n["template"] == "subject-rejected"], [])
        self.assertNotIn("request.rejected", [e for e, d in self.audit(rid)])

    def test_retry_of_a_request_failed_by_a_dead_notice_delivers_it_afresh(self):
        self.partners.script["notice.disassociation"] = [(400, {})]
        rid = self.submit("request.disassociation", partner="P-1001")
        self.status_of(rid, "failed")
        dead = self.call("GET", "/v1/notices?status=dead", token="watcher")[1]["notices"]
        self.assertEqual([n["request_id"] for n in dead], [rid])
        self.assertEqual(self.call("POST", f"/v1/requests/{rid}/retry")[0], 200)
        self.status_of(rid, "completed")
        ids = {i for (i, b, t) in self.partners.deliveries if b.get("request_id") == rid}
        self.assertEqual(ids, {dead[0]["id"]}, "the retried notice keeps its id")

    def test_a_dead_notice_retried_by_id_completes_its_request(self):
        self.partners.script["notice.disassociation"] = [(400, {})]
        rid = self.submit("request.disassociation", partner="P-1001")
        self.status_of(rid, "failed")
        nid = self.call("GET", "/v1/notices?status=dead")[1]["notices"][0]["id"]
        self.assertEqual(self.call("POST", "/v1/notices/ntc_0000000000000000000000000/retry")[0], 404)
        s, body, _ = self.call("POST", f"/v1/notices/{nid}/retry")
        self.assertEqual((s, body), (200, {"id": nid, "status": "pending"}))
        self.status_of(rid, "completed")
        self.assertEqual(self.call("POST", f"/v1/notices/{nid}/retry")[1]["error"]["code"], "wrong_status")

    def test_extend_once_within_the_jurisdiction(self):
        rid = self.submit("request.deletion")
        before = self.status_of(rid, "awaiting_approval")
        self.assertIn(before["days_left"], (29, 30))
        self.assertFalse(before["overdue"])
        s, body, _ = self.call("POST", f"/v1/requests/{rid}/extend", body={"reason": "complex", "days": 61})
        self.assertEqual((s, body["error"]["field"]), (400, "days"))
        self.assertIn("1 to 60", body["error"]["message"])
        s, body, _ = self.call("POST", f"/v1/requests/{rid}/extend", body={"days": 10})
        self.assertEqual((s, body["error"]["code"]), (400, "missing_field"))
        s, body, _ = self.call("POST", f"/v1/requests/{rid}/extend", body={"reason": "third-party records", "days": 10})
        self.assertEqual(s, 200, body)
        self.assertEqual(body["days_left"], before["days_left"] + 10)
        self.assertEqual(body["extended"]["reason"], "third-party records")
        again = self.call("POST", f"/v1/requests/{rid}/extend", body={"reason": "more"})
        self.assertEqual((again[0], again[1]["error"]["code"]), (409, "already_extended"))
        self.assertEqual(self.call("POST", "/v1/requests/req_NOSUCH/extend", body={"reason": "x"})[0], 404)

    def test_export_hands_out_the_package_and_audits_who_took_it(self):
        rid = self.submit("request.access", subject="demo-002")
        self.status_of(rid, "completed")
        s, package, headers = self.call("GET", f"/v1/requests/{rid}/export")
        self.assertEqual(s, 200)
        self.assertEqual(package["subject"], {"huawei_id": "demo-002"})
        self.assertEqual(headers.get("Cache-Control"), "no-store")
        r = run(["export", "--config", self.config, rid])
        self.assertEqual(json.loads(r.stdout), package)
        self.assertIn(("export.downloaded", '{"by":"ops"}'), self.audit(rid))
        other = self.submit("request.deletion")
        self.assertEqual(self.call("GET", f"/v1/requests/{other}/export")[0], 404)

    def test_show_lists_steps_attempts_errors_and_the_workflow(self):
        self.partners.fail_first["check"] = 1
        rid = self.submit("request.access", subject="demo-002")
        done = self.status_of(rid, "completed")
        self.assertEqual(done["workflow"], {"name": "access", "version": 2})
        self.assertEqual(done["type"], "access")
        first = done["steps"][0]
        self.assertEqual((first["id"], first["action"], first["attempts"]), ("check", "webhook.call", 2))
        self.assertIsNone(first["error"])
        self.assertTrue(all(k in done for k in ("deadline", "received_at", "days_left", "categories")))
        self.assertIsNone(done["days_left"], "a finished request has no deadline to count")
        text = json.dumps(done)
        self.assertNotIn("demo-002", text, "the subject's HUAWEI ID is not shown")

    def test_bad_ids_and_queries_are_refused_clearly(self):
        for path, status, code in [("/v1/requests?status=done", 400, "invalid_parameter"),
                                   ("/v1/requests?stauts=failed", 400, "unknown_parameter"),
                                   ("/v1/requests?limit=0", 400, "invalid_parameter"),
                                   ("/v1/requests?limit=501", 400, "invalid_parameter"),
                                   ("/v1/requests?cursor=../../etc", 400, "invalid_parameter"),
                                   ("/v1/requests?type=access&type=deletion", 400, "invalid_query"),
                                   ("/v1/requests/req_%27%20OR%201=1", 404, "not_found"),
                                   ("/v1/requests/req_01NOSUCH", 404, "not_found"),
                                   ("/v1/notices?status=lost", 400, "invalid_parameter")]:
            with self.subTest(path):
                s, body, _ = self.call("GET", path, token="watcher")
                self.assertEqual((s, body["error"]["code"]), (status, code))
        s, body, _ = self.call("POST", "/v1/reload", body=b"x" * 5000)
        self.assertEqual(s, 413)

    # --- audit, reload, metrics --------------------------------------------------

    def test_an_edited_audit_row_shows_in_verify(self):
        rid = self.submit("request.deletion")
        self.status_of(rid, "awaiting_approval")
        s, v, _ = self.call("GET", "/v1/audit/verify", token="watcher")
        self.assertEqual(s, 200)
        self.assertTrue(v["intact"], v)
        self.assertGreaterEqual(v["entries"], 3)
        seq = self.tamper_with_audit()
        s, v, _ = self.call("GET", "/v1/audit/verify", token="watcher")
        self.assertEqual((v["intact"], v["broken_seq"]), (False, seq), v)

    def test_reload_returns_every_problem_and_changes_nothing(self):
        workflows = os.path.join(self.dir.name, "workflows")
        with open(os.path.join(workflows, "access.yaml")) as f:
            good = f.read()
        with open(os.path.join(workflows, "access.yaml"), "w") as f:
            f.write(good.replace("action: systems.collect", "action: systems.colect").replace("version: 2", "version: 3"))
        s, body, _ = self.call("POST", "/v1/reload")
        self.assertEqual(s, 422, body)
        self.assertEqual(body["error"]["code"], "invalid_config")
        self.assertEqual(len(body["problems"]), 1, body)
        problem = body["problems"][0]
        self.assertTrue(problem["path"].endswith("access.yaml"))
        self.assertGreater(problem["line"], 0)
        self.assertIn("systems.collect", problem["message"])  # the suggestion
        # The old version still runs.
        rid = self.submit("request.access", subject="demo-002")
        self.assertEqual(self.status_of(rid, "completed")["workflow"]["version"], 2)
        # Tokens are part of a reload: a new one works once the file is good.
        with open(os.path.join(workflows, "access.yaml"), "w") as f:
            f.write(good.replace("version: 2", "version: 3"))
        fresh = write_admin_tokens(self.dir.name, self.config,
                                   roles=(("viewer", "watcher"), ("viewer", "auditor"), ("operator", "ops")))
        self.assertEqual(self.call("GET", "/v1/requests", token=fresh["auditor"])[0], 401)
        s, body, _ = self.call("POST", "/v1/reload")
        self.assertEqual((s, body), (200, {"reloaded": True}))
        self.assertEqual(self.call("GET", "/v1/requests")[0], 401, "the old operator token is gone")
        self.tokens = fresh
        self.assertEqual(self.call("GET", "/v1/requests", token="auditor")[0], 200)
        rid = self.submit("request.access", subject="demo-002")
        self.assertEqual(self.status_of(rid, "completed")["workflow"]["version"], 3)

    def test_metrics_pass_promtool_and_hold_no_personal_data(self):
        rid = self.submit("request.access", subject="demo-002", email="alex.morgan@demo.example")
        self.status_of(rid, "completed")
        self.d.webhook({"type": "request.access"}, self.secret)  # a 400: counted by reason
        self.d.request("GET", f"/v1/requests/{rid}", listener="admin")  # a 401: its route, not its path
        s, headers, raw = self.d.request("GET", "/metrics", listener="admin")
        text = raw.decode()
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True,
                               timeout=60)
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)
        for series, at_least in [('privacyd_requests_received_total{type="access"}', 1),
                                 ('privacyd_requests_finished_total{type="access",status="completed"}', 1),
                                 ('privacyd_requests{type="access",status="completed"}', 1),
                                 ('privacyd_webhook_rejections_total{reason="missing_field"}', 1),
                                 ('privacyd_notice_attempts_total{channel="subject",outcome="delivered"}', 1),
                                 ('privacyd_http_requests_total{listener="admin",route="/v1/requests/{id}",status="401"}', 1),
                                 ('privacyd_request_duration_seconds_count{type="access"}', 1),
                                 ('privacyd_requests_overdue{type="access"}', 0),
                                 ('process_resident_memory_bytes', 1)]:
            with self.subTest(series):
                m = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
                self.assertIsNotNone(m, series)
                self.assertGreaterEqual(float(m.group(1)), at_least)
        for private in (rid, "demo-002", "alex.morgan", "@demo.example"):
            self.assertNotIn(private, text)

    # --- the command line ------------------------------------------------------

    def test_the_command_line_lists_shows_and_acts(self):
        rid = self.submit("request.deletion")
        self.status_of(rid, "awaiting_approval")
        token_file = os.path.join(self.dir.name, "ops.token")
        with open(token_file, "w") as f:
            f.write(self.tokens["ops"] + "\n")
        url = f"http://127.0.0.1:{self.d.port('admin')}"
        listed = run(["requests", "list", "--url", url, "--token-file", token_file, "--status", "awaiting_approval"])
        self.assertEqual(listed.returncode, 0, listed.stderr)
        self.assertIn("REQUEST", listed.stdout)
        self.assertIn(rid, listed.stdout)
        # The token may come from the environment.
        env = dict(os.environ, PRIVACYD_TOKEN=self.tokens["ops"])
        shown = run(["requests", "show", rid, "--url", url, "--json"], env=env)
        self.assertEqual(shown.returncode, 0, shown.stderr)
        self.assertEqual(json.loads(shown.stdout)["status"], "awaiting_approval")
        extended = run(["requests", "extend", rid, "--url", url, "--token-file", token_file, "--reason", "backlog",
                        "--days", "5"])
        self.assertEqual(extended.returncode, 0, extended.stderr)
        self.assertIn("extended", extended.stdout)
        viewer = dict(os.environ, PRIVACYD_TOKEN=self.tokens["watcher"])
        refused = run(["requests", "approve", rid, "--url", url], env=viewer)
        self.assertEqual(refused.returncode, 1)
        self.assertIn("403", refused.stderr)
        self.assertIn("operator role", refused.stderr)
        bare = {k: v for k, v in os.environ.items() if k != "PRIVACYD_TOKEN"}
        missing = run(["requests", "list", "--url", url], env=bare)
        self.assertEqual(missing.returncode, 2)
        self.assertIn("PRIVACYD_TOKEN", missing.stderr)
        approved = run(["requests", "approve", rid, "--url", url, "--token-file", token_file])
        self.assertEqual(approved.returncode, 0, approved.stderr)
        self.status_of(rid, "completed")
        notices = run(["notices", "list", "--url", url, "--token-file", token_file, "--json"])
        self.assertEqual(notices.returncode, 0, notices.stderr)
        self.assertTrue(all(n["status"] in ("pending", "delivered") for n in json.loads(notices.stdout)["notices"]))
        unreachable = run(["requests", "list", "--url", "http://127.0.0.1:1", "--token-file", token_file])
        self.assertEqual(unreachable.returncode, 2)
        self.assertIn("cannot reach the admin API", unreachable.stderr)


class AdminOnSqlite(Admin, unittest.TestCase):
    def db_path(self):
        return os.path.join(self.dir.name, "var", "privacyd.db")

    def audit(self, rid):
        conn = sqlite3.connect(self.db_path(), timeout=10)
        try:
            return conn.execute("SELECT event, detail FROM audit_log WHERE request_id = ? ORDER BY seq",
                                (rid,)).fetchall()
        finally:
            conn.close()

    def tamper_with_audit(self):
        conn = sqlite3.connect(self.db_path(), timeout=10)
        try:
            conn.execute("DROP TRIGGER audit_log_no_update")
            seq = conn.execute("SELECT MIN(seq) FROM audit_log WHERE event = 'request.started'").fetchone()[0]
            conn.execute("UPDATE audit_log SET detail = '{}' WHERE seq = ?", (seq,))
            conn.commit()
            return seq
        finally:
            conn.close()


class AdminOnPostgres(OnPostgres, Admin, unittest.TestCase):
    def database_url(self):
        return self.database()

    def audit(self, rid):
        out = self.query(f"SELECT event || '|' || detail FROM audit_log WHERE request_id = '{rid}' ORDER BY seq")
        return [tuple(line.split("|", 1)) for line in (out or "").splitlines()]

    def tamper_with_audit(self):
        self.query("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
        seq = int(self.query("SELECT MIN(seq) FROM audit_log WHERE event = 'request.started'"))
        self.query(f"UPDATE audit_log SET detail = '{{}}' WHERE seq = {seq}")
        return seq


class Paging(OnPostgres, unittest.TestCase):
    """1,000 requests (no workflows, so they stay received) paged through."""

    def test_every_request_once_newest_first(self):
        folder = tempfile.TemporaryDirectory()
        self.addCleanup(folder.cleanup)
        empty = os.path.join(folder.name, "no-workflows")
        os.makedirs(empty)
        secret = new_secret()
        config = write_config(folder.name, database=self.database(), workflows=empty, log_level="info")
        write_secrets(folder.name, [secret])
        tokens = write_admin_tokens(folder.name, config)
        d = Daemon(config)
        self.addCleanup(d.kill)
        d.wait_ready()
        types = ["request.access", "request.deletion"]
        sent = []
        lock = threading.Lock()

        def send(worker):
            for i in range(worker, 1000, 8):
                status, resp = d.webhook({"type": types[i % 2], "occurred_at": "2026-11-26T05:00:00Z",
                                          "subject": {"huawei_id": f"pager-{i}"}}, secret)
                assert status == 202, resp
                with lock:
                    sent.append(resp["request_id"])
        threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(len(sent), 1000)

        def page_through(query, limit):
            seen, cursor, pages = [], None, 0
            while True:
                path = f"/v1/requests?limit={limit}{query}" + (f"&cursor={cursor}" if cursor else "")
                s, _, raw = d.request("GET", path, headers={"Authorization": "Bearer " + tokens["watcher"]},
                                      listener="admin")
                self.assertEqual(s, 200, raw)
                page = json.loads(raw)
                self.assertLessEqual(len(page["requests"]), limit)
                seen += [r["id"] for r in page["requests"]]
                pages += 1
                cursor = page["next_cursor"]
                if cursor is None:
                    return seen, pages
        everything, pages = page_through("", 100)
        self.assertEqual(pages, 10)
        self.assertEqual(sorted(everything), sorted(sent))
        self.assertEqual(everything, sorted(everything, reverse=True), "newest first")
        access, _ = page_through("&type=access&status=received", 77)
        self.assertEqual(len(access), 500)
        self.assertEqual(len(set(access)), 500)


class Tls(unittest.TestCase):
    """Both listeners over HTTPS (SPEC §10), with a certificate from a CA
    made in the test."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.ca, (cert, key) = make_certificates(self.dir.name)
        self.secret = new_secret()
        self.config = write_config(self.dir.name, extra=f"tls: {{ certificate_file: {cert}, key_file: {key} }}\n")
        write_secrets(self.dir.name, [self.secret])
        self.tokens = write_admin_tokens(self.dir.name, self.config)
        with open(self.config) as f:
            text = f.read()
        with open(self.config, "w") as f:
            f.write(text.replace("  tokens_file: var/keys/admin-tokens\n",
                                 f"  tokens_file: var/keys/admin-tokens\n"
                                 f"  tls: {{ certificate_file: {cert}, key_file: {key} }}\n"))

    def https(self, port, method, path, body=None, headers=None):
        context = ssl.create_default_context(cafile=self.ca)
        conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, resp.read()
        finally:
            conn.close()

    def test_both_listeners_speak_https_only(self):
        d = Daemon(self.config)
        self.addCleanup(d.kill)
        d.wait_ready()
        self.assertIn("tls=true", d.wait_log(r"listening listener=public"))
        public, admin = d.port("public"), d.port("admin")
        self.assertEqual(self.https(public, "GET", "/healthz")[0], 200)
        body = json.dumps({"type": "request.access", "occurred_at": "2026-11-26T05:00:00Z",
                           "subject": {"huawei_id": "tls-001"}}).encode()
        msg_id, ts = "msg_tls", str(int(time.time()))
        status, raw = self.https(public, "POST", "/v1/webhooks/partner-center", body,
                                 {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": ts,
                                  "webhook-signature": sign(self.secret, msg_id, ts, body)})
        self.assertEqual(status, 202, raw)
        rid = json.loads(raw)["request_id"]
        status, raw = self.https(admin, "GET", f"/v1/requests/{rid}",
                                 headers={"Authorization": "Bearer " + self.tokens["watcher"]})
        self.assertEqual((status, json.loads(raw)["id"]), (200, rid))
        # Plain HTTP on a TLS listener is not served.
        with self.assertRaises((http.client.HTTPException, ConnectionError, OSError)):
            d.request("GET", "/healthz", listener="admin", timeout=5)
        # The operator's command line verifies the certificate like any client.
        token_file = os.path.join(self.dir.name, "watcher.token")
        with open(token_file, "w") as f:
            f.write(self.tokens["watcher"])
        args = ["requests", "show", rid, "--url", f"https://127.0.0.1:{admin}", "--token-file", token_file, "--json"]
        trusted = run(args, env=dict(os.environ, SSL_CERT_FILE=self.ca))
        self.assertEqual(trusted.returncode, 0, trusted.stderr)
        self.assertEqual(json.loads(trusted.stdout)["id"], rid)
        untrusted = run(args, env=dict(os.environ, SSL_CERT_FILE=os.path.join(self.dir.name, "none.pem")))
        self.assertEqual(untrusted.returncode, 2)
        self.assertIn("TLS", untrusted.stderr)

    def test_a_missing_certificate_stops_start_up_naming_the_file(self):
        with open(self.config) as f:
            text = f.read()
        with open(self.config, "w") as f:
            f.write(text.replace("server.pem", "missing.pem", 1))
        d = Daemon(self.config)
        self.addCleanup(d.kill)
        self.assertEqual(d.wait_exit(), 1)
        self.assertTrue(any("missing.pem" in line and "certificate" in line for line in d.lines), d.lines[-5:])
