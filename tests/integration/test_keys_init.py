"""`privacyd keys init` (SPEC §11): every key, secret and token file a config
and its policies name, made once with mode 0600 and never over a file; and
a real daemon started on what it made takes its tokens and secrets."""
import base64
import hashlib
import http.client
import os
import re
import shutil
import ssl
import stat
import subprocess
import tempfile
import unittest

from harness import BIN, REPO, Daemon, demo_setup, snapshot_files as snapshot


def run(*args, env=None):
    full = dict(os.environ)
    full.pop("CREDENTIALS_DIRECTORY", None)
    full.update(env or {})
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60, env=full)


def read(path):
    with open(path, "rb") as f:
        return f.read()


class KeysInit(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.folder = self.tmp.name
        self.keys = os.path.join(self.folder, "creds")

    def credentials_config(self, extra="", database="${PRIVACYD_TEST_UNSET_DATABASE}"):
        """A config naming every file as a credential, as production's does,
        with a database variable nobody set, and the demo's policies with
        both partners' secrets as credentials."""
        policies = demo_setup(self.folder, "http://127.0.0.1:9/notices", "whsec_unused",
                              replace={"var/keys/partner-": "${CREDENTIALS_DIRECTORY}/partner-"})
        for partner in ("P-1001", "P-1002"):  # demo_setup writes these; keys init must make them
            os.remove(os.path.join(self.folder, "var", "keys", f"partner-{partner}.secret"))
        path = os.path.join(self.folder, "privacyd.yaml")
        with open(path, "w") as f:
            f.write(f"""listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
  tokens_file: ${{CREDENTIALS_DIRECTORY}}/admin-tokens
database: "{database}"
workflows: {REPO}/workflows
policies: {policies}
keys:
  data_key_file: ${{CREDENTIALS_DIRECTORY}}/data.key
  receipt_key_file: ${{CREDENTIALS_DIRECTORY}}/receipt.pem
  store: "sqlite3://db=var/subject-keys.db"
webhook:
  secrets_file: ${{CREDENTIALS_DIRECTORY}}/webhook-secrets
notices:
  file_dir: var/notices
partner_center:
  callback_url: http://127.0.0.1:9/callbacks
  secret_file: ${{CREDENTIALS_DIRECTORY}}/partner-center-callback.secret
log: {{ level: debug }}
{extra}""")
        return path

    def test_it_makes_every_file_the_config_and_policies_name_once_and_0600(self):
        config = self.credentials_config()
        r = run("keys", "init", "--dir", self.keys, "--config", config)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        made = snapshot(self.keys)
        self.assertEqual(sorted(made), ["admin-tokens", "data.key", "operator-token", "partner-P-1001.secret",
                                        "partner-P-1002.secret", "partner-center-callback.secret", "receipt.pem",
                                        "webhook-secrets"])
        for name, (_, mode, _) in made.items():
            self.assertEqual(mode, 0o600, name)
            self.assertIn(f"created {os.path.join(self.keys, name)}", r.stdout)
        self.assertEqual(stat.S_IMODE(os.stat(self.keys).st_mode), 0o700)
        # What each file holds is what privacyd reads.
        key = lambda name: read(os.path.join(self.keys, name))  # noqa: E731
        self.assertEqual(len(base64.b64decode(key("data.key").strip(), validate=True)), 32)
        for name in ("webhook-secrets", "partner-P-1001.secret", "partner-center-callback.secret"):
            secret = key(name).decode().strip()
            self.assertTrue(secret.startswith("whsec_"), name)
            self.assertGreaterEqual(len(base64.b64decode(secret[6:], validate=True)), 16, name)
        self.assertNotEqual(key("partner-P-1001.secret"), key("partner-P-1002.secret"))
        self.assertTrue(key("receipt.pem").startswith(b"-----BEGIN PRIVATE KEY-----"))
        token = key("operator-token").decode().strip()
        self.assertEqual(key("admin-tokens").decode(),
                         f"operator initial sha256:{hashlib.sha256(token.encode()).hexdigest()}\n")
        self.assertNotIn(token, r.stdout + r.stderr)  # printed only with --print-token
        # The unset database variable is a note, not a stop.
        self.assertIn("PRIVACYD_TEST_UNSET_DATABASE is not set", r.stderr)
        self.assertIn("not needed to create keys", r.stderr)

        again = run("keys", "init", "--dir", self.keys, "--config", config)
        self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
        self.assertEqual(snapshot(self.keys), made)  # not a byte, mode or time changed
        self.assertNotIn("created", again.stdout)
        self.assertEqual(again.stdout.count("kept "), len(made) - 1)  # operator-token is not named by the config

    def test_it_never_writes_over_an_existing_file_and_says_when_one_is_loose(self):
        config = self.credentials_config()
        os.makedirs(self.keys)
        with open(os.path.join(self.keys, "data.key"), "w") as f:
            f.write("a key the operator restored\n")
        os.chmod(os.path.join(self.keys, "data.key"), 0o644)
        r = run("keys", "init", "--dir", self.keys, "--config", config)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(self.keys, "data.key")) as f:
            self.assertEqual(f.read(), "a key the operator restored\n")
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.keys, "data.key")).st_mode), 0o644)  # told, not changed
        self.assertIn(f"warning: {os.path.join(self.keys, 'data.key')} can be read by others", r.stderr)
        self.assertIn("created " + os.path.join(self.keys, "webhook-secrets"), r.stdout)
        self.assertEqual([n for n in os.listdir(self.keys) if n.startswith(".")], [])  # no temporary file left

    def test_it_finishes_the_tokens_file_from_a_token_an_earlier_run_left(self):
        config = self.credentials_config()
        os.makedirs(self.keys)
        token = base64.urlsafe_b64encode(os.urandom(32)).decode().rstrip("=")
        with open(os.path.join(self.keys, "operator-token"), "w") as f:
            f.write(token + "\n")
        r = run("keys", "init", "--dir", self.keys, "--config", config, "--print-token")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        with open(os.path.join(self.keys, "admin-tokens")) as f:
            self.assertEqual(f.read(), f"operator initial sha256:{hashlib.sha256(token.encode()).hexdigest()}\n")
        self.assertIn(f"operator token: {token}", r.stdout)

    def test_a_config_with_problems_makes_nothing(self):
        config = self.credentials_config(extra="no_such_key: 1\n")
        r = run("keys", "init", "--dir", self.keys, "--config", config)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn('unknown key "no_such_key"', r.stderr)
        self.assertIn("nothing was created", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.keys, "data.key")))

    def test_without_a_config_it_makes_the_production_set(self):
        r = run("keys", "init", "--dir", self.keys)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(sorted(os.listdir(self.keys)), ["admin-tokens", "data.key", "operator-token",
                                                         "partner-center-callback.secret", "receipt.pem",
                                                         "webhook-secrets"])
        # ... which are the files the shipped production config names.
        with open(os.path.join(REPO, "config", "privacyd.production.yaml")) as f:
            production = f.read()
        for name in ("admin-tokens", "data.key", "partner-center-callback.secret", "receipt.pem", "webhook-secrets"):
            self.assertIn("${CREDENTIALS_DIRECTORY}/" + name, production)

    def test_the_daemon_runs_on_what_it_made(self):
        config = self.credentials_config(database="sqlite3://db=var/privacyd.db")
        r = run("keys", "init", "--dir", self.keys, "--config", config)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        daemon = Daemon(config, env={"CREDENTIALS_DIRECTORY": self.keys}).wait_ready()
        self.addCleanup(daemon.stop)
        with open(os.path.join(self.keys, "operator-token")) as f:
            token = f.read().strip()
        status, _, body = daemon.request("GET", "/v1/whoami", listener="admin",
                                         headers={"Authorization": f"Bearer {token}"})
        self.assertEqual(status, 200, body)
        self.assertIn(b'"operator"', body)
        status, _, _ = daemon.request("GET", "/v1/whoami", listener="admin",
                                      headers={"Authorization": "Bearer " + token[:-1] + ("A" if token[-1] != "A" else "B")})
        self.assertEqual(status, 401)
        status, _, body = daemon.request("GET", "/v1/receipts/public-key", listener="admin",
                                         headers={"Authorization": f"Bearer {token}"})
        self.assertEqual(status, 200, body)
        with open(os.path.join(self.keys, "webhook-secrets")) as f:
            secret = f.read().strip()
        status, answer = daemon.webhook({"type": "request.access", "subject": {"huawei_id": "demo-001"},
                                         "occurred_at": "2026-11-26T05:00:00Z"}, secret)
        self.assertIn(status, (200, 202), answer)

    def test_tls_pairs_are_made_only_when_asked_and_serve_https(self):
        config = self.credentials_config(
            database="sqlite3://db=var/privacyd.db",
            extra="tls:\n  certificate_file: ${CREDENTIALS_DIRECTORY}/tls.pem\n"
                  "  key_file: ${CREDENTIALS_DIRECTORY}/tls.key\n")
        r = run("keys", "init", "--dir", self.keys, "--config", config)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.keys, "tls.pem")))
        self.assertIn("not created: " + os.path.join(self.keys, "tls.pem"), r.stderr)
        self.assertIn("--self-signed-tls", r.stderr)

        r = run("keys", "init", "--dir", self.keys, "--config", config, "--self-signed-tls")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.keys, "tls.key")).st_mode), 0o600)
        self.assertIn("created " + os.path.join(self.keys, "tls.pem"), r.stdout)
        daemon = Daemon(config, env={"CREDENTIALS_DIRECTORY": self.keys}).wait_ready()
        self.addCleanup(daemon.stop)
        # The certificate verifies as itself, for 127.0.0.1 and localhost.
        context = ssl.create_default_context(cafile=os.path.join(self.keys, "tls.pem"))
        for host in ("127.0.0.1", "localhost"):
            conn = http.client.HTTPSConnection(host, daemon.port(), context=context, timeout=10)
            conn.request("GET", "/healthz")
            self.assertEqual(conn.getresponse().status, 200, host)
            conn.close()

    def test_a_tls_key_that_cannot_be_read_is_never_replaced_by_another(self):
        config = self.credentials_config(
            extra="tls:\n  certificate_file: ${CREDENTIALS_DIRECTORY}/tls.pem\n"
                  "  key_file: ${CREDENTIALS_DIRECTORY}/tls.key\n")
        os.makedirs(self.keys, mode=0o700)
        with open(os.path.join(self.keys, "tls.key"), "w"):
            pass  # empty
        r = run("keys", "init", "--dir", self.keys, "--config", config, "--self-signed-tls")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("cannot read the key " + os.path.join(self.keys, "tls.key"), r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.keys, "tls.pem")))

    def test_half_a_tls_pair_is_refused(self):
        config = self.credentials_config(
            extra="tls:\n  certificate_file: ${CREDENTIALS_DIRECTORY}/tls.pem\n"
                  "  key_file: ${CREDENTIALS_DIRECTORY}/tls.key\n")
        os.makedirs(self.keys)
        with open(os.path.join(self.keys, "tls.pem"), "w") as f:
            f.write("an operator's certificate\n")
        r = run("keys", "init", "--dir", self.keys, "--config", config, "--self-signed-tls")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("exists without its key", r.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.keys, "tls.key")))
        with open(os.path.join(self.keys, "tls.pem")) as f:
            self.assertEqual(f.read(), "an operator's certificate\n")

    def test_two_at_once_agree_on_one_key(self):
        """Four runs racing over one folder: each file ends up whole, once,
        every run succeeds (a lost link finds the winner's file), and the
        tokens file hashes the one operator token that stands."""
        config = self.credentials_config()
        procs = [subprocess.Popen([BIN, "keys", "init", "--dir", self.keys, "--config", config],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
        outs = [p.communicate(timeout=60) for p in procs]
        for p, (out, err) in zip(procs, outs):
            self.assertEqual(p.returncode, 0, out + err)
        self.assertEqual(len(base64.b64decode(read(os.path.join(self.keys, "data.key")).strip(), validate=True)), 32)
        created = sum(out.count("created " + os.path.join(self.keys, "data.key")) for out, _ in outs)
        self.assertEqual(created, 1, outs)
        token = read(os.path.join(self.keys, "operator-token")).strip()
        self.assertEqual(read(os.path.join(self.keys, "admin-tokens")).decode(),
                         f"operator initial sha256:{hashlib.sha256(token).hexdigest()}\n")
        self.assertEqual([n for n in os.listdir(self.keys) if n.startswith(".")], [])

    def test_a_crash_on_any_line_leaves_a_whole_key_or_none(self):
        """strace kills keys init at a chosen system call: before the first
        key's link nothing is left, not even a hidden copy; after it, that
        key is whole; the next run makes the rest."""
        os.makedirs(self.keys, mode=0o700)
        try:
            os.close(os.open(self.keys, os.O_TMPFILE | os.O_WRONLY, 0o600))
        except OSError:
            self.skipTest("SKIPPED: this file system has no O_TMPFILE (keys init writes a hidden file there instead)")
        log = os.path.join(self.folder, "strace.log")
        for syscall, when, expect in (("write", 1, []), ("fsync", 1, []), ("linkat", 1, []),
                                      ("linkat", 2, ["data.key"])):
            shutil.rmtree(self.keys, ignore_errors=True)
            r = subprocess.run(["strace", "-o", log, "-e", f"trace=openat,write,fsync,linkat",
                                "-e", f"inject={syscall}:signal=KILL:when={when}",
                                BIN, "keys", "init", "--dir", self.keys], capture_output=True, text=True, timeout=60)
            self.assertEqual(r.returncode, -9, f"{syscall}#{when}: {r.stdout}{r.stderr}")
            with open(log) as f:
                calls = [line for line in f if re.match(r"(openat|write|fsync|linkat)\(", line)]
            # It died where it was meant to: at that call, on a key.
            self.assertTrue(calls[-1].startswith(syscall + "("), calls[-3:])
            self.assertTrue(any("O_TMPFILE" in c for c in calls), calls[-5:])
            if syscall == "write":
                self.assertRegex(calls[-1], r"^write\(3,", calls[-3:])  # the key's file, not a message
            self.assertEqual(sorted(os.listdir(self.keys)), expect, f"killed at {syscall}#{when}")
            if expect:
                self.assertEqual(len(base64.b64decode(read(os.path.join(self.keys, "data.key")).strip())), 32)
            again = run("keys", "init", "--dir", self.keys)
            self.assertEqual(again.returncode, 0, again.stdout + again.stderr)
            self.assertEqual(len(os.listdir(self.keys)), 6, os.listdir(self.keys))

    def test_racing_runs_certify_the_one_tls_key_that_stands(self):
        config = self.credentials_config(
            extra="tls:\n  certificate_file: ${CREDENTIALS_DIRECTORY}/tls.pem\n"
                  "  key_file: ${CREDENTIALS_DIRECTORY}/tls.key\n")
        for attempt in range(3):
            shutil.rmtree(self.keys, ignore_errors=True)
            procs = [subprocess.Popen([BIN, "keys", "init", "--dir", self.keys, "--config", config, "--self-signed-tls"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
            for p in procs:
                out, err = p.communicate(timeout=60)
                self.assertEqual(p.returncode, 0, out + err)
            public = [subprocess.run(args, capture_output=True, timeout=60, check=True).stdout for args in (
                ["openssl", "x509", "-in", os.path.join(self.keys, "tls.pem"), "-noout", "-pubkey"],
                ["openssl", "pkey", "-in", os.path.join(self.keys, "tls.key"), "-pubout"])]
            self.assertEqual(public[0], public[1], f"attempt {attempt}: the certificate is not for the key")

    def test_a_crash_between_a_tls_key_and_its_certificate_is_finished_next_time(self):
        config = self.credentials_config(
            database="sqlite3://db=var/privacyd.db",
            extra="tls:\n  certificate_file: ${CREDENTIALS_DIRECTORY}/tls.pem\n"
                  "  key_file: ${CREDENTIALS_DIRECTORY}/tls.key\n")
        os.makedirs(self.keys, mode=0o700)
        subprocess.run(["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out",
                        os.path.join(self.keys, "tls.key")], check=True, capture_output=True, timeout=60)
        key_before = read(os.path.join(self.keys, "tls.key"))
        r = run("keys", "init", "--dir", self.keys, "--config", config, "--self-signed-tls")
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        self.assertEqual(read(os.path.join(self.keys, "tls.key")), key_before)
        # The new certificate is for the key that was there.
        check = run("check", "--config", config, env={"CREDENTIALS_DIRECTORY": self.keys})
        self.assertEqual(check.returncode, 0, check.stdout + check.stderr)

    def test_what_is_there_but_cannot_be_a_key_stops_it(self):
        config = self.credentials_config()
        os.makedirs(os.path.join(self.keys, "webhook-secrets"))  # a folder where a file belongs
        r = run("keys", "init", "--dir", self.keys, "--config", config)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("webhook-secrets exists but is not a file", r.stderr)
        os.rmdir(os.path.join(self.keys, "webhook-secrets"))
        os.symlink("/nonexistent/privacyd-key", os.path.join(self.keys, "webhook-secrets"))  # a link to nothing
        r = run("keys", "init", "--dir", self.keys, "--config", config)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("webhook-secrets exists but is not a file", r.stderr)
        self.assertFalse(os.path.exists("/nonexistent/privacyd-key"))

    def test_a_folder_others_can_write_gets_no_key(self):
        config = self.credentials_config()
        os.makedirs(self.keys)
        os.chmod(self.keys, 0o777)  # as /tmp is: anyone could plant or swap a key there
        r = run("keys", "init", "--dir", self.keys, "--config", config)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("is writable by others", r.stderr)
        self.assertEqual(os.listdir(self.keys), [])

    def test_a_folder_another_user_owns_gets_no_key(self):
        if os.geteuid() != 0:
            self.skipTest("SKIPPED: needs root to give a folder to another user")
        config = self.credentials_config()
        os.makedirs(self.keys, mode=0o700)
        os.chown(self.keys, 65534, 65534)  # nobody
        r = run("keys", "init", "--dir", self.keys, "--config", config)
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("owned by another user", r.stderr)
        self.assertEqual(os.listdir(self.keys), [])

    def test_a_file_named_on_an_unset_variable_stops_it(self):
        config = self.credentials_config()
        with open(config) as f:
            text = f.read()
        # An unset variable under a key file is not a note; nor is a "${"
        # never closed, a mistake in the file rather than a variable to set.
        for tokens, expect in (("${PRIVACYD_TEST_UNSET_TOKENS}/admin-tokens",
                                "admin API tokens is named with ${PRIVACYD_TEST_UNSET_TOKENS}, which is not set"),
                               ("${PRIVACYD_TEST_UNSET_TOKENS}/../../keys/admin-tokens",  # no "../" hides it
                                "admin API tokens is named with ${PRIVACYD_TEST_UNSET_TOKENS}, which is not set"),
                               ("/x/${PRIVACYD_TEST_UNSET_NAME}.tokens",
                                "admin API tokens is named with ${PRIVACYD_TEST_UNSET_NAME}, which is not set"),
                               ("${CREDENTIALS_DIRECTORY/admin-tokens", 'unterminated "${"')):
            with open(config, "w") as f:
                f.write(text.replace("tokens_file: ${CREDENTIALS_DIRECTORY}/admin-tokens", "tokens_file: " + tokens))
            r = run("keys", "init", "--dir", self.keys, "--config", config)
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn(expect, r.stderr)
            self.assertFalse(os.path.exists(self.keys))
        self.assertIn("[syntax]", r.stderr)

    def test_one_file_named_for_two_purposes_stops_it_and_fails_check(self):
        config = self.credentials_config(database="sqlite3://db=var/privacyd.db")
        partners = os.path.join(self.folder, "policies", "partners.yaml")
        with open(partners) as f:
            text = f.read()
        # A partner given the Partner Center's own secret could forge its requests.
        with open(partners, "w") as f:
            f.write(text.replace("${CREDENTIALS_DIRECTORY}/partner-P-1001.secret",
                                 "${CREDENTIALS_DIRECTORY}/webhook-secrets", 1))
        r = run("keys", "init", "--dir", self.keys, "--config", config)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("webhook-secrets is named both as the Partner Center's webhook secret and as partner P-1001's",
                      r.stderr)
        self.assertFalse(os.path.exists(self.keys))
        with open(partners, "w") as f:
            f.write(text)
        self.assertEqual(run("keys", "init", "--dir", self.keys, "--config", config).returncode, 0)
        with open(partners, "w") as f:
            f.write(text.replace("${CREDENTIALS_DIRECTORY}/partner-P-1001.secret",
                                 "${CREDENTIALS_DIRECTORY}/webhook-secrets", 1))
        r = run("check", "--config", config, env={"CREDENTIALS_DIRECTORY": self.keys})
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("is named both as", r.stdout)
        self.assertIn("[key]", r.stdout)
        # Through a linked folder: the same file by another name.
        os.symlink(self.keys, os.path.join(self.folder, "keys-link"))
        with open(partners, "w") as f:
            f.write(text.replace("${CREDENTIALS_DIRECTORY}/partner-P-1001.secret",
                                 os.path.join(self.folder, "keys-link", "webhook-secrets"), 1))
        r = run("check", "--config", config, env={"CREDENTIALS_DIRECTORY": self.keys})
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("is named both as", r.stdout)
        # A copy (or a hard link, or a credential mapped from the wrong
        # file): the same secret under two roles.
        with open(partners, "w") as f:
            f.write(text)
        shutil.copy(os.path.join(self.keys, "webhook-secrets"), os.path.join(self.keys, "partner-P-1001.secret"))
        r = run("check", "--config", config, env={"CREDENTIALS_DIRECTORY": self.keys})
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertIn("partner P-1001's notice secret: is one of the Partner Center's webhook secrets", r.stdout)

    def test_check_reads_every_key_as_what_it_is(self):
        config = self.credentials_config(database="sqlite3://db=var/privacyd.db")
        env = {"CREDENTIALS_DIRECTORY": self.keys}
        r = run("check", "--config", config, env=env)
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)  # nothing made yet
        self.assertIn("the data key: cannot read " + os.path.join(self.keys, "data.key"), r.stdout)
        self.assertEqual(run("keys", "init", "--dir", self.keys, "--config", config).returncode, 0)
        r = run("check", "--config", config, env=env)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
        for name, expect in (("data.key", "the data key: key file"), ("partner-P-1002.secret", "partner P-1002's"),
                             ("admin-tokens", "admin API tokens:"), ("receipt.pem", "the receipt signing key:")):
            path = os.path.join(self.keys, name)
            good = read(path)
            with open(path, "wb") as f:
                f.write(b"not what it should be\n")
            r = run("check", "--config", config, env=env)
            with open(path, "wb") as f:
                f.write(good)
            self.assertEqual(r.returncode, 1, name + ": " + r.stdout + r.stderr)
            self.assertRegex(r.stdout, re.escape(config) + r": " + re.escape(expect) + r".*\[key\]", name)
            self.assertNotIn("not what it should be", r.stdout + r.stderr)  # never the content
        self.assertEqual(run("check", "--config", config, env=env).returncode, 0)


if __name__ == "__main__":
    unittest.main()
