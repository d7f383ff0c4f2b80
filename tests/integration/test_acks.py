"""Every partner is told, and answers (SPEC §13.3, §13.4) through the real
binary: a partner reached by email through an SMTP relay that demands
STARTTLS and authentication, credentials that never travel in the clear,
acknowledgements by signed webhook, by the link in the mail and by an
operator, reminders until a notice is acknowledged or overdue, and dates
written for the reader.

Needs Debian's python3-aiosmtpd (run with /usr/bin/python3). The
scaffolding (one daemon per class, the shared PostgreSQL cluster) is
test_loops.py's."""
import base64
import json
import logging
import os
import re
import smtplib
import ssl
import threading
import unittest
import urllib.parse
from html.parser import HTMLParser

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword

from harness import Receiver, free_port, make_certificates, new_secret, wait_for
from test_loops import (EN_DATE, FAST_RETRIES, P1001_CATEGORIES, RAW_TIMESTAMP, RFC3339, ZH_DATE, OnSharedPostgres,
                        Scenario, day_patterns, destroy_shared_cluster, edit_partner, fetch, instant,
                        message_id_local, parse_mail, plain_text)

ACK = "/v1/webhooks/partner-ack"
NO_SUCH_NOTICE = "ntc_0000000000000000000000000"
CJK = re.compile(r"[\u4e00-\u9fff]{4}")
SMTP_USER = "privacyd-relay"

# aiosmtpd logs through "mail.log"; keep its warnings out of the test output.
logging.getLogger("mail.log").addHandler(logging.NullHandler())


def tearDownModule():
    destroy_shared_cluster()


class SmtpRelay:
    """aiosmtpd on loopback. With `tls` (certificate, key): STARTTLS offered
    and required before anything but EHLO/NOOP/QUIT, AUTH only over it, and
    mail only from a client that authenticated as user/password. Without:
    no STARTTLS at all, yet AUTH offered in the clear: a trap for a client
    that would send its password anyway. Keeps the EHLOs, each AUTH command
    (True when it came over TLS) and each mail with who sent it how."""

    def __init__(self, user, password, tls=None):
        self.ehlos = 0
        self.auth_commands = []
        self.messages = []  # {"rcpt_tos", "content", "login", "tls"}
        self.lock = threading.Lock()
        relay = self

        class Recording(SMTP):
            async def smtp_EHLO(self, hostname):
                with relay.lock:
                    relay.ehlos += 1
                await super().smtp_EHLO(hostname)

            async def smtp_AUTH(self, arg):
                with relay.lock:
                    relay.auth_commands.append(self.session.ssl is not None)
                await super().smtp_AUTH(arg)

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                login = session.auth_data.login.decode() if session.authenticated and session.auth_data else None
                with relay.lock:
                    relay.messages.append({"rcpt_tos": list(envelope.rcpt_tos), "content": envelope.content,
                                           "login": login, "tls": session.ssl is not None})
                return "250 OK"

        def authenticator(server, session, envelope, mechanism, auth_data):
            ok = (isinstance(auth_data, LoginPassword) and auth_data.login == user.encode()
                  and auth_data.password == password.encode())
            return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

        class RelayController(Controller):
            def factory(self):
                return Recording(self.handler, **self.SMTP_kwargs)

        options = {"authenticator": authenticator, "server_hostname": "relay.test", "ready_timeout": 30}
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            options.update(tls_context=context, require_starttls=True, auth_require_tls=True, auth_required=True)
        else:
            options.update(auth_require_tls=False)
        self.port = free_port()
        self.controller = RelayController(Handler(), hostname="127.0.0.1", port=self.port, **options)
        self.controller.start()

    def mails(self):
        with self.lock:
            return list(self.messages)

    def close(self):
        self.controller.stop()


def notice_json(msg):
    for part in msg.walk():
        if part.get_filename() == "notice.json":
            return part
    return None


class FormReader(HTMLParser):
    def __init__(self):
        super().__init__()
        self.forms, self.radios, self.textareas = [], set(), set()

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append(a)
        elif tag == "input" and a.get("type", "").lower() == "radio":
            self.radios.add((a.get("name"), a.get("value")))
        elif tag == "textarea":
            self.textareas.add(a.get("name"))


