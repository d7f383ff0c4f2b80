"""SPEC §14: master key rotation, on SQLite and on PostgreSQL (there the
main database and the key store each a database of its own).
`privacyd keys rotate` re-seals everything the master key protects under
the current one — online, while webhooks
arrive and requests run — in batches it can stop and resume; `keys status`
counts what each key id still protects; once the old key's count is zero it
can be removed and everything still opens."""
import os
import re
import threading
import unittest

from harness import Daemon, run, wait_for
from test_shredding import OnItsOwnPostgres, OnSqlite, Shredding, key_id


def status_counts(text):
    """{key id: total} from `keys status`."""
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^([0-9a-f]{12})(?: \(current\))?: (\d+)$", text, re.M)}


class KeyRotation(Shredding):
    """Rotation needs no retention hold to wait for."""

    def start(self):
        d = Daemon(self.config)
        self.addCleanup(d.kill)
        d.wait_ready()
        return d

    def request_on(self, d, kind, huawei_id, **more):
        self.d = d
        return self.request(kind, huawei_id, **more)

    def rewrite_keys(self, lines):
        with open(self.config) as f:
            text = f.read()
        store = self.key_store_line()
        text = re.sub(r"keys:\n(  .*\n)+", "keys:\n" + "".join(f"  {l}\n" for l in lines) + store, text)
        with open(self.config, "w") as f:
            f.write(text)

    def keys_status(self):
        r = run(["keys", "status", "--config", self.config])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        return status_counts(r.stdout)

    def test_rotation_under_load_then_the_old_key_goes(self):
        self.keys = os.path.join(self.dir.name, "var", "keys")
        self.old = self.master
        d = self.d
        before = self.request_on(d, "request.access", "demo-002",
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

        # Load while rotating: webhooks arrive and requests run, from before
        # the rotation starts (and between its interrupted and resumed runs).
        stop = threading.Event()
        sent = []

        def load():
            n = 0
            while not stop.is_set() and n < 300:
                subject = ["demo-003", "demo-005", f"load-{n}"][n % 3]
                sent.append(self.request_on(d, "request.access", subject,
                                            subject={"huawei_id": subject, "email": f"s{n}@mail.example"}))
                n += 1
        loader = threading.Thread(target=load)
        loader.start()
        try:
            wait_for(lambda: len(sent) >= 20, timeout=30, what="load to be under way")
            paused = run(["keys", "rotate", "--config", self.config, "--batch", "2", "--max-batches", "2"])
            self.assertEqual(paused.returncode, 0, paused.stdout + paused.stderr)
            self.assertIn("rotation paused: 4 value(s)", paused.stdout)
            self.assertGreater(self.keys_status().get(key_id(self.old), 0), 0, "an interrupted rotation leaves some")
            # Between the two runs, for certain: new subjects and requests, sealed under the new key.
            for n in range(3):
                self.finish(self.request_on(d, "request.access", f"between-{n}",
                                            subject={"huawei_id": f"between-{n}", "email": f"b{n}@mail.example"}))
            done = run(["keys", "rotate", "--config", self.config, "--batch", "3"])
            self.assertEqual(done.returncode, 0, done.stdout + done.stderr)
            self.assertIn("rotation complete", done.stdout)
            self.assertRegex(done.stderr, r"rotated \d+ \(")  # progress on stderr
        finally:
            stop.set()
            loader.join()
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
        again = self.request_on(d, "request.access", "demo-002")
        self.finish(again)
        r = run(["export", "--config", self.config, again])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"huawei_id":"demo-002"', r.stdout)
        self.assertEqual(self.keys_status().get(key_id(self.old)), None)


class KeyRotationOnSqlite(OnSqlite, KeyRotation, unittest.TestCase):
    pass


class KeyRotationOnPostgres(OnItsOwnPostgres, KeyRotation, unittest.TestCase):
    pass


if __name__ == "__main__":
    unittest.main()
