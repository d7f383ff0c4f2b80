"""SPEC §14: what privacyd itself keeps. Each subject's data is sealed under a
key of its own, kept wrapped in a key store apart from the main database;
when a deletion completes (and nothing pending needs the key) privacyd
erases its own copies and destroys the key. The proof is the backup
property: a copy of the main database taken before the deletion, opened
with the master key and the key store as they are after it, yields nothing
of that subject, while it still yields another subject's data.

The copy is opened by this test's own AES-256-GCM code (Debian's
python3-cryptography), trying every key the stores hold on every sealed
value the copy holds: no flag is read.
"""
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import sqlite3
import subprocess
import tempfile
import unittest

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from harness import (OnPostgres, Daemon, Receiver, demo_setup, new_secret, run, use_policies, wait_for,
                     write_config, write_secrets)

ENGINE = "engine: { lease: 2s, poll: 100ms }\n"
CONTEXTS = ["subjects.huawei_id", "subjects.contact", "request_data.data", "exports.package", "exports.token",
            "notices.payload", "notices.ack_note"]
SEALED = re.compile(rb"(v1|s1)\.([A-Za-z0-9_]+)\.([A-Za-z0-9+/]+={0,2})")
# demo-001 (deleted) and demo-002 (kept), as `privacyd demo` creates them.
GONE = [b"demo-001", b"lin.wei@demo.example", b"Lin Wei", b"+86 138 0000 0001"]
KEPT = b"alex.morgan@demo.example"


def key_id(key):
    return hmac.new(key, b"privacyd/key-id/v1", hashlib.sha256).hexdigest()[:12]


def decrypt(key, b64, context):
    """In a database file's raw pages a value may run on into the next
    column's bytes: try the longest whole base64 prefixes (GCM's tag tells
    the right one)."""
    end = len(b64) - len(b64) % 4
    for cut in range(end, max(end - 64, 27), -4):
        try:
            raw = base64.b64decode(b64[:cut], validate=True)
            return AESGCM(key).decrypt(raw[:12], raw[12:], context.encode())
        except Exception:
            continue
    return None


class Opener:
    """Everything a master key and a key store (as rows of id, wrapped) can
    open: subject keys unwrapped, then any sealed value."""

    def __init__(self, master, key_rows):
        self.master = {key_id(master): master}
        self.subject = {}
        for kid, wrapped in key_rows:
            m = SEALED.fullmatch(wrapped.encode())
            self.assert_(m and m.group(1) == b"v1", "a wrapped key is sealed under the master key")
            plain = decrypt(self.master.get(m.group(2).decode(), b"\0" * 32), m.group(3), f"subject_keys:{kid}")
            if plain is not None:
                self.subject[kid] = plain

    @staticmethod
    def assert_(cond, what):
        if not cond:
            raise AssertionError(what)

    def open_all(self, blob):
        """(how many sealed values `blob` holds, every plaintext they open to)."""
        found, opened = 0, []
        for m in SEALED.finditer(blob):
            found += 1
            kind, kid, b64 = m.group(1), m.group(2).decode(), m.group(3)
            key = (self.master if kind == b"v1" else self.subject).get(kid)
            if key is None:
                continue
            for context in CONTEXTS:
                plain = decrypt(key, b64, context)
                if plain is not None:
                    opened.append(plain)
                    break
        return found, opened


