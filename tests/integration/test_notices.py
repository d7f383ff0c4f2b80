"""Notice delivery (SPEC §7) through the real binary: a loopback partner
that verifies every signature and misbehaves on cue, a loopback SMTP
server, retries with Retry-After, dead notices failing their step, and a
daemon killed between sending a notice and committing it."""
import email
import email.policy
import os
import socketserver
import sqlite3
import tempfile
import threading
import time
import unittest

from harness import (Daemon, Receiver, demo_setup, make_certificates, new_secret, run, use_policies, wait_for,
                     write_config, write_secrets)

ENGINE = "engine: { lease: 2s, poll: 100ms }\n"


class SmtpServer:
    """Just enough SMTP (RFC 5321) to receive mail on loopback: no TLS is
    offered, so the client goes on in the clear."""

    def __init__(self):
        self.messages = []  # (mail from, [rcpt to], raw message)
        server = self

        class Handler(socketserver.StreamRequestHandler):
            def reply(self, line):
                self.wfile.write((line + "\r\n").encode())

            def handle(self):
                self.reply("220 test ESMTP")
                sender, rcpts = None, []
                while True:
                    line = self.rfile.readline().decode(errors="replace").rstrip("\r\n")
                    if not line:
                        return
                    verb = line.split(" ")[0].upper()
                    if verb in ("EHLO", "HELO"):
                        self.reply("250-test")
                        self.reply("250 8BITMIME")
                    elif verb == "MAIL":
                        sender, rcpts = line[10:].strip(), []
                        self.reply("250 ok")
                    elif verb == "RCPT":
                        rcpts.append(line[8:].strip())
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 go ahead")
                        data = b""
                        while not data.endswith(b"\r\n.\r\n"):
                            chunk = self.rfile.readline()
                            if not chunk:
                                return
                            data += chunk
                        server.messages.append((sender, rcpts, data[:-5].replace(b"\r\n..", b"\r\n.")))
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        self.reply("221 bye")
                        return
                    else:
                        self.reply("250 ok")

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class Notices(unittest.TestCase):
    def setUp(self, smtp=False, tls=None):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.partner_secret = new_secret()
        self.partners = Receiver(self.partner_secret, tls=tls)
        self.addCleanup(self.partners.close)
        policies = demo_setup(self.dir.name, self.partners.url, self.partner_secret)
        self.smtp = None
        notices = "  file_dir: var/notices\n"
        if smtp:
            self.smtp = SmtpServer()
            self.addCleanup(self.smtp.close)
            notices = f"  smtp: smtp://127.0.0.1:{self.smtp.port}\n"
        self.secret = new_secret()
        self.config = write_config(self.dir.name, extra=ENGINE)
        use_policies(self.config, policies,
                     notices + "  timeout: 1s\n  retry_schedule: [0s, 300ms, 300ms, 300ms, 300ms]\n")
        write_secrets(self.dir.name, [self.secret])
        r = run(["demo", "--config", self.config])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.daemons = []
        self.start()

    daemon_env = None

    def start(self):
        d = Daemon(self.config, env=self.daemon_env)
        self.daemons.append(d)
        self.addCleanup(d.kill)
        d.wait_ready()
        self.d = d
        return d

    def db(self, sql):
        conn = sqlite3.connect(os.path.join(self.dir.name, "var", "privacyd.db"), timeout=10)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def disassociate(self, subject="demo-001", partner="P-1001"):
        status, resp = self.d.webhook({"type": "request.disassociation", "occurred_at": "2026-11-26T05:00:00Z",
                                       "subject": {"huawei_id": subject}, "partner": {"id": partner}}, self.secret)
        self.assertEqual(status, 202, resp)
        return resp["request_id"]

    def finish(self, rid, timeout=60):
        wait_for(lambda: self.db(f"SELECT status FROM requests WHERE id = '{rid}'")[0][0] in
                 ("completed", "failed", "rejected"), timeout=timeout, what=f"{rid} to finish")
        return self.db(f"SELECT status, reason FROM requests WHERE id = '{rid}'")[0]

    def deliveries(self, rid):
        with self.partners._lock:
            return [(i, b, t) for (i, b, t) in self.partners.deliveries if b.get("request_id") == rid]

    def test_failures_retry_with_the_same_id_until_delivered(self):
        self.partners.fail_first["notice.disassociation"] = 2
        rid = self.disassociate()
        self.assertEqual(self.finish(rid), ("completed", None))
        ids = [i for (i, b, t) in self.deliveries(rid)]
        self.assertEqual(len(ids), 3)
        self.assertEqual(len(set(ids)), 1, "every attempt carries the notice id as webhook-id")
        self.assertEqual(self.db(f"SELECT status, attempts FROM notices WHERE id = '{ids[0]}'"), [("delivered", 3)])
        self.assertEqual(self.partners.bad_signatures, 0)

    def test_retry_after_is_honoured(self):
        self.partners.script["notice.disassociation"] = [(429, {"Retry-After": "2"})]
        rid = self.disassociate()
        self.assertEqual(self.finish(rid)[0], "completed")
        times = [t for (i, b, t) in self.deliveries(rid)]
        self.assertEqual(len(times), 2)
        # The schedule alone would retry after ~300ms; the partner asked for 2s.
        self.assertGreaterEqual(times[1] - times[0], 1.9)

    def test_a_partner_that_hangs_past_the_timeout_gets_the_notice_again(self):
        self.partners.hang_steps.add("notice.disassociation")
        rid = self.disassociate()
        self.assertTrue(self.partners.hanging.wait(30))
        wait_for(lambda: len(self.deliveries(rid)) >= 2, what="a second attempt after the timeout")
        self.partners.release.set()
        self.assertEqual(self.finish(rid)[0], "completed")
        errors = self.db("SELECT COUNT(*) FROM audit_log WHERE event = 'notice.retrying' AND detail LIKE '%timed out%'")
        self.assertGreaterEqual(errors[0][0], 1)

    def test_a_refusal_makes_the_notice_dead_and_fails_the_step(self):
        self.partners.script["notice.disassociation"] = [(400, {})]
        rid = self.disassociate()
        self.assertEqual(self.finish(rid), ("failed", "step notify-partner failed"))
        self.assertEqual(len(self.deliveries(rid)), 1, "a 400 is not retried")
        self.assertEqual(self.db(f"SELECT status, last_error FROM notices WHERE request_id = '{rid}' AND channel = 'partner'"),
                         [("dead", "the partner answered 400")])

    def test_an_exhausted_schedule_makes_the_notice_dead(self):
        self.partners.fail_first["notice.disassociation"] = 100
        rid = self.disassociate()
        self.assertEqual(self.finish(rid)[0], "failed")
        self.assertEqual(len(self.deliveries(rid)), 5)  # the schedule has five entries

    def test_a_crash_between_sending_and_committing_sends_again_with_the_same_id(self):
        self.partners.hang_steps.add("notice.disassociation")
        rid = self.disassociate()
        self.assertTrue(self.partners.hanging.wait(30))
        self.d.kill()  # the notice went out; its outcome was never committed
        self.partners.hang_steps.clear()
        self.partners.release.set()
        self.assertEqual(self.db(f"SELECT status FROM notices WHERE request_id = '{rid}' AND channel = 'partner'"),
                         [("pending",)])
        self.start()
        self.assertEqual(self.finish(rid)[0], "completed")
        ids = [i for (i, b, t) in self.deliveries(rid)]
        self.assertGreaterEqual(len(ids), 2)
        self.assertEqual(len(set(ids)), 1, "a repeat carries the same notice id, never a new one")
        self.assertEqual(self.db(f"SELECT COUNT(*) FROM notices WHERE request_id = '{rid}'"), [(2,)])  # partner + subject

    def test_notices_at_rest_hold_no_plaintext(self):
        rid = self.disassociate()
        self.finish(rid)
        self.daemons[-1].stop()
        for name in os.listdir(os.path.join(self.dir.name, "var")):
            if name.startswith("privacyd.db"):
                with open(os.path.join(self.dir.name, "var", name), "rb") as f:
                    data = f.read()
                self.assertFalse(b"lin.wei@demo.example" in data, f"an email address in plaintext in {name}")
                self.assertFalse(b"demo-001" in data, f"a HUAWEI ID in plaintext in {name}")