class Relayed:
    """Scenario helpers for mail through a relay."""

    def mail(self, nid, timeout=30):
        """The relayed mail whose Message-ID names notice `nid`."""
        def find():
            for m in self.relay.mails():
                msg = parse_mail(m["content"])
                if message_id_local(msg) == nid:
                    return m, msg
        return wait_for(find, timeout=timeout, what=f"the mail of {nid}")


class EmailPartner(Relayed, Scenario):
    """P-1001 is told by email, in zh-CN, through a relay that wants STARTTLS
    (verified against smtp_ca_file) and a login; P-1002 by webhook."""

    @classmethod
    def prepare(cls):
        cls.smtp_password = base64.urlsafe_b64encode(os.urandom(12)).decode()
        with open(os.path.join(cls.folder, "var", "keys", "smtp-password"), "w") as f:
            f.write(cls.smtp_password + "\n")
        cls.ca, server = make_certificates(cls.folder)
        cls.relay = SmtpRelay(SMTP_USER, cls.smtp_password, tls=server)
        cls.addClassCleanup(cls.relay.close)
        edit_partner(cls.policies, "P-1001", notice='{ email: "privacy@partner.example", locale: zh-CN }')
        cls.notices = (f"  smtp: smtp://127.0.0.1:{cls.relay.port}\n  smtp_user: {SMTP_USER}\n"
                       f"  smtp_password_file: var/keys/smtp-password\n  smtp_ca_file: {cls.ca}\n" + FAST_RETRIES)

    def partner_mail(self, rid, timeout=30):
        """P-1001's mail about `rid`: (relay record, message, notice.json)."""
        def find():
            for m in self.relay.mails():
                if m["rcpt_tos"] == ["privacy@partner.example"]:
                    msg = parse_mail(m["content"])
                    part = notice_json(msg)
                    data = json.loads(part.get_payload(decode=True)) if part else {}
                    if data.get("request_id") == rid:
                        return m, msg, data
        return wait_for(find, timeout=timeout, what=f"P-1001's mail about {rid}")

    def webhook_notices(self, rid):
        with self.partners._lock:
            return [b for (i, b, t) in self.partners.deliveries if b.get("request_id") == rid]

    def test_an_erasure_reaches_the_email_partner_with_its_json_attached(self):
        rid = self.submit("request.deletion", "demo-002")  # disclosed to P-1001 and P-1002
        self.wait_status(rid, "completed")
        m, msg, data = self.partner_mail(rid)
        nid = message_id_local(msg)
        self.assertEqual(msg["Message-ID"], f"<{nid}@privacyd>")
        self.assertEqual((m["tls"], m["login"]), (True, SMTP_USER), "sent over STARTTLS, logged in")
        self.assertEqual(msg.get_content_type(), "multipart/mixed")
        self.assertEqual(notice_json(msg).get_content_type(), "application/json")
        self.assertEqual((data["type"], data["notice_id"], data["request_id"], data["partner_id"], data["subject"]),
                         ("notice.erasure", nid, rid, "P-1001", {"huawei_id": "demo-002"}))
        self.assertEqual(sorted(data["categories"]), sorted(P1001_CATEGORIES))
        self.assertLessEqual({"type", "notice_id", "request_id", "partner_id", "subject", "categories", "disclosed",
                              "text"}, set(data))
        self.assertRegex(data["text"], CJK)
        self.assertRegex(plain_text(msg), CJK, "the mail is written in the partner's locale")
        self.assertIn(nid, [n["id"] for n in self.notices_of(rid, "partner") if n["status"] == "delivered"])
        # P-1002 still hears by webhook; P-1001 only by mail.
        self.assertEqual([b["partner_id"] for b in self.webhook_notices(rid)], ["P-1002"])
        self.assertTrue(all(r["tls"] and r["login"] == SMTP_USER for r in self.relay.mails()))
        with self.relay.lock:
            self.assertTrue(self.relay.auth_commands and all(self.relay.auth_commands), "AUTH only over TLS")
        self.assert_not_logged(self.smtp_password)

    def test_the_relay_takes_no_mail_without_tls_and_a_login(self):
        before = len(self.relay.mails())
        with smtplib.SMTP("127.0.0.1", self.relay.port, timeout=10) as client:
            client.ehlo("test.invalid")
            self.assertIn("starttls", client.esmtp_features)
            self.assertNotIn("auth", client.esmtp_features, "no AUTH offered in the clear")
            self.assertEqual(client.docmd("AUTH", "PLAIN " + base64.b64encode(b"\0x\0y").decode())[0], 530)
            self.assertEqual(client.mail("relay@test.invalid")[0], 530)
            client.starttls(context=ssl.create_default_context(cafile=self.ca))
            client.ehlo("test.invalid")
            self.assertIn("auth", client.esmtp_features)
            self.assertEqual(client.mail("relay@test.invalid")[0], 530, "no mail without a login, even over TLS")
            self.assertGreaterEqual(client.rcpt("privacy@partner.example")[0], 500)
            with self.assertRaises(smtplib.SMTPAuthenticationError):
                client.login(SMTP_USER, "not-the-password")
            client.login(SMTP_USER, self.smtp_password)  # what privacyd is configured with
            self.assertEqual(client.mail("relay@test.invalid")[0], 250)
            client.rset()
        self.assertEqual(len(self.relay.mails()), before)

    def test_dates_are_written_for_the_reader_and_kept_in_json(self):
        zh = self.submit("request.disassociation", "demo-001", "P-1001")  # zh-CN person, zh-CN partner by mail
        en = self.submit("request.disassociation", "demo-003", "P-1002")  # en person, partner by webhook
        self.wait_status(zh, "completed")
        self.wait_status(en, "completed")
        _, partner_msg, data = self.partner_mail(zh)
        self.assertRegex(data["disassociated_at"], RFC3339)
        _, zh_patterns = day_patterns(data["disassociated_at"])
        subject_text = plain_text(self.mail(self.wait_delivered(zh, "subject")[0]["id"])[1])
        self.assertRegex(subject_text, ZH_DATE)
        self.assertTrue(any(p.search(subject_text) for p in zh_patterns), "the day it happened, in Chinese")
        self.assertNotRegex(subject_text, RAW_TIMESTAMP)
        self.assertRegex(plain_text(partner_msg), ZH_DATE)
        self.assertNotRegex(plain_text(partner_msg), RAW_TIMESTAMP)

        body = wait_for(lambda: self.webhook_notices(en), what="P-1002's notice")[0]
        self.assertRegex(body["disassociated_at"], RFC3339)
        en_patterns, _ = day_patterns(body["disassociated_at"])
        subject_text = plain_text(self.mail(self.wait_delivered(en, "subject")[0]["id"])[1])
        self.assertRegex(subject_text, EN_DATE)
        self.assertTrue(any(p.search(subject_text) for p in en_patterns), "the day it happened, in English")
        self.assertNotRegex(subject_text, RAW_TIMESTAMP)
        self.assertRegex(body["text"], EN_DATE)
        self.assertNotRegex(body["text"], RAW_TIMESTAMP)

    def test_an_email_partner_acknowledges_through_the_link_in_its_mail(self):
        rid = self.submit("request.disassociation", "demo-005", "P-1001")
        self.wait_status(rid, "completed")
        _, msg, data = self.partner_mail(rid)
        nid = data["notice_id"]
        port = self.d.port("public")
        m = re.search(rf"http://127\.0\.0\.1:{port}(/v1/acks/([A-Za-z0-9_-]+=*))", plain_text(msg))
        self.assertIsNotNone(m, "an acknowledgement link in the mail")
        path, url = m.group(1), m.group(0)
        status, headers, page = fetch(port, "GET", path)
        self.assertEqual(status, 200, page[:200])
        self.assertTrue(headers.get("Content-Type", "").startswith("text/html"), headers.get("Content-Type"))
        form = FormReader()
        form.feed(page.decode())
        self.assertEqual(len(form.forms), 1, form.forms)
        self.assertEqual(form.forms[0].get("method", "").lower(), "post")
        self.assertIn(form.forms[0].get("action", ""), ("", path, url))
        self.assertLessEqual({("outcome", o) for o in ("erased", "retained", "no_data")}, form.radios)
        self.assertIn("note", form.textareas)
        self.assertIsNone(self.notice(nid, rid)["acknowledgement"], "looking at the page records nothing")

        def post(outcome):
            return fetch(port, "POST", path, urllib.parse.urlencode({"outcome": outcome, "note": "never held it"}),
                         {"Content-Type": "application/x-www-form-urlencoded"})
        # A note nobody could read back (not UTF-8, terminal escapes) is refused, and nothing is recorded.
        for bad in ("%FF%FE", "%1B%5B2J"):
            status, _, page = fetch(port, "POST", path, "outcome=erased&note=" + bad,
                                    {"Content-Type": "application/x-www-form-urlencoded"})
            self.assertEqual(status, 400, page[:200])
        self.assertIsNone(self.notice(nid, rid)["acknowledgement"])
        status, headers, page = post("no_data")
        self.assertEqual(status, 200, page[:200])
        self.assertTrue(headers.get("Content-Type", "").startswith("text/html"))
        self.assertIn("recorded", page.decode().lower())
        shown = self.listed(nid)["acknowledgement"]
        self.assertEqual((shown["outcome"], shown["note"], shown["by"]), ("no_data", "never held it", "link"))
        self.assertRegex(shown["at"], RFC3339)
        self.assertEqual(post("no_data")[0], 200)
        self.assertEqual(post("erased")[0], 409)
        self.assertEqual(self.notice(nid, rid)["acknowledgement"]["outcome"], "no_data")
        unknown = "/v1/acks/" + base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        self.assertEqual(fetch(port, "GET", unknown)[0], 404)
        self.assertEqual(fetch(port, "POST", unknown, "outcome=erased",
                               {"Content-Type": "application/x-www-form-urlencoded"})[0], 404)