class Shredding:
    """Subclasses say where privacyd's database and key store are."""

    def privacyd_database(self):
        return None  # SQLite under var/

    def key_store_line(self):
        return ""

    RETENTION = ""  # privacyd's own retention: the defaults

    def snapshot(self):
        raise NotImplementedError

    def current(self):
        raise NotImplementedError

    def key_rows(self):
        raise NotImplementedError

    def main(self, sql):
        raise NotImplementedError

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.partner_secret = new_secret()
        self.partners = Receiver(self.partner_secret)
        self.addCleanup(self.partners.close)
        policies = demo_setup(self.dir.name, self.partners.url, self.partner_secret,
                              replace={"hold: 3y": "hold: 10s"})  # the held category keeps the key this long
        self.secret = new_secret()
        self.config = write_config(self.dir.name, database=self.privacyd_database(), extra=ENGINE + self.RETENTION)
        if "deliveries" in self.RETENTION:  # they must outlive twice the signature tolerance: make that short too
            with open(self.config) as f:
                text = f.read()
            with open(self.config, "w") as f:
                f.write(text.replace("  secrets_file: var/keys/webhook-secrets\n",
                                     "  secrets_file: var/keys/webhook-secrets\n  tolerance: 2s\n"))
        if self.key_store_line():  # inside keys:, after the data key
            with open(self.config) as f:
                text = f.read()
            with open(self.config, "w") as f:
                f.write(text.replace("  data_key_file: var/keys/data.key\n",
                                     "  data_key_file: var/keys/data.key\n" + self.key_store_line()))
        use_policies(self.config, policies)
        write_secrets(self.dir.name, [self.secret])
        r = run(["demo", "--config", self.config])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.d = Daemon(self.config)
        self.addCleanup(self.d.kill)
        self.d.wait_ready()
        with open(os.path.join(self.dir.name, "var", "keys", "data.key"), "rb") as f:
            self.master = f.read()

    def request(self, kind, huawei_id, **more):
        body = {"type": kind, "occurred_at": "2026-11-26T05:00:00Z", "subject": {"huawei_id": huawei_id}, **more}
        status, resp = self.d.webhook(body, self.secret)
        self.assertEqual(status, 202, resp)
        return resp.get("request_id") or resp.get("event_id")

    def finish(self, rid):
        wait_for(lambda: self.main(f"SELECT status FROM requests WHERE id = '{rid}'")[0][0] in
                 ("completed", "failed", "rejected"), timeout=60, what=f"{rid} to finish")
        self.assertEqual(self.main(f"SELECT status FROM requests WHERE id = '{rid}'")[0][0], "completed")

    def subject_of(self, rid):
        return self.main(f"SELECT subject_id FROM requests WHERE id = '{rid}'")[0][0]


class Backups(Shredding):
    # What was collected stays until the subject is shredded: with the
    # default (erased as soon as the package is stored) the follow-up loop
    # raced the backup, which then held two sealed values fewer or not (CI
    # saw 10 where 12 are written). Shredding must erase it all the same.
    RETENTION = "retention: { collected: 1h }\n"

    def test_a_backup_from_before_the_deletion_yields_nothing_of_the_subject(self):
        for subject in ("demo-001", "demo-002"):
            self.finish(self.request("request.access", subject,
                                     subject={"huawei_id": subject, "email": f"{subject}@mail.example",
                                              "name": "Lin Wei" if subject == "demo-001" else "Alex Morgan",
                                              "locale": "zh-CN"}))
        backup = self.snapshot()
        found, opened = Opener(self.master, self.key_rows()).open_all(backup)
        self.assertGreater(found, 10)
        self.assertTrue(any(b"lin.wei@demo.example" in p for p in opened), "the backup holds the subject, sealed")

        sid = self.main("SELECT subject_id FROM requests WHERE type = 'access' ORDER BY received_at LIMIT 1")[0][0]
        key = self.main(f"SELECT key_id FROM subjects WHERE id = '{sid}'")[0][0]
        self.assertTrue(key and key.startswith("sk_"), key)
        wrapped = dict(self.key_rows())[key]
        rid = self.request("request.deletion", "demo-001")
        self.finish(rid)
        self.assertEqual(self.subject_of(rid), sid)

        # Once its notices are out, privacyd's own copies are erased and the key is doomed…
        wait_for(lambda: self.main(f"SELECT shredded_at FROM subjects WHERE id = '{sid}'")[0][0] is not None,
                 timeout=60, what="the subject's copies to be erased")
        of_subject = f"(SELECT id FROM requests WHERE subject_id = '{sid}')"
        self.assertEqual(self.main(f"SELECT COUNT(*) FROM request_data WHERE request_id IN {of_subject}")[0][0], 0)
        self.assertEqual(self.main(f"SELECT COUNT(*) FROM exports WHERE request_id IN {of_subject}"
                                   " AND package_enc <> ''")[0][0], 0)
        self.assertEqual(self.main(f"SELECT COUNT(*) FROM notices WHERE request_id IN {of_subject}"
                                   " AND payload_enc <> ''")[0][0], 0)
        self.assertEqual(self.main(f"SELECT key_id, contact_enc, locale FROM subjects WHERE id = '{sid}'")[0],
                         (None, None, None))
        # …but the certificates hold (10s) still needs the identifier sealed under it: the key waits for it.
        if self.main(f"SELECT COUNT(*) FROM retention_holds WHERE subject_id = '{sid}' AND status = 'held'")[0][0]:
            self.assertIn(key, [k for k, _ in self.key_rows()], "the key outlives the erasure while a hold needs it")
        self.assertEqual(self.main(f"SELECT COUNT(*) FROM retention_holds WHERE subject_id = '{sid}'")[0][0], 1)

        wait_for(lambda: key not in [k for k, _ in self.key_rows()], timeout=60,
                 what="the key to be destroyed once the hold has erased")
        self.assertEqual(self.main(f"SELECT status FROM retention_holds WHERE subject_id = '{sid}'")[0][0], "erased")
        # The key store first, then the main database forgets the doomed key
        # (a crash between them destroys it again, harmlessly): the row goes
        # just after the key.
        wait_for(lambda: self.main(f"SELECT COUNT(*) FROM doomed_keys WHERE subject_id = '{sid}'")[0][0] == 0,
                 what="the doomed key's row to go after the key")
        self.assertEqual(self.main(f"SELECT huawei_id_enc, contact_enc FROM subjects WHERE id = '{sid}'")[0],
                         ("", None) if isinstance(self, OnSqlite) else (None, None))
        # And the key store's own files no longer hold the wrapped key.
        self.assertNotIn(wrapped.encode(), self.key_store_bytes())

        # The backup property: the old copy, the keys as they are now.
        opener = Opener(self.master, self.key_rows())
        found, opened = opener.open_all(backup)
        self.assertGreater(found, 10)
        for plain in opened:
            for gone in GONE:
                self.assertNotIn(gone, plain, "the backup still opens to the deleted subject's data")
        self.assertTrue(any(KEPT in p for p in opened), "another subject's data still opens (the method works)")
        # And the database as it is now holds nothing of it, sealed or not.
        now = self.current()
        for gone in GONE:
            self.assertNotIn(gone, now)
        _, opened_now = opener.open_all(now)
        for plain in opened_now:
            for gone in GONE:
                self.assertNotIn(gone, plain)
        for event in ("subject.shredded", "subject_key.destroyed"):
            audit = self.main(f"SELECT detail FROM audit_log WHERE event = '{event}'")
            self.assertEqual(len(audit), 1, event)
            self.assertIn(sid, audit[0][0])

        # The same HUAWEI ID comes back: a new key, and requests work again.
        self.request("association.created", "demo-001", partner={"id": "P-1001"}, statement_version="1.0")
        new_key = wait_for(lambda: self.main(f"SELECT key_id FROM subjects WHERE id = '{sid}'")[0][0],
                           what="a new key for the returning subject")
        self.assertNotEqual(new_key, key)
        again = self.request("request.access", "demo-001")
        self.finish(again)



