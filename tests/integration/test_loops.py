"""Closing the loops (SPEC §13) through the real binary: the Partner Center
hears back through signed callbacks, the person downloads their package
through the link in their mail, and `privacyd check` refuses a partner no
notice can reach. Acknowledgements, email partners and reminders are in
test_acks.py, which shares the scaffolding defined here.

Each class shares one daemon between its tests (each test uses its own
subjects), on SQLite and again on PostgreSQL; the PostgreSQL variants share
one throwaway cluster per module."""
import base64
import email
import email.policy
import http.client
import json
import os
import re
import shutil
import sqlite3
import tempfile
import threading
import time
import unittest
from datetime import datetime, timezone

from harness import (REPO, Daemon, OnPostgres, PgCluster, Receiver, demo_setup, new_secret, run, sign, use_policies,
                     wait_for, write_admin_tokens, write_config, write_secrets)

ENGINE = "engine: { lease: 2s, poll: 100ms }\n"
FAST_RETRIES = "  timeout: 5s\n  retry_schedule: [0s, 200ms, 200ms, 200ms, 200ms]\n"
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]
EN_DATE = re.compile(r"\b\d{1,2} (" + "|".join(MONTHS) + r") \d{4}\b")
ZH_DATE = re.compile(r"\d{4}年\d{1,2}月\d{1,2}日")
RAW_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d")
P1001_CATEGORIES = ["account_name", "account_id", "personal_name", "phone_number", "email_address"]
# The demo subjects' personal data (privacyd demo), sent again in webhooks
# below: none of it may reach the Partner Center's callbacks.
DEMO = {
    "demo-001": {"account_name": "linwei", "name": "Lin Wei", "email": "lin.wei@demo.example",
                 "phone": "+86 138 0000 0001", "locale": "zh-CN"},
    "demo-002": {"account_name": "amorgan", "name": "Alex Morgan", "email": "alex.morgan@demo.example",
                 "phone": "+44 20 7946 0002", "locale": "en"},
    "demo-003": {"account_name": "sokafor", "name": "Sam Okafor", "email": "sam.okafor@demo.example",
                 "phone": "+234 1 000 0003", "locale": "en"},
    "demo-004": {"account_name": "mrossi", "name": "Maria Rossi", "email": "maria.rossi@demo.example",
                 "phone": "+39 06 0000 0004", "locale": "en"},
    "demo-005": {"account_name": "ksato", "name": "Kenji Sato", "email": "kenji.sato@demo.example",
                 "phone": "+81 3 0000 0005", "locale": "en"},
}
PERSONAL = [v for subject, fields in DEMO.items() for v in [subject, *fields.values()] if v not in ("en", "zh-CN")]


def instant(text):
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def day_patterns(text):
    """The day of an RFC 3339 instant as each locale writes it (§13.4), in
    UTC and in local time (the spec does not say which zone), with or
    without a leading zero."""
    moment = instant(text)
    days = {moment.astimezone(timezone.utc).date(), moment.astimezone().date()}
    en = [re.compile(rf"\b0?{d.day} {MONTHS[d.month - 1]} {d.year}\b") for d in days]
    zh = [re.compile(rf"{d.year}年0?{d.month}月0?{d.day}日") for d in days]
    return en, zh