class EmailPartnerOnSqlite(EmailPartner, unittest.TestCase):
    pass


class EmailPartnerOnPostgres(OnSharedPostgres, EmailPartner, unittest.TestCase):
    pass


class CredentialsNeedStarttls(Relayed, Scenario):
    """A relay that offers no STARTTLS (but would take AUTH in the clear):
    privacyd, holding credentials, never sends them; the mail waits."""

    @classmethod
    def prepare(cls):
        cls.smtp_password = base64.urlsafe_b64encode(os.urandom(12)).decode()
        with open(os.path.join(cls.folder, "var", "keys", "smtp-password"), "w") as f:
            f.write(cls.smtp_password + "\n")
        cls.relay = SmtpRelay(SMTP_USER, cls.smtp_password)
        cls.addClassCleanup(cls.relay.close)
        cls.notices = (f"  smtp: smtp://127.0.0.1:{cls.relay.port}\n  smtp_user: {SMTP_USER}\n"
                       f"  smtp_password_file: var/keys/smtp-password\n  timeout: 5s\n  retry_schedule: [0s, 1h]\n")

    def test_credentials_never_travel_in_the_clear(self):
        rid = self.submit("request.access", "demo-002")
        failed = wait_for(lambda: [n for n in self.notices_of(rid, "subject") if n["attempts"] >= 1 and n["last_error"]],
                          timeout=60, what="a failed attempt at the person's mail")[0]
        self.assertEqual(failed["status"], "pending", "retried later, not given up")
        self.assertIn("STARTTLS", failed["last_error"])
        self.assertIn("STARTTLS", self.listed(failed["id"], "&status=pending")["last_error"])
        with self.relay.lock:
            self.assertGreaterEqual(self.relay.ehlos, 1, "privacyd did talk to the relay")
            self.assertEqual(self.relay.auth_commands, [], "no AUTH command without TLS")
            self.assertEqual(self.relay.messages, [], "no mail either")
        self.assert_not_logged(self.smtp_password)