class OwnRetention(Shredding):
    # Short enough to watch (deliveries must outlive the signature
    # tolerance, so that is short too).
    RETENTION = "retention: { deliveries: 4s, notice_payloads: 1s, collected: 0s }\n"

    def test_privacyd_keeps_its_own_copies_only_as_long_as_configured(self):
        body = {"type": "request.access", "occurred_at": "2026-11-26T05:00:00Z",
                "subject": {"huawei_id": "demo-002", "email": "demo-002@mail.example"}}
        status, first = self.d.webhook(body, self.secret, msg_id="msg_kept_then_swept")
        self.assertEqual(status, 202, first)
        rid = first["request_id"]
        self.finish(rid)
        webhook_id = self.main(f"SELECT webhook_id FROM requests WHERE id = '{rid}'")[0][0]
        # collected: 0s — gone once the package step has committed; the package stays.
        wait_for(lambda: self.main(f"SELECT COUNT(*) FROM request_data WHERE request_id = '{rid}'")[0][0] == 0,
                 timeout=30, what="the collected data to be erased")
        self.assertEqual(self.main(f"SELECT COUNT(*) FROM exports WHERE request_id = '{rid}' AND package_enc <> ''")
                         [0][0], 1)
        r = run(["export", "--config", self.config, rid])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("alex.morgan@demo.example", r.stdout)
        # notice_payloads: 1s after delivery; the notice itself (id, status, times) stays.
        wait_for(lambda: self.main(f"SELECT COUNT(*) FROM notices WHERE request_id = '{rid}' AND payload_enc <> ''")
                 [0][0] == 0, timeout=30, what="the delivered notices' payloads to be erased")
        self.assertGreaterEqual(self.main(f"SELECT COUNT(*) FROM notices WHERE request_id = '{rid}'"
                                          " AND status = 'delivered'")[0][0], 1)
        # deliveries: 4s — the stored answer goes; the request stays.
        wait_for(lambda: self.main(f"SELECT COUNT(*) FROM webhook_deliveries WHERE webhook_id = '{webhook_id}'")
                 [0][0] == 0, timeout=30, what="the stored webhook answer to be erased")
        self.assertEqual(self.main(f"SELECT status FROM requests WHERE id = '{rid}'")[0][0], "completed")
        # A retry of that webhook after its answer was swept (Standard Webhooks
        # retries re-sign with a fresh timestamp) gets the same answer, and
        # stores nothing again.
        status, again = self.d.webhook(body, self.secret, msg_id="msg_kept_then_swept")
        self.assertEqual((status, again), (202, first))
        self.assertEqual(self.main("SELECT COUNT(*) FROM requests WHERE webhook_id = 'msg_kept_then_swept'")[0][0], 1)
        swept = [json.loads(d) for (d,) in self.main("SELECT detail FROM audit_log WHERE event = 'retention.swept'")]
        self.assertTrue(swept, "each sweep is audited")
        for kind in ("collected", "notice_payloads", "deliveries"):
            self.assertGreaterEqual(sum(s[kind] for s in swept), 1, f"something {kind} was there to erase")
        r = run(["audit", "verify", "--config", self.config])
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)


