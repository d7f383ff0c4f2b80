"""SPEC §14: master key rotation. `privacyd keys rotate` re-seals everything
the master key protects under the current one — online, while webhooks
arrive and requests run — in batches it can stop and resume; `keys status`
counts what each key id still protects; once the old key's count is zero it
can be removed and everything still opens."""
import hashlib
import hmac
import os
import re
import sqlite3
import tempfile
import threading
import unittest

from harness import Daemon, Receiver, demo_setup, new_secret, run, use_policies, wait_for, write_config, write_secrets

ENGINE = "engine: { lease: 2s, poll: 100ms }\n"


def key_id(key):
    return hmac.new(key, b"privacyd/key-id/v1", hashlib.sha256).hexdigest()[:12]


def status_counts(text):
    """{key id: total} from `keys status`."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^([0-9a-f]{12})(?: \(current\))?: (\d+)$", text, re.M)}


class KeyRotation(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.partner_secret = new_secret()
        self.partners = Receiver(self.partner_secret)
        self.addCleanup(self.partners.close)
        policies = demo_setup(self.dir.name, self.partners.url, self.partner_secret)
        self.secret = new_secret()
        self.config = write_config(self.dir.name, extra=ENGINE)
        use_policies(self.config, policies)
        write_secrets(self.dir.name, [self.secret])
        r = run(["demo", "--config", self.config])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.keys = os.path.join(self.dir.name, "var", "keys")
        with open(os.path.join(self.keys, "data.key"), "rb") as f:
            self.old = f.read()

    def start(self):
        d = Daemon(self.config)
        self.addCleanup(d.kill)
        d.wait_ready()
        return d

    def request(self, d, kind, huawei_id, **more):
        body = {"type": kind, "occurred_at": "2026-11-26T05:00:00Z", "subject": {"huawei_id": huawei_id}, **more}
        status, resp = d.webhook(body, self.secret)
        self.assertEqual(status, 202, resp)
        return resp.get("request_id") or resp.get("event_id")

    def status_of(self, rid):
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "privacyd.db"), timeout=10)
        try:
            return db.execute("SELECT status FROM requests WHERE id = ?", (rid,)).fetchone()[0]
        finally:
            db.close()

    def finish(self, rid):
        wait_for(lambda: self.status_of(rid) in ("completed", "failed", "rejected"), timeout=60, what=f"{rid}")
        self.assertEqual(self.status_of(rid), "completed")

    def rewrite_keys(self, lines):
        with open(self.config) as f:
            text = f.read()
        text = re.sub(r"keys:\n(  .*\n)+", "keys:\n" + "".join(f"  {l}\n" for l in lines), text)
        with open(self.config, "w") as f:
            f.write(text)

    def keys_status(self):
        r = run(["keys", "status", "--config", self.config])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return status_counts(r.stdout)

    def test_rotation_under_load_then_the_old_key_goes(self):
        d = self.start()
        before = self.request(d, "request.access", "demo-002",
                              subject={"huawei_id": "demo-002", "email": "demo-002@mail.example"})
        self.finish(before)
        counts = self.keys_status()
        self.assertGreater(counts.get(key_id(self.old), 0), 5, counts)
        d.stop()

        # The new master key encrypts; the old one only decrypts; the blind
        # index stays derived from the old one (or every lookup would change).
        new = os.urandom(32)
        with open(os.path.join(self.keys, "data-new.key"), "wb") as f:
            f.write(new)
        self.rewrite_keys(["data_key_file: var/keys/data-new.key", "previous_key_files: [var/keys/data.key]",
                           "index_key_file: var/keys/data.key"])
        d = self.start()

        # Load while rotating: webhooks arrive and requests run.
        stop = threading.Event()
        sent = []

        def load():
            n = 0
            while not stop.is_set() and n < 200:
                subject = ["demo-003", "demo-005", f"load-{n}"][n % 3]
                sent.append(self.request(d, "request.access", subject,
                                         subject={"huawei_id": subject, "email": f"s{n}@mail.example"}))
                n += 1
        loader = threading.Thread(target=load)
        loader.start()
        try:
            paused = run(["keys", "rotate", "--config", self.config, "--batch", "2", "--max-batches", "2"])
            self.assertEqual(paused.returncode, 0, paused.stdout + paused.stderr)
            self.assertIn("rotation paused: 4 value(s)", paused.stdout)
            self.assertGreater(self.keys_status().get(key_id(self.old), 0), 0, "an interrupted rotation leaves some")
            done = run(["keys", "rotate", "--config", self.config, "--batch", "3"])
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            self.assertIn("rotation complete", done.stdout)
            self.assertRegex(done.stderr, r"rotated \d+ \(")  # progress on stderr
        finally:
            stop.set()
            loader.join()
        self.assertGreater(len(sent), 0)
        for rid in sent:
            self.finish(rid)
        counts = self.keys_status()
        self.assertNotIn(key_id(self.old), counts, counts)
        self.assertGreater(counts.get(key_id(new), 0), 0, counts)
        d.stop()

        # The old key is no longer an encryption key anywhere: only the blind
        # index is derived from its file. Everything still opens.
        self.rewrite_keys(["data_key_file: var/keys/data-new.key", "index_key_file: var/keys/data.key"])
        d = self.start()
        r = run(["export", "--config", self.config, before])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("alex.morgan@demo.example", r.stdout)
        again = self.request(d, "request.access", "demo-002")
        self.finish(again)
        r = run(["export", "--config", self.config, again])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"huawei_id":"demo-002"', r.stdout)
        self.assertEqual(self.keys_status().get(key_id(self.old)), None)


if __name__ == "__main__":
    unittest.main()