def fetch(port, method, path, body=None, headers=None, source=None):
    """One HTTP exchange, from `source` (a loopback address) when given;
    headers come back case-insensitive."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, resp.headers, resp.read()
    finally:
        conn.close()


def guess():
    """A token as privacyd makes them (32 random bytes, base64url) that it never made."""
    return base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")


def parse_mail(raw):
    return email.message_from_bytes(raw, policy=email.policy.default)


def plain_text(msg):
    for part in msg.walk():
        if part.get_content_type() == "text/plain" and not part.is_attachment():
            return part.get_content()
    raise AssertionError("the mail has no text/plain part")


def message_id_local(msg):
    value = (msg["Message-ID"] or "").strip()
    return value[1:-1].split("@")[0] if value.startswith("<") and value.endswith(">") else None


def edit_partner(policies, partner, notice=None, drop_notice=False, add=""):
    """Edits one partner of policies/partners.yaml: its `notice:` line
    replaced by `notice: NOTICE` (or removed), `add` lines appended to its
    entry. Returns the 1-based line of its `- id:` and of its last line."""
    path = os.path.join(policies, "partners.yaml")
    with open(path) as f:
        lines = f.read().split("\n")
    start = next(i for i, line in enumerate(lines) if re.match(rf"^\s*- id: {partner}\s*$", line))
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"^\s*- id:|^\S", lines[i])), len(lines))
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1
    indent = " " * (lines[start].index("-") + 2)
    block = lines[start:end]
    at = next(i for i, line in enumerate(block) if line.strip().startswith("notice:"))
    if drop_notice:
        del block[at]
    elif notice is not None:
        block[at] = f"{indent}notice: {notice}"
    block += [indent + line for line in add.splitlines() if line]
    lines[start:end] = block
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return start + 1, start + len(block)


def approval_workflows(folder):
    """The shipped workflows, with an approval step before deletion erases
    (so a deletion stays open until an operator approves it)."""
    workflows = os.path.join(folder, "workflows")
    shutil.copytree(os.path.join(REPO, "workflows"), workflows)
    path = os.path.join(workflows, "deletion.yaml")
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text.replace("steps:\n", "steps:\n  - id: review\n    action: approval\n", 1))
    return workflows


_cluster = None


def shared_cluster():
    global _cluster
    if _cluster is None:
        _cluster = PgCluster()
    return _cluster


def destroy_shared_cluster():
    global _cluster
    if _cluster is not None:
        _cluster.destroy()
        _cluster = None


def tearDownModule():
    destroy_shared_cluster()


class Scenario:
    """One privacyd for the whole test class, on the demo setup, with admin
    tokens ("ops" operator, "watcher" viewer). Subclasses fill in
    `prepare` (edit the copied policies, start servers, set `notices`,
    `extra` and `workflows`) before the config is written."""

    notices = "  file_dir: var/notices\n" + FAST_RETRIES
    extra = ""
    workflows = None

    @classmethod
    def database_url(cls):
        return None

    @classmethod
    def prepare(cls):
        pass

    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory()
        cls.addClassCleanup(cls.dir.cleanup)
        cls.folder = cls.dir.name
        cls.partner_secret = new_secret()
        cls.partners = Receiver(cls.partner_secret)
        cls.addClassCleanup(cls.partners.close)
        cls.policies = demo_setup(cls.folder, cls.partners.url, cls.partner_secret)
        cls.prepare()
        cls.secret = new_secret()
        cls.config = write_config(cls.folder, database=cls.database_url(), extra=ENGINE + cls.extra,
                                  workflows=cls.workflows)
        use_policies(cls.config, cls.policies, cls.notices)
        write_secrets(cls.folder, [cls.secret])
        cls.tokens = write_admin_tokens(cls.folder, cls.config)
        r = run(["demo", "--config", cls.config])
        if r.returncode != 0:
            raise AssertionError("privacyd demo failed:\n" + r.stdout + r.stderr)
        cls.d = Daemon(cls.config)
        cls.addClassCleanup(cls.d.kill)
        cls.d.wait_ready()
        # A config error that mentions e.g. "subject-access-ready" also
        # matches wait_ready: make sure both listeners are really up.
        cls.d.wait_log(r"listening listener=public")
        cls.d.wait_log(r"listening listener=admin")

    # --- the database ---------------------------------------------------------

    def count(self, sql):
        conn = sqlite3.connect(os.path.join(self.folder, "var", "privacyd.db"), timeout=10)
        try:
            return int(conn.execute(sql).fetchone()[0])
        finally:
            conn.close()

    def dump(self):
        data = b""
        for name in sorted(os.listdir(os.path.join(self.folder, "var"))):
            if name.startswith("privacyd.db"):
                with open(os.path.join(self.folder, "var", name), "rb") as f:
                    data += f.read()
        return data

    # --- the webhooks ---------------------------------------------------------

    def submit(self, type_, subject, partner=None, msg_id=None, contact=False, **fields):
        """A signed Partner Center webhook; `contact` sends the subject's
        demo contact fields too. Returns the request id."""
        body = {"type": type_, "occurred_at": "2026-11-26T05:00:00Z",
                "subject": {"huawei_id": subject, **(DEMO[subject] if contact else {}), **fields}}
        if partner:
            body["partner"] = {"id": partner}
        status, resp = self.d.webhook(body, self.secret, msg_id=msg_id)
        self.assertEqual(status, 202, resp)
        return resp["request_id"]

    def post_signed(self, path, body, secret, msg_id=None):
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        msg_id = msg_id or "msg_" + os.urandom(8).hex()
        ts = int(time.time())
        status, _, data = self.d.request("POST", path, body=raw, headers={
            "Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(ts),
            "webhook-signature": sign(secret, msg_id, ts, raw)})
        try:
            return status, json.loads(data) if data else None
        except ValueError:
            return status, data

    # --- the admin API --------------------------------------------------------

    def admin(self, method, path, token="ops", body=None):
        headers = {"Authorization": "Bearer " + self.tokens[token]}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        status, _, raw = self.d.request(method, path, body=data, headers=headers, listener="admin")
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw

    def view(self, rid):
        status, body = self.admin("GET", f"/v1/requests/{rid}", token="watcher")
        self.assertEqual(status, 200, body)
        return body

    def wait_status(self, rid, wanted, timeout=60):
        return wait_for(lambda: (lambda v: v if v["status"] == wanted else None)(self.view(rid)),
                        timeout=timeout, what=f"{rid} to be {wanted}")

    def notices_of(self, rid, channel=None):
        return [n for n in self.view(rid)["notices"] if channel is None or n["channel"] == channel]

    def notice(self, nid, rid):
        found = [n for n in self.notices_of(rid) if n["id"] == nid]
        self.assertEqual(len(found), 1, f"{nid} in the notices of {rid}")
        return found[0]

    def listed(self, nid, query=""):
        """Notice `nid` as GET /v1/notices lists it."""
        status, page = self.admin("GET", f"/v1/notices?limit=500{query}", token="watcher")
        self.assertEqual(status, 200, page)
        found = [n for n in page["notices"] if n["id"] == nid]
        self.assertEqual(len(found), 1, f"{nid} in GET /v1/notices{query}")
        return found[0]

    def wait_delivered(self, rid, channel, timeout=30):
        return wait_for(lambda: [n for n in self.notices_of(rid, channel) if n["status"] == "delivered"],
                        timeout=timeout, what=f"a delivered {channel} notice for {rid}")

    def subject_mail(self, rid):
        """The person's mail for `rid`, from notices.file_dir."""
        nid = self.wait_delivered(rid, "subject")[0]["id"]
        with open(os.path.join(self.folder, "var", "notices", nid + ".eml"), "rb") as f:
            return parse_mail(f.read())

    def metric(self, series):
        text = self.d.request("GET", "/metrics", listener="admin")[2].decode()
        m = re.search("^" + re.escape(series) + r" (\S+)$", text, re.M)
        return float(m.group(1)) if m else None

    def assert_not_logged(self, secret):
        self.assertFalse(any(secret in line for line in self.d.lines), "a secret was logged")