class WrongPasswordWaits(Relayed, Scenario):
    """A relay that refuses privacyd's login (535): the relay's configuration
    is wrong, not the mail, so the mail waits and retries instead of dying."""

    @classmethod
    def prepare(cls):
        with open(os.path.join(cls.folder, "var", "keys", "smtp-password"), "w") as f:
            f.write("not-the-password\n")
        cls.ca, server = make_certificates(cls.folder)
        cls.relay = SmtpRelay(SMTP_USER, base64.urlsafe_b64encode(os.urandom(12)).decode(), tls=server)
        cls.addClassCleanup(cls.relay.close)
        cls.notices = (f"  smtp: smtp://127.0.0.1:{cls.relay.port}\n  smtp_user: {SMTP_USER}\n"
                       f"  smtp_password_file: var/keys/smtp-password\n  smtp_ca_file: {cls.ca}\n"
                       f"  timeout: 5s\n  retry_schedule: [0s, 1h]\n")

    def test_a_refused_login_is_retried_not_dead(self):
        rid = self.submit("request.access", "demo-002")
        failed = wait_for(lambda: [n for n in self.notices_of(rid, "subject") if n["last_error"]],
                          timeout=60, what="a failed attempt at the person's mail")[0]
        self.assertEqual(failed["status"], "pending", failed)
        self.assertIn("refused the credentials", failed["last_error"])
        self.assertEqual(failed["attempts"], 0, "the relay's configuration does not spend the notice's attempts")
        with self.relay.lock:
            self.assertTrue(self.relay.auth_commands and all(self.relay.auth_commands), "AUTH tried, over TLS")
            self.assertEqual(self.relay.messages, [])