class OnSqlite:
    def db_path(self):
        return os.path.join(self.dir.name, "var", "privacyd.db")

    def main(self, sql):
        db = sqlite3.connect(self.db_path(), timeout=10)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    def snapshot(self):
        # SQLite's online backup: the file as a backup tool would copy it.
        copy = os.path.join(self.dir.name, "backup.db")
        src = sqlite3.connect(self.db_path(), timeout=10)
        dst = sqlite3.connect(copy)
        with dst:
            src.backup(dst)
        src.close()
        dst.close()
        with open(copy, "rb") as f:
            return f.read()

    def current(self):
        out = b""
        for name in os.listdir(os.path.join(self.dir.name, "var")):
            if name.startswith("privacyd.db"):
                with open(os.path.join(self.dir.name, "var", name), "rb") as f:
                    out += f.read()
        return out

    def key_store_bytes(self):
        out = b""
        folder = os.path.join(self.dir.name, "var", "keys")
        for name in os.listdir(folder):
            if name.startswith("subject-keys.db"):
                with open(os.path.join(folder, name), "rb") as f:
                    out += f.read()
        return out

    def key_rows(self):
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "keys", "subject-keys.db"), timeout=10)
        try:
            return db.execute("SELECT id, wrapped FROM subject_keys").fetchall()
        finally:
            db.close()


class OnItsOwnPostgres(OnPostgres):
    """privacyd's database and its key store each a database of their own."""

    def setUp(self):
        self.dsn = self.database()
        self.keys_db = self.dbname + "_keys"
        self.pg.psql(f"CREATE DATABASE {self.keys_db}")
        super().setUp()

    def privacyd_database(self):
        return self.dsn

    def key_store_line(self):
        return f'  store: "{self.pg.dsn(self.keys_db)}"\n'

    def main(self, sql):
        out = self.pg.psql(sql, dbname=self.dbname)  # -At: one line per row, even a row of one NULL
        rows = []
        for line in out.split("\n")[:-1]:
            rows.append(tuple(None if v == "" else (int(v) if v.isdigit() else v) for v in line.split("|")))
        return rows

    def snapshot(self):
        dump = self.pg.dump(self.dbname)  # pg_dump: what a backup holds
        return dump.encode() if isinstance(dump, str) else dump

    def current(self):
        return self.snapshot()

    def key_store_bytes(self):
        return self.pg.dump(self.keys_db)

    def key_rows(self):
        out = self.pg.psql("SELECT id || '|' || wrapped FROM subject_keys", dbname=self.keys_db).strip()
        return [tuple(line.split("|", 1)) for line in out.split("\n")] if out else []


class BackupsOnSqlite(OnSqlite, Backups, unittest.TestCase):
    pass


class BackupsOnPostgres(OnItsOwnPostgres, Backups, unittest.TestCase):
    pass


class OwnRetentionOnSqlite(OnSqlite, OwnRetention, unittest.TestCase):
    pass


class OwnRetentionOnPostgres(OnItsOwnPostgres, OwnRetention, unittest.TestCase):
    pass


if __name__ == "__main__":
    unittest.main()