class OnSharedPostgres(OnPostgres):
    """OnPostgres for a class that shares one daemon: one database for the
    class, in the cluster the module shares."""

    @classmethod
    def setUpClass(cls):
        cls.pg = shared_cluster()
        cls.dbname = cls.__name__.lower()
        cls.pg.psql(f"CREATE DATABASE {cls.dbname}")
        super(OnPostgres, cls).setUpClass()

    @classmethod
    def tearDownClass(cls):
        super(OnPostgres, cls).tearDownClass()  # the cluster outlives the class

    @classmethod
    def database_url(cls):
        return cls.pg.dsn(cls.dbname)

    def dump(self):
        return self.pg.dump(self.dbname)


class CallbackReceiver:
    """The Partner Center's callback endpoint on loopback. Every attempt must
    carry a valid Standard Webhooks signature under the callback secret
    (else 401, counted in `refused`); every signed attempt is kept as
    (webhook-id, raw body, body, status answered). `fail_first[W]` answers
    503 to the first W attempts of callbacks about the request created by
    the intake delivery W."""

    def __init__(self, secret):
        import http.server
        import socketserver
        self.secret = secret
        self.attempts = []
        self.refused = []
        self.fail_first = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status):
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                msg_id = self.headers.get("webhook-id", "")
                ts = self.headers.get("webhook-timestamp", "")
                problem = None
                if self.path != "/callbacks":
                    problem = "path"
                elif not self.headers.get("Content-Type", "").startswith("application/json"):
                    problem = "content type"
                elif not ts.isdigit() or abs(time.time() - int(ts)) > 300:
                    problem = "timestamp"
                elif sign(receiver.secret, msg_id, ts, raw) not in self.headers.get("webhook-signature", "").split(" "):
                    problem = "signature"
                if problem:
                    with receiver.lock:
                        receiver.refused.append(problem)
                    return self.answer(401)
                body = json.loads(raw)
                with receiver.lock:
                    failing = receiver.fail_first.get(body.get("webhook_id"), 0)
                    if failing:
                        receiver.fail_first[body.get("webhook_id")] = failing - 1
                    status = 503 if failing else 200
                    receiver.attempts.append((msg_id, raw, body, status))
                self.answer(status)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/callbacks"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def about(self, webhook_id):
        with self.lock:
            return [a for a in self.attempts if a[2].get("webhook_id") == webhook_id]

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Callbacks(Scenario):
    """§13.1: every finished, rejected or extended request is called back to
    the Partner Center. Packages live 2s here, for the expiry test."""

    @classmethod
    def prepare(cls):
        cls.callback_secret = new_secret()
        with open(os.path.join(cls.folder, "var", "keys", "partner-center-callback.secret"), "w") as f:
            f.write(cls.callback_secret + "\n")
        cls.center = CallbackReceiver(cls.callback_secret)
        cls.addClassCleanup(cls.center.close)
        cls.workflows = approval_workflows(cls.folder)
        cls.extra = (f"partner_center:\n  callback_url: {cls.center.url}\n"
                     f"  secret_file: var/keys/partner-center-callback.secret\n"
                     f"access:\n  package_ttl: 2s\n")

    def tearDown(self):
        with self.center.lock:
            self.assertEqual(self.center.refused, [], "every callback verifies under the callback secret")

    def request(self, type_, subject, partner=None):
        """A request with a webhook id of our own (callbacks name it)."""
        msg_id = "msg_" + os.urandom(8).hex()
        return self.submit(type_, subject, partner, msg_id=msg_id, contact=True), msg_id

    def callback(self, webhook_id, type_, timeout=30):
        """The first accepted callback of `type_` about webhook_id's request,
        checked for what every callback must be."""
        def accepted():
            return [a for a in self.center.about(webhook_id) if a[2].get("type") == type_ and a[3] == 200]
        msg_id, raw, body, _ = wait_for(accepted, timeout=timeout, what=f"a {type_} callback")[0]
        for private in PERSONAL:
            self.assertNotIn(private.encode(), raw, "personal data in a callback")
        self.assertEqual(body["callback_id"], msg_id, "the callback id is the webhook-id")
        self.assertTrue(msg_id.startswith("ntc_"), msg_id)
        self.assertEqual(body["webhook_id"], webhook_id)
        self.assertRegex(body["deadline"], RFC3339)
        for key in ("type", "callback_id", "request_id", "webhook_id", "request_type", "status", "reason",
                    "deadline", "finished_at", "package"):
            self.assertIn(key, body)
        return body

    def test_an_access_request_is_called_back_with_its_package_link(self):
        rid, hook = self.request("request.access", "demo-002")
        body = self.callback(hook, "request.completed")
        view = self.wait_status(rid, "completed")
        self.assertEqual((body["request_id"], body["request_type"], body["status"], body["reason"]),
                         (rid, view["type"], "completed", None))
        self.assertRegex(body["finished_at"], RFC3339)
        package = body["package"]
        self.assertEqual(set(package), {"url", "expires_at"})
        self.assertRegex(package["url"], rf"^http://127\.0\.0\.1:{self.d.port('public')}/v1/packages/[A-Za-z0-9_-]+=*$")
        self.assertRegex(package["expires_at"], RFC3339)
        # package_ttl is 2s here: it expires no later than 2s after it was made.
        self.assertLessEqual((instant(package["expires_at"]) - instant(body["finished_at"])).total_seconds(), 3)
        # The person's mail carries the same link.
        text = plain_text(self.subject_mail(rid))
        self.assertIn(package["url"], [line.strip() for line in text.splitlines()])
        # One callback per event, whatever else happens.
        self.assertEqual(len({a[0] for a in self.center.about(hook)}), 1)

    def test_an_expired_package_is_refused_and_erased(self):
        rid, hook = self.request("request.access", "demo-005")
        package = self.callback(hook, "request.completed")["package"]
        path = package["url"].split(str(self.d.port("public")), 1)[1]
        # Wait for the clock, not by downloading: every 200 would count.
        expires = instant(package["expires_at"])
        wait_for(lambda: (datetime.now(timezone.utc) - expires).total_seconds() > 0.2, timeout=30,
                 what="the package's expiry to pass")
        self.assertEqual(self.d.request("GET", path)[0], 410)
        erased = f"SELECT COUNT(*) FROM exports WHERE request_id = '{rid}' AND package_enc = '' AND erased_at IS NOT NULL"
        wait_for(lambda: self.count(erased) == 1, timeout=30, what="the sweeper to erase the expired package")
        self.assertEqual(self.d.request("GET", path)[0], 410, "still gone once erased")
        self.assertEqual(self.count(f"SELECT COUNT(*) FROM audit_log WHERE event = 'package.downloaded'"
                                    f" AND request_id = '{rid}'"), 0)

    def test_a_disassociation_is_called_back_without_a_package(self):
        rid, hook = self.request("request.disassociation", "demo-001", "P-1001")
        body = self.callback(hook, "request.completed")
        self.assertEqual((body["request_id"], body["status"], body["package"]), (rid, "completed", None))
        self.assertEqual(body["request_type"], self.view(rid)["type"])

    def test_a_subject_never_associated_is_called_back_rejected(self):
        rid, hook = self.request("request.disassociation", "demo-004", "P-1001")
        body = self.callback(hook, "request.rejected")
        self.assertEqual((body["request_id"], body["status"], body["reason"], body["package"]),
                         (rid, "rejected", "not_associated", None))
        self.assertRegex(body["finished_at"], RFC3339)
        self.assertEqual(self.center.about(hook)[0][2]["type"], "request.rejected", "no completed callback first")

    def test_an_extended_deadline_is_called_back(self):
        rid, hook = self.request("request.deletion", "demo-003")
        self.wait_status(rid, "awaiting_approval")
        self.assertEqual(self.center.about(hook), [], "nothing to call back while it waits")
        status, extended = self.admin("POST", f"/v1/requests/{rid}/extend",
                                      body={"reason": "third-party records", "days": 10})
        self.assertEqual(status, 200, extended)
        body = self.callback(hook, "request.extended")
        self.assertEqual((body["request_id"], body["status"], body["finished_at"], body["package"]),
                         (rid, "awaiting_approval", None, None))
        self.assertLess(abs((instant(body["deadline"]) - instant(extended["deadline"])).total_seconds()), 1)
        self.assertEqual(self.admin("POST", f"/v1/requests/{rid}/approve")[0], 200)
        done = self.callback(hook, "request.completed")
        self.assertNotEqual(done["callback_id"], body["callback_id"], "each callback has an id of its own")
        self.assertEqual((done["status"], done["request_type"]), ("completed", self.view(rid)["type"]))

    def test_a_failing_partner_center_gets_the_same_callback_again(self):
        hook = "msg_" + os.urandom(8).hex()
        self.center.fail_first[hook] = 2
        rid = self.submit("request.disassociation", "demo-005", "P-1001", msg_id=hook, contact=True)
        body = self.callback(hook, "request.completed")
        attempts = self.center.about(hook)
        self.assertEqual([a[3] for a in attempts], [503, 503, 200])
        self.assertEqual({a[0] for a in attempts}, {body["callback_id"]}, "every attempt has the same webhook-id")
        self.assertEqual(len({a[1] for a in attempts}), 1, "every attempt has the same body")
        shown = wait_for(lambda: [n for n in self.notices_of(rid, "partner_center") if n["status"] == "delivered"],
                         what="the callback delivered in the notices")
        self.assertEqual([(n["id"], n["recipient"], n["attempts"]) for n in shown],
                         [(body["callback_id"], "partner-center", 3)])
        listed = self.listed(body["callback_id"])
        self.assertEqual((listed["channel"], listed["status"]), ("partner_center", "delivered"))
        self.assertEqual(len(self.center.about(hook)), 3, "nothing sent after the 2xx")