class WrongPasswordWaitsOnSqlite(WrongPasswordWaits, unittest.TestCase):
    pass


class CredentialsNeedStarttlsOnSqlite(CredentialsNeedStarttls, unittest.TestCase):
    pass


class CredentialsNeedStarttlsOnPostgres(OnSharedPostgres, CredentialsNeedStarttls, unittest.TestCase):
    pass


class Acknowledgements(Scenario):
    """Webhook partners with secrets of their own: P-1001 on the shared
    receiver, P-1002 on another with another secret."""

    @classmethod
    def prepare(cls):
        cls.other_secret = new_secret()
        cls.other = Receiver(cls.other_secret)
        cls.addClassCleanup(cls.other.close)
        edit_partner(cls.policies, "P-1002",
                     notice=f'{{ webhook: {{ url: "{cls.other.url}", secret_file: "var/keys/partner-P-1002.secret" }} }}')
        with open(os.path.join(cls.folder, "var", "keys", "partner-P-1002.secret"), "w") as f:
            f.write(cls.other_secret + "\n")

    def delivered(self, receiver, rid):
        """(notice id, body) of the first notice `receiver` got about `rid`."""
        def got():
            with receiver._lock:
                return [(i, b) for (i, b, t) in receiver.deliveries if b.get("request_id") == rid]
        return wait_for(got, what=f"the partner's notice about {rid}")[0]

    def test_a_partner_acknowledges_by_signed_webhook(self):
        rid = self.submit("request.disassociation", "demo-001", "P-1001")
        nid, body = self.delivered(self.partners, rid)
        self.assertEqual(body["notice_id"], nid)
        ack = {"type": "notice.acknowledged", "notice_id": nid, "partner_id": "P-1001", "outcome": "erased",
               "note": "removed from our CRM"}
        # Another partner's secret does not verify, whoever the body claims.
        self.assertEqual(self.post_signed(ACK, ack, self.other_secret)[0], 401)
        self.assertEqual(self.post_signed(ACK, {**ack, "partner_id": "P-1002"}, self.other_secret)[0], 401)
        self.assertEqual(self.d.request("POST", ACK, body=json.dumps(ack).encode(),
                                        headers={"Content-Type": "application/json"})[0], 401)
        self.assertEqual(self.post_signed(ACK, {**ack, "outcome": "deleted"}, self.partner_secret)[0], 400)
        self.assertEqual(self.post_signed(ACK, {**ack, "type": "notice.read"}, self.partner_secret)[0], 400)
        self.assertEqual(self.post_signed(ACK, {**ack, "note": "\x1b[2J\x1b[31mhi"}, self.partner_secret)[0], 400)
        self.assertEqual(self.post_signed(ACK, {**ack, "note": "x" * 4001}, self.partner_secret)[0], 400)
        self.assertIsNone(self.notice(nid, rid)["acknowledgement"], "nothing refused was recorded")

        msg_id = "msg_" + os.urandom(8).hex()
        status, first = self.post_signed(ACK, ack, self.partner_secret, msg_id=msg_id)
        self.assertEqual((status, first), (202, {"notice_id": nid, "status": "acknowledged", "outcome": "erased"}))
        self.assertEqual(self.post_signed(ACK, ack, self.partner_secret, msg_id=msg_id), (202, first))
        self.assertEqual(self.post_signed(ACK, ack, self.partner_secret), (202, first))
        status, conflict = self.post_signed(ACK, {**ack, "outcome": "retained"}, self.partner_secret)
        self.assertEqual((status, conflict["error"]["code"]), (409, "already_acknowledged"))
        self.assertEqual(self.post_signed(ACK, {**ack, "notice_id": NO_SUCH_NOTICE}, self.partner_secret)[0], 404)
        shown = self.listed(nid)["acknowledgement"]
        self.assertEqual((shown["outcome"], shown["note"], shown["by"]), ("erased", "removed from our CRM", "partner"))
        self.assertRegex(shown["at"], RFC3339)

        # P-1002 answers for its own notices with its own secret.
        other_rid = self.submit("request.disassociation", "demo-003", "P-1002")
        other_nid, _ = self.delivered(self.other, other_rid)
        other_ack = {**ack, "notice_id": other_nid, "partner_id": "P-1002", "outcome": "retained"}
        self.assertEqual(self.post_signed(ACK, other_ack, self.partner_secret)[0], 401)
        self.assertEqual(self.post_signed(ACK, other_ack, self.other_secret)[0], 202)
        self.assertEqual(self.notice(other_nid, other_rid)["acknowledgement"]["outcome"], "retained")
        self.assertEqual((self.partners.bad_signatures, self.other.bad_signatures), (0, 0))

    def test_an_operator_records_an_acknowledgement(self):
        rid = self.submit("request.disassociation", "demo-005", "P-1001")
        self.wait_status(rid, "completed")
        nid = self.notices_of(rid, "partner")[0]["id"]
        path = f"/v1/notices/{nid}/acknowledge"
        answer = {"outcome": "retained", "note": "kept for the statutory audit period"}

        def unacknowledged():
            status, page = self.admin("GET", "/v1/notices?acknowledged=false&limit=500", token="watcher")
            self.assertEqual(status, 200, page)
            return [n["id"] for n in page["notices"]]
        self.assertIn(nid, unacknowledged())
        status, refused = self.admin("POST", path, token="watcher", body=answer)
        self.assertEqual(status, 403, refused)
        self.assertIsNone(self.notice(nid, rid)["acknowledgement"])
        status, done = self.admin("POST", path, body=answer)
        self.assertEqual(status, 200, done)
        ack = done["acknowledgement"]
        self.assertEqual((ack["outcome"], ack["note"], ack["by"]), ("retained", answer["note"], "ops"))
        self.assertEqual(self.notice(nid, rid)["acknowledgement"]["by"], "ops")
        self.assertNotIn(nid, unacknowledged())
        self.assertEqual(self.admin("POST", path, body={"outcome": "erased", "note": "changed our mind"})[0], 409)
        self.assertEqual(self.admin("POST", f"/v1/notices/{NO_SUCH_NOTICE}/acknowledge", body=answer)[0], 404)
        subject_nid = self.notices_of(rid, "subject")[0]["id"]
        status, wrong = self.admin("POST", f"/v1/notices/{subject_nid}/acknowledge", body=answer)
        self.assertEqual((status, wrong["error"]["code"]), (409, "not_acknowledgeable"))


