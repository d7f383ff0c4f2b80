"""Signed receipts (SPEC §16), through the real binary on SQLite and on
PostgreSQL: a finished request's receipt states what was done, verifies with
`privacyd receipt verify` and with an independent Ed25519 verifier (Python's
cryptography), stops verifying when one byte changes, and carries the
request's audit hashes as the chain holds them."""
import base64
import hashlib
import json
import os
import subprocess
import unittest

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

from harness import OnPostgres, run, wait_for
from test_admin import AdminSetup


def canonical(receipt):
    """The serialisation the README documents, written independently."""
    return json.dumps(receipt, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


class Receipts(AdminSetup):
    def prepare_config(self, config):
        key = os.path.join(self.dir.name, "var", "keys", "receipt.pem")
        subprocess.run(["openssl", "genpkey", "-algorithm", "ed25519", "-out", key], check=True, capture_output=True)
        with open(config) as f:
            text = f.read()
        with open(config, "w") as f:
            f.write(text.replace("  data_key_file: var/keys/data.key\n",
                                 "  data_key_file: var/keys/data.key\n  receipt_key_file: var/keys/receipt.pem\n"))

    def call(self, path, token="watcher"):
        headers = {"Authorization": "Bearer " + self.tokens.get(token, token)} if token else {}
        status, resp_headers, raw = self.d.request("GET", path, headers=headers, listener="admin")
        return status, raw, resp_headers

    def status(self, rid):
        status, raw, _ = self.call(f"/v1/requests/{rid}")
        self.assertEqual(status, 200, raw)
        return json.loads(raw)["status"]

    def finish(self, rid):
        wait_for(lambda: self.status(rid) in ("completed", "rejected", "failed"), timeout=60, what=f"{rid} to finish")
        return self.status(rid)

    def receipt(self, rid):
        status, raw, _ = self.call(f"/v1/requests/{rid}/receipt")
        self.assertEqual(status, 200, raw)
        path = os.path.join(self.dir.name, f"{rid}.receipt.json")
        with open(path, "wb") as f:
            f.write(raw)
        return json.loads(raw), path

    def cli_verify(self, path):
        return run(["receipt", "verify", path, "--public-key", self.public_key_file])

    def python_verify(self, doc):
        key = load_pem_public_key(self.public_key)
        raw = key.public_bytes(Encoding.Raw, PublicFormat.Raw)
        self.assertEqual(doc["signature"]["key_id"], hashlib.sha256(raw).hexdigest())
        key.verify(base64.b64decode(doc["signature"]["value"], validate=True), canonical(doc["receipt"]))

    def test_a_finished_requests_receipt_verifies_with_two_tools_and_states_what_was_done(self):
        status, raw, headers = self.call("/v1/receipts/public-key")
        self.assertEqual(status, 200, raw)
        self.assertTrue(raw.startswith(b"-----BEGIN PUBLIC KEY-----"), raw)
        self.public_key = raw
        self.public_key_file = os.path.join(self.dir.name, "receipt-public.pem")
        with open(self.public_key_file, "wb") as f:
            f.write(raw)

        # Deletion waits for an operator here: not finished, no receipt.
        deletion = self.submit("request.deletion", "demo-002")
        wait_for(lambda: self.status(deletion) == "awaiting_approval", what="the deletion to wait for approval")
        status, raw, _ = self.call(f"/v1/requests/{deletion}/receipt")
        self.assertEqual((status, json.loads(raw)["error"]["code"]), (409, "not_finished"))
        s, _, _ = self.d.request("POST", f"/v1/requests/{deletion}/approve", body=b"{}",
                                 headers={"Authorization": "Bearer " + self.tokens["ops"],
                                          "Content-Type": "application/json"}, listener="admin")
        self.assertEqual(s, 200)
        disassociation = self.submit("request.disassociation", "demo-001", partner="P-1001")
        access = self.submit("request.access", "demo-003")
        for rid in (deletion, disassociation, access):
            self.assertEqual(self.finish(rid), "completed")

        for rid, statement in ((deletion, "erase"), (disassociation, "unlink"), (access, "access")):
            with self.subTest(request=rid):
                doc, path = self.receipt(rid)
                r = doc["receipt"]
                self.assertEqual(r["request"]["id"], rid)
                self.assertEqual(r["request"]["status"], "completed")
                # What was done, per system and category, with the rows.
                kinds = [e for e in r["effects"] if e["statement"] == statement]
                self.assertTrue(kinds, r["effects"])
                self.assertTrue(any(e["rows"] > 0 for e in kinds), kinds)
                self.assertTrue(all(e["system"] for e in kinds if statement != "unlink"), kinds)
                # Verifies with privacyd and with another implementation.
                r_cli = self.cli_verify(path)
                self.assertEqual(r_cli.returncode, 0, r_cli.stdout + r_cli.stderr)
                self.assertIn("receipt valid", r_cli.stdout)
                self.python_verify(doc)
                # One changed byte, and neither accepts it.
                with open(path, "rb") as f:
                    text = f.read()
                head = r["audit"]["chain_head"]["hash"].encode()
                flipped = head[:10] + (b"0" if head[10:11] != b"0" else b"1") + head[11:]
                tampered = text.replace(head, flipped, 1)
                self.assertNotEqual(tampered, text)
                bad = path + ".tampered"
                with open(bad, "wb") as f:
                    f.write(tampered)
                r_cli = self.cli_verify(bad)
                self.assertEqual(r_cli.returncode, 1, r_cli.stdout)
                self.assertIn("not valid", r_cli.stdout)
                with self.assertRaises(InvalidSignature):
                    self.python_verify(json.loads(tampered))
                # The audit hashes are the chain's, and the chain is intact.
                self.assertEqual([(e["seq"], e["event"], e["hash"]) for e in r["audit"]["entries"]],
                                 self.audit_rows(rid))
                head = r["audit"]["chain_head"]
                self.assertLessEqual(r["audit"]["entries"][-1]["seq"], head["seq"])
                self.assertEqual(self.audit_hash(head["seq"]), head["hash"], "the head is the chain's entry")
                verified = run(["audit", "verify", "--config", self.config])
                self.assertEqual(verified.returncode, 0, verified.stdout + verified.stderr)
                # Nothing personal in it.
                for person in ("demo-001", "demo-002", "demo-003", "@demo.example"):
                    self.assertNotIn(person, json.dumps(doc))

        # privacyd's own copies: shredded once the deletion's notices are out.
        own = self.receipt(deletion)[0]["receipt"]["own_copies"]
        self.assertTrue(own["shredded"] or own["shredding_pending"], own)
        wait_for(lambda: self.receipt(deletion)[0]["receipt"]["own_copies"]["shredded"], timeout=60,
                 what="the receipt to say the subject's copies were shredded")
        self.assertIsNotNone(self.receipt(deletion)[0]["receipt"]["own_copies"]["shredded_at"])
        self.assertFalse(self.receipt(access)[0]["receipt"]["own_copies"]["shredded"])
        partner_notices = [n for n in self.receipt(disassociation)[0]["receipt"]["notices"] if n["channel"] == "partner"]
        self.assertEqual([n["recipient"] for n in partner_notices], ["P-1001"])
        self.assertIsNotNone(partner_notices[0]["delivered_at"])

    def test_the_receipt_endpoints_need_a_token_and_know_only_real_requests(self):
        for path in ("/v1/receipts/public-key", "/v1/requests/req_00000000000000000000000000/receipt"):
            with self.subTest(path=path):
                self.assertEqual(self.call(path, token=None)[0], 401)
                self.assertEqual(self.call(path, token="x" * 32)[0], 401)
        self.assertEqual(self.call("/v1/requests/req_00000000000000000000000000/receipt")[0], 404)


class ReceiptsOnSqlite(Receipts, unittest.TestCase):
    def audit_hash(self, seq):
        import sqlite3
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "privacyd.db"))
        try:
            return db.execute("SELECT hash FROM audit_log WHERE seq = ?", (seq,)).fetchone()[0]
        finally:
            db.close()

    def audit_rows(self, rid):
        import sqlite3
        db = sqlite3.connect(os.path.join(self.dir.name, "var", "privacyd.db"))
        try:
            return [tuple(r) for r in db.execute("SELECT seq, event, hash FROM audit_log WHERE request_id = ?"
                                                 " ORDER BY seq", (rid,))]
        finally:
            db.close()


class ReceiptsOnPostgres(OnPostgres, Receipts, unittest.TestCase):
    def database_url(self):
        return self.database()

    def audit_hash(self, seq):
        return self.pg.psql(f"SELECT hash FROM audit_log WHERE seq = {int(seq)}", dbname=self.dbname).strip()

    def audit_rows(self, rid):
        out = self.pg.psql(f"SELECT seq, event, hash FROM audit_log WHERE request_id = '{rid}' ORDER BY seq",
                           dbname=self.dbname)
        return [(int(s), e, h) for s, e, h in (line.split("|") for line in out.strip().splitlines())]


if __name__ == "__main__":
    unittest.main()