class CallbacksOnSqlite(Callbacks, unittest.TestCase):
    pass


class CallbacksOnPostgres(OnSharedPostgres, Callbacks, unittest.TestCase):
    pass


class Packages(Scenario):
    """§13.2: the person's download link, at most twice here."""

    extra = "access:\n  max_downloads: 2\n"

    def link(self, subject):
        rid = self.submit("request.access", subject)
        self.wait_status(rid, "completed")
        text = plain_text(self.subject_mail(rid))
        prefix = f"http://127.0.0.1:{self.d.port('public')}"
        m = re.search(rf"^{re.escape(prefix)}(/v1/packages/([A-Za-z0-9_-]+=*))\r?$", text, re.M)
        self.assertIsNotNone(m, "a download link on a line of its own")
        return rid, m.group(1), m.group(2), text

    def downloads(self, rid):
        return self.count(f"SELECT COUNT(*) FROM audit_log WHERE event = 'package.downloaded' AND request_id = '{rid}'")

    def test_the_link_in_the_mail_downloads_the_package(self):
        rid, path, token, text = self.link("demo-002")
        self.assertEqual(len(token.rstrip("=")), 43, "32 random bytes, base64url")
        # The mail says until when, in the reader's words (en for demo-002): 7 days by default.
        m = EN_DATE.search(text)
        self.assertIsNotNone(m, "the expiry date")
        days = (datetime.strptime(m.group(0), "%d %B %Y").date() - datetime.now().date()).days
        self.assertIn(days, (6, 7, 8))
        status, headers, raw = fetch(self.d.port(), "GET", path)
        self.assertEqual(status, 200, raw[:200])
        self.assertTrue(headers.get("Content-Type", "").startswith("application/json"), headers.get("Content-Type"))
        self.assertEqual(headers["Content-Disposition"], f'attachment; filename="privacy-package-{rid}.json"')
        self.assertEqual(headers["Cache-Control"], "no-store")
        status, exported = self.admin("GET", f"/v1/requests/{rid}/export")
        self.assertEqual(status, 200, exported)
        self.assertEqual(json.loads(raw), exported)
        self.assertEqual(json.loads(raw)["subject"], {"huawei_id": "demo-002"})
        self.assertEqual(self.downloads(rid), 1)
        # Only the token's hash is kept, and no log line holds the token.
        self.assertNotIn(token.encode(), self.dump())
        self.assert_not_logged(token)

    def test_the_third_download_is_gone(self):
        rid, path, token, _ = self.link("demo-003")
        self.assertEqual([fetch(self.d.port(), "GET", path)[0] for _ in range(3)], [200, 200, 410])
        self.assertEqual(self.downloads(rid), 2)
        self.assertEqual(fetch(self.d.port(), "GET", path)[0], 410)

    def test_an_unknown_token_is_not_found(self):
        status, _, raw = fetch(self.d.port(), "GET", f"/v1/packages/{guess()}")
        self.assertEqual(status, 404, raw)

    def test_a_client_that_keeps_guessing_is_slowed(self):
        rid, path, token, _ = self.link("demo-005")
        guesser = "127.0.0.2"  # loopback too; the limit is per client address
        statuses = [fetch(self.d.port(), "GET", f"/v1/packages/{guess()}", source=guesser)[0]
                    for _ in range(11)]
        self.assertEqual(statuses, [404] * 10 + [429])
        status, headers, _ = fetch(self.d.port(), "GET", path, source=guesser)
        self.assertEqual(status, 429, "even a real token, from a client that kept guessing")
        self.assertIsNotNone(headers.get("Retry-After"))
        self.assertEqual(self.downloads(rid), 0)
        # Another client is served as before.
        self.assertEqual(fetch(self.d.port(), "GET", path)[0], 200)
        self.assertEqual(self.downloads(rid), 1)


