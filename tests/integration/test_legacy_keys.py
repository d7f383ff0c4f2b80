"""SPEC §14's migration: data sealed before subject keys (under the master
key alone) is moved under keys of its own by the running daemon, online, so
that shredding reaches it too.

A subject of the demo is turned into one from before subject keys while
privacyd is stopped (every value of its own opened with its key and sealed
again under the master key, as privacyd sealed them then; its key forgotten).
Then privacyd starts, moves it, and a later deletion shreds it: a copy of the
database taken after the move, opened with the keys as they are after the
deletion, yields nothing of it.
"""
import base64
import os
import unittest

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from harness import Daemon, run, wait_for
from test_shredding import GONE, KEPT, SEALED, Opener, OnItsOwnPostgres, OnSqlite, Shredding, decrypt, key_id

# Where a subject's own values are, the column that finds each row, and the
# context each is sealed with.
OWN = [("subjects", "id", "huawei_id_enc", "subjects.huawei_id", "id = '{sid}'"),
       ("subjects", "id", "contact_enc", "subjects.contact", "id = '{sid}'"),
       ("request_data", "request_id || '/' || step_id", "data_enc", "request_data.data",
        "request_id IN (SELECT id FROM requests WHERE subject_id = '{sid}')"),
       ("exports", "request_id", "package_enc", "exports.package",
        "request_id IN (SELECT id FROM requests WHERE subject_id = '{sid}')"),
       ("notices", "id", "payload_enc", "notices.payload",
        "request_id IN (SELECT id FROM requests WHERE subject_id = '{sid}')")]