class NoticesOverHttps(unittest.TestCase):
    """Partner webhooks over TLS: delivered when the partner's certificate
    verifies, never when it does not."""

    def run_case(self, trusted):
        certs = tempfile.TemporaryDirectory()
        self.addCleanup(certs.cleanup)
        ca, server = make_certificates(certs.name)
        case = Notices("test_failures_retry_with_the_same_id_until_delivered")
        case.daemon_env = {"SSL_CERT_FILE": ca} if trusted else {"SSL_CERT_FILE": os.path.join(certs.name, "none.pem")}
        case.setUp(tls=server)
        self.addCleanup(case.doCleanups)
        self.assertTrue(case.partners.url.startswith("https://"))
        rid = case.disassociate()
        return case, rid

    def test_a_partner_with_a_verified_certificate_gets_its_notice(self):
        case, rid = self.run_case(trusted=True)
        self.assertEqual(case.finish(rid)[0], "completed")
        self.assertEqual(len(case.deliveries(rid)), 1)
        self.assertEqual(case.partners.bad_signatures, 0)

    def test_a_certificate_that_does_not_verify_is_never_sent_to(self):
        case, rid = self.run_case(trusted=False)
        self.assertEqual(case.finish(rid)[0], "failed")
        self.assertEqual(case.deliveries(rid), [])
        errors = case.db("SELECT detail FROM audit_log WHERE event IN ('notice.retrying', 'notice.dead')")
        self.assertTrue(errors)
        self.assertTrue(all("TLS handshake failed" in d for (d,) in errors), errors)


class NoticesBySmtp(Notices):
    def setUp(self):
        super().setUp(smtp=True)

    def test_the_person_gets_mail_in_their_language(self):
        first = self.disassociate("demo-001", "P-1001")   # zh-CN
        second = self.disassociate("demo-002", "P-1002")  # en
        self.assertEqual(self.finish(first)[0], "completed")
        self.assertEqual(self.finish(second)[0], "completed")
        wait_for(lambda: len(self.smtp.messages) == 2, what="two mails")
        by_rcpt = {rcpts[0]: email.message_from_bytes(raw, policy=email.policy.default)
                   for (sender, rcpts, raw) in self.smtp.messages}
        zh = by_rcpt["<lin.wei@demo.example>"]
        en = by_rcpt["<alex.morgan@demo.example>"]
        self.assertEqual(zh["From"].addresses[0].addr_spec, "privacy@privacyd.invalid")
        self.assertIn("解除关联", zh.get_content())
        self.assertIn("Example Partner Ltd.", zh.get_content())
        self.assertEqual(en["Subject"], "Your HUAWEI ID is no longer associated with Second Partner Co.")
        self.assertIn("dpo@second.example", en.get_content())
        self.assertEqual(en["Content-Language"], "en")
        # The Message-ID is the notice's id: a mail sent again is the same mail.
        for rid, mail in ((first, zh), (second, en)):
            (notice,), = self.db(f"SELECT id FROM notices WHERE request_id = '{rid}' AND channel = 'subject'")
            self.assertEqual(mail["Message-ID"], f"<{notice}@privacyd>")


if __name__ == "__main__":
    unittest.main()