class PackagesOnSqlite(Packages, unittest.TestCase):
    pass


class PackagesOnPostgres(OnSharedPostgres, Packages, unittest.TestCase):
    pass


class CheckFindsPartnersNoNoticeReaches(unittest.TestCase):
    """§13.3: a partner without a webhook or an email is a policy error at
    its position; `check` runs no database, so there is nothing to vary."""

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.policies = demo_setup(self.dir.name, "http://127.0.0.1:9/notices", new_secret())
        self.config = write_config(self.dir.name)
        use_policies(self.config, self.policies)

    def test_a_partner_without_a_notice_fails_check_with_its_position(self):
        first, last = edit_partner(self.policies, "P-1001", notice="{ locale: zh-CN }")
        second, _ = edit_partner(self.policies, "P-1002", drop_notice=True)
        r = run(["check", "--config", self.config])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        found = [(int(m.group(1)), int(m.group(2)), m.group(0)) for m in
                 re.finditer(r"partners\.yaml:(\d+):(\d+): (.*)", r.stdout + r.stderr)]
        self.assertEqual(len(found), 2, found)
        for line, col, text in found:
            self.assertIn("notice", text)
            self.assertTrue(text.endswith("[policy]"), text)
            self.assertGreaterEqual(col, 1)
        lines = sorted(line for line, _, _ in found)
        self.assertTrue(first <= lines[0] <= last, f"P-1001's problem at line {lines[0]}, its entry is {first}-{last}")
        self.assertEqual(lines[1], second, "P-1002's problem at its entry")

    def test_email_partners_and_acknowledgement_terms_pass_check(self):
        edit_partner(self.policies, "P-1001", notice='{ email: "privacy@partner.example", locale: zh-CN }',
                     add="acknowledgement: { within: 14d, reminders: [3d, 10d] }")
        with open(os.path.join(self.policies, "acknowledgement.yaml"), "w") as f:
            f.write("acknowledgement: { within: 30d, reminders: [7d, 21d] }\n")
        r = run(["check", "--config", self.config])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertIn("config OK", r.stdout)

    def test_a_callback_secret_that_cannot_be_read_stops_the_start(self):
        with open(self.config, "a") as f:
            f.write("partner_center:\n  callback_url: http://127.0.0.1:9/callbacks\n"
                    "  secret_file: var/keys/no-such-callback.secret\n")
        r = run(["serve", "--config", self.config])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("no-such-callback.secret", r.stderr)
        self.assertNotIn("ready", r.stderr.replace("subject-access-ready", ""))


if __name__ == "__main__":
    unittest.main()