class Legacy(Shredding):
    RETENTION = "retention: { collected: 1h }\n"  # what was collected stays, to be moved

    def own_values(self, sid):
        """[(table, row key, column, context, value)] of every sealed value of the subject's own."""
        out = []
        for table, key, column, context, where in OWN:
            for row_key, value in self.main(f"SELECT {key}, {column} FROM {table} WHERE {where.format(sid=sid)}"
                                            f" AND {column} <> ''"):
                if value:
                    out.append((table, key, column, context, row_key, value))
        return out

    def make_legacy(self, sid, tables=None):
        """As privacyd sealed the subject before subject keys: everything (or
        what is in `tables`) under the master key; the key forgotten, unless
        only some tables were asked for (a subject an older intake gave a key)."""
        key = self.main(f"SELECT key_id FROM subjects WHERE id = '{sid}'")[0][0]
        subject_key = Opener(self.master, self.key_rows()).subject[key]
        moved = 0
        for table, row_col, column, context, row_key, value in self.own_values(sid):
            if tables and table not in tables:
                continue
            m = SEALED.fullmatch(value.encode())
            self.assertTrue(m and m.group(1) == b"s1" and m.group(2).decode() == key, f"{table}.{column}")
            plain = decrypt(subject_key, m.group(3), context)
            self.assertIsNotNone(plain)
            nonce = os.urandom(12)
            sealed = "v1.%s.%s" % (key_id(self.master), base64.b64encode(
                nonce + AESGCM(self.master).encrypt(nonce, plain, context.encode())).decode())
            self.change(f"UPDATE {table} SET {column} = '{sealed}' WHERE {row_col} = '{row_key}'")
            moved += 1
        if not tables:
            self.change(f"UPDATE subjects SET key_id = NULL WHERE id = '{sid}'")
            self.forget_key(key)  # there were no subject keys then
        return key, moved

    def test_a_subject_from_before_subject_keys_moves_under_its_own_and_is_shredded_like_any(self):
        for subject in ("demo-001", "demo-002"):
            self.finish(self.request("request.access", subject,
                                     subject={"huawei_id": subject, "email": f"{subject}@mail.example"}))
        sid, kept = [r[0] for r in self.main("SELECT subject_id FROM requests WHERE type = 'access'"
                                             " ORDER BY received_at")]
        self.assertEqual(self.d.stop(), 0)
        _, moved = self.make_legacy(sid)
        # The other kept its key, but what was collected for it is under the master key.
        kept_key, stragglers = self.make_legacy(kept, tables=("request_data", "exports"))
        self.assertGreaterEqual(stragglers, 2)
        self.assertGreaterEqual(moved, 5, "the identifier, the contact, what was collected, the package, notices")
        found, opened = Opener(self.master, self.key_rows()).open_all(self.snapshot())
        self.assertTrue(any(b"lin.wei@demo.example" in p for p in opened), "the master key alone opens the subject")
        r = run(["keys", "status", "--config", self.config])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("subjects still sealed under the master key (privacyd serve moves them under keys of their"
                      " own): 1", r.stdout)

        # privacyd starts again, and moves it.
        self.d = Daemon(self.config)
        self.addCleanup(self.d.kill)
        self.d.wait_ready()
        new_key = wait_for(lambda: self.main(f"SELECT key_id FROM subjects WHERE id = '{sid}'")[0][0],
                           timeout=30, what="the subject to get a key of its own")
        self.assertIn(new_key, [k for k, _ in self.key_rows()])
        values = self.own_values(sid)
        self.assertEqual(len(values), moved)
        for table, _, column, _, _, value in values:
            self.assertTrue(value.startswith(f"s1.{new_key}."), f"{table}.{column} is under the subject's key")
        wait_for(lambda: all(v.startswith(f"s1.{kept_key}.") for *_, v in self.own_values(kept)), timeout=30,
                 what="the keyed subject's stragglers to be sealed again under its key")
        self.assertEqual(self.main(f"SELECT key_id FROM subjects WHERE id = '{kept}'")[0][0], kept_key)
        self.assertEqual(len(self.main("SELECT detail FROM audit_log WHERE event = 'subject.resealed'")), 1)
        audit = self.main("SELECT detail FROM audit_log WHERE event = 'subject_key.assigned'")
        self.assertEqual(len(audit), 1)
        self.assertIn(sid, audit[0][0])
        self.assertIn(f'"values":{moved}', audit[0][0])
        r = run(["keys", "status", "--config", self.config])
        self.assertNotIn("subjects still sealed", r.stdout)
        # What was moved still opens: the access package, through privacyd.
        rid = self.main(f"SELECT id FROM requests WHERE subject_id = '{sid}' AND type = 'access'")[0][0]
        r = run(["export", "--config", self.config, rid])
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("lin.wei@demo.example", r.stdout)

        # Shredded like any subject: the backup property, from a copy taken after the move.
        backup = self.snapshot()
        self.finish(self.request("request.deletion", "demo-001"))
        wait_for(lambda: new_key not in [k for k, _ in self.key_rows()], timeout=60,
                 what="the key to be destroyed once the hold has erased")
        found, opened = Opener(self.master, self.key_rows()).open_all(backup)
        self.assertGreater(found, 10)
        for plain in opened:
            for gone in GONE:
                self.assertNotIn(gone, plain, "the backup still opens to the deleted subject's data")
        self.assertTrue(any(KEPT in p for p in opened), "another subject's data still opens (the method works)")


class LegacyOnSqlite(OnSqlite, Legacy, unittest.TestCase):
    def change(self, sql):
        import sqlite3
        db = sqlite3.connect(self.db_path(), timeout=10)
        try:
            with db:
                self.assertEqual(db.execute(sql).rowcount, 1, sql)
        finally:
            db.close()

    def forget_key(self, key):
        import sqlite3
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "keys", "subject-keys.db"), timeout=10)
        try:
            with db:
                db.execute("DELETE FROM subject_keys WHERE id = ?", (key,))
        finally:
            db.close()


class LegacyOnPostgres(OnItsOwnPostgres, Legacy, unittest.TestCase):
    def change(self, sql):
        self.assertIn("UPDATE 1", self.pg.psql(sql, dbname=self.dbname))

    def forget_key(self, key):
        self.pg.psql(f"DELETE FROM subject_keys WHERE id = '{key}'", dbname=self.keys_db)


if __name__ == "__main__":
    unittest.main()