class AcknowledgementsOnSqlite(Acknowledgements, unittest.TestCase):
    pass


class AcknowledgementsOnPostgres(OnSharedPostgres, Acknowledgements, unittest.TestCase):
    pass


class Reminders(Scenario):
    """Three seconds to answer, reminded after one and two."""

    @classmethod
    def prepare(cls):
        with open(os.path.join(cls.policies, "acknowledgement.yaml"), "w") as f:
            f.write("acknowledgement: { within: 3s, reminders: [1s, 2s] }\n")

    def first_notice(self, rid):
        def got():
            with self.partners._lock:
                return [i for (i, b, t) in self.partners.deliveries
                        if b.get("request_id") == rid and b["type"] != "notice.reminder"]
        return wait_for(got, what=f"the partner's notice about {rid}")[0]

    def reminders_received(self, first):
        with self.partners._lock:
            return [(i, b) for (i, b, t) in self.partners.deliveries if b.get("reminds_of") == first]

    def reminder_notices(self, rid, first):
        return [n for n in self.notices_of(rid) if n["reminder_of"] == first]

    def test_an_unanswered_notice_is_reminded_then_overdue_and_an_answered_one_is_not(self):
        # Answered at once; created before the other, so its schedule ends first.
        answered_rid = self.submit("request.disassociation", "demo-005", "P-1001")
        answered = self.first_notice(answered_rid)
        status, resp = self.post_signed(ACK, {"type": "notice.acknowledged", "notice_id": answered,
                                              "partner_id": "P-1001", "outcome": "erased", "note": "erased on request"},
                                        self.partner_secret)
        self.assertEqual(status, 202, resp)
        reminded_before_answer = len(self.reminder_notices(answered_rid, answered))

        rid = self.submit("request.disassociation", "demo-001", "P-1001")
        first = self.first_notice(rid)
        reminders = wait_for(lambda: (lambda r: r if len(r) >= 2 else None)(self.reminders_received(first)),
                             timeout=30, what="two reminders")
        self.assertEqual(len({i for i, _ in reminders}), 2, "two reminders, each a notice of its own")
        for msg_id, body in reminders:
            self.assertEqual((body["type"], body["notice_id"], body["reminds_of"], body["partner_id"],
                              body["request_id"]), ("notice.reminder", msg_id, first, "P-1001", rid))
            self.assertNotEqual(msg_id, first)
            self.assertRegex(body["acknowledge_by"], RFC3339)
            self.assertTrue(body["text"])
        shown = self.reminder_notices(rid, first)
        self.assertEqual(sorted(n["id"] for n in shown), sorted(i for i, _ in reminders))
        self.assertEqual({(n["channel"], n["template"]) for n in shown}, {("partner", "partner-reminder")})

        def overdue():
            status, page = self.admin("GET", "/v1/notices?acknowledged=false&overdue=true&limit=500", token="watcher")
            self.assertEqual(status, 200, page)
            ids = [n["id"] for n in page["notices"]]
            return ids if first in ids else None
        listed = wait_for(overdue, timeout=30, what="the notice to be overdue")
        ours = {first, answered} | {i for i, _ in reminders}
        self.assertEqual([i for i in listed if i in ours], [first], "only the unanswered first notice is overdue")
        item = self.notice(first, rid)
        self.assertEqual((item["overdue"], item["reminders_sent"], item["acknowledgement"], item["reminder_of"]),
                         (True, 2, None, None))
        self.assertLessEqual(abs((instant(item["acknowledge_by"]) - instant(item["created_at"])).total_seconds() - 3), 1)
        series = 'privacyd_partner_acknowledgements_overdue{partner="P-1001"}'
        wait_for(lambda: self.metric(series) == 1, timeout=10, what=f"{series} 1")

        # The answered notice's reminders and deadline have passed too: it got
        # no reminder after its answer and is not overdue.
        self.assertEqual(len(self.reminder_notices(answered_rid, answered)), reminded_before_answer)
        item = self.notice(answered, answered_rid)
        self.assertEqual((item["overdue"], item["acknowledgement"]["outcome"]), (False, "erased"))

        # An operator answering a reminder's id answers the notice it reminds of.
        reminder_id = reminders[0][0]
        status, shown = self.admin("POST", f"/v1/notices/{reminder_id}/acknowledge", body={"outcome": "no_data"})
        self.assertEqual(status, 200, shown)
        self.assertEqual((shown["id"], shown["acknowledgement"]["outcome"], shown["overdue"]), (first, "no_data", False))
        self.assertEqual(self.notice(reminder_id, rid)["acknowledgement"], None, "the reminder itself asks nothing")
        wait_for(lambda: self.metric(series) == 0, timeout=10, what=f"{series} 0")
        self.assertEqual(self.partners.bad_signatures, 0)


class RemindersOnSqlite(Reminders, unittest.TestCase):
    pass


class RemindersOnPostgres(OnSharedPostgres, Reminders, unittest.TestCase):
    pass


if __name__ == "__main__":
    unittest.main()
