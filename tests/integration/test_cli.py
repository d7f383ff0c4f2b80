"""The privacyd command line: --version, --help, check and migrate."""
import json
import os
import re
import shutil
import sqlite3
import tempfile
import unittest

from harness import REPO, run, write_config


class CommandLine(unittest.TestCase):
    def test_version(self):
        r = run(["--version"])
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout.strip(), r"^privacyd \d+\.\d+\.\d+$")

    def test_version_on_every_subcommand(self):
        # Every subcommand the help lists, and those under them (SPEC §2).
        top = run(["--help"]).stdout
        subs = re.findall(r"^  (\w[\w-]*)\s", top.split("Subcommands:", 1)[1], re.M)
        self.assertIn("serve", subs)
        version = run(["--version"]).stdout
        for sub in subs:
            nested = run([sub, "--help"]).stdout
            lower = re.findall(r"^  (\w[\w-]*)\s", nested.split("Subcommands:", 1)[1], re.M) \
                if "Subcommands:" in nested else []
            for argv in [[sub]] + [[sub, n] for n in lower]:
                with self.subTest(argv=argv):
                    r = run([*argv, "--version"])
                    self.assertEqual((r.returncode, r.stdout), (0, version))

    def test_help_on_binary_and_every_subcommand(self):
        r = run(["--help"])
        self.assertEqual(r.returncode, 0)
        for sub in ("serve", "check", "migrate"):
            self.assertIn(sub, r.stdout)
            h = run([sub, "--help"])
            self.assertEqual(h.returncode, 0, sub)
            self.assertIn("--config", h.stdout, sub)

    def test_unknown_subcommand_is_a_usage_error(self):
        r = run(["frobnicate"])
        self.assertNotEqual(r.returncode, 0)

    def test_check_accepts_the_shipped_configs_once_keys_init_made_their_keys(self):
        # The development config, laid out as in the repository: its keys
        # are ../var/keys/ from config/.
        with tempfile.TemporaryDirectory() as d:
            os.makedirs(os.path.join(d, "config"))
            shutil.copy(os.path.join(REPO, "config", "privacyd.yaml"), os.path.join(d, "config"))
            for name in ("workflows", "policies"):
                os.symlink(os.path.join(REPO, name), os.path.join(d, name))
            path = os.path.join(d, "config", "privacyd.yaml")
            r = run(["check", "--config", path])
            self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
            self.assertIn("[key]", r.stdout)
            r = run(["keys", "init", "--dir", os.path.join(d, "var", "keys"), "--config", path])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            r = run(["check", "--config", path])
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("config OK", r.stdout)
        # The production config names /etc/privacyd/…: check it against a
        # copy laid out as the package lays it out (its partners and systems
        # are packaging/policies/'s), ${CREDENTIALS_DIRECTORY} being keys/
        # beside the config when a command runs outside systemd.
        env = dict(os.environ, PRIVACYD_DATABASE="postgresql://dbname=privacyd")
        env.pop("CREDENTIALS_DIRECTORY", None)
        with tempfile.TemporaryDirectory() as etc:
            with open(os.path.join(REPO, "config", "privacyd.production.yaml")) as f:
                text = f.read().replace("/etc/privacyd", etc)
            shutil.copytree(os.path.join(REPO, "workflows"), os.path.join(etc, "workflows"))
            shutil.copytree(os.path.join(REPO, "policies"), os.path.join(etc, "policies"))
            for name in os.listdir(os.path.join(REPO, "packaging", "policies")):
                shutil.copy(os.path.join(REPO, "packaging", "policies", name), os.path.join(etc, "policies", name))
            path = os.path.join(etc, "privacyd.yaml")
            with open(path, "w") as f:
                f.write(text)
            r = run(["keys", "init", "--dir", os.path.join(etc, "keys"), "--config", path, "--self-signed-tls"],
                    env=env)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            r = run(["check", "--config", path], env=env)
            self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
            self.assertIn("config OK", r.stdout)

    def test_check_reports_every_problem_with_its_position(self):
        with tempfile.TemporaryDirectory() as d:
            path = write_config(d, extra="limits: { max_conections: 5, read_timeout: soon }\n")
            r = run(["check", "--config", path])
            self.assertEqual(r.returncode, 1)
            lines = r.stdout.strip().split("\n")
            self.assertEqual(lines, [
                f"{path}:14:11: unknown key \"max_conections\" in limits (did you mean \"max_connections\"?)"
                " [unknown-key]",
                f"{path}:14:44: bad duration \"soon\" for \"read_timeout\" (write e.g. 500ms, 30s, 10m, 2h, 7d)"
                " [duration]",
            ])

    def test_check_json_format(self):
        with tempfile.TemporaryDirectory() as d:
            path = write_config(d, extra="limits: { max_header: big, shutdown_grace: forever }\n")
            r = run(["check", "--config", path, "--format", "json"])
            self.assertEqual(r.returncode, 1)
            problems = json.loads(r.stdout)["problems"]
            self.assertEqual([(p["line"], p["column"], p["rule"]) for p in problems],
                             [(14, 23, "size"), (14, 44, "duration")])
            for p in problems:
                self.assertEqual(p["path"], path)
                self.assertGreater(p["line"], 0)
                self.assertGreater(p["column"], 0)

    def test_check_reports_workflow_problems_with_suggestions(self):
        with tempfile.TemporaryDirectory() as d:
            flows = os.path.join(d, "workflows")
            os.makedirs(flows)
            with open(os.path.join(flows, "deletion.yaml"), "w") as f:
                f.write("workflow: deletion\nversion: 1\non: request.deletion\nsteps:\n"
                        "  - id: pause\n    action: wiat\n    with: { for: 7d }\n"
                        "  - id: pause\n    action: approval\n    if: \"subject.email &&\"\n")
            path = write_config(d, workflows=flows)
            r = run(["check", "--config", path])
            self.assertEqual(r.returncode, 1)
            wf = os.path.join(flows, "deletion.yaml")
            self.assertEqual(r.stdout.strip().split("\n"), [
                f"{wf}:6:13: unknown action \"wiat\" (did you mean \"wait\"?) [workflow]",
                f"{wf}:8:9: duplicate step id \"pause\" [workflow]",
                f"{wf}:10:26: bad condition: expected a path like subject.email [expression]",
            ])
            j = run(["check", "--config", path, "--format", "json"])
            self.assertEqual([p["rule"] for p in json.loads(j.stdout)["problems"]],
                             ["workflow", "workflow", "expression"])

    def test_check_points_at_the_step_naming_an_unknown_template(self):
        with tempfile.TemporaryDirectory() as d:
            flows = os.path.join(d, "workflows")
            shutil.copytree(os.path.join(REPO, "workflows"), flows)
            wf = os.path.join(flows, "deletion.yaml")
            with open(wf) as f:
                text = f.read()
            with open(wf, "w") as f:
                f.write(text.replace("with: { template: subject-erased }", "with: { template: subject-erasd }"))
            line = text.split("\n").index("    with: { template: subject-erased }") + 1
            path = write_config(d, workflows=flows)
            r = run(["check", "--config", path])
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"{wf}:{line}:23: step ", r.stdout)
            self.assertIn(' names template "subject-erasd", which has no subject-erasd.en.mustache [template]',
                          r.stdout)

    def test_receive_plays_a_partner_and_keeps_only_signed_notices(self):
        import http.client
        import re
        import signal
        import subprocess
        import time
        from harness import BIN, new_secret, sign
        with tempfile.TemporaryDirectory() as d:
            secret = new_secret()
            with open(os.path.join(d, "partner.secret"), "w") as f:
                f.write(secret + "\n")
            proc = subprocess.Popen([BIN, "receive", "--listen", "127.0.0.1:0", "--secret-file",
                                     os.path.join(d, "partner.secret"), "--dir", os.path.join(d, "kept")],
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            try:
                line = proc.stderr.readline()
                port = int(re.search(r"addr=127\.0\.0\.1:(\d+)", line).group(1))

                def post(headers, body):
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                    conn.request("POST", "/notices", body=body, headers=headers)
                    status = conn.getresponse().status
                    conn.close()
                    return status

                body = b'{"type":"notice.disassociation","notice_id":"ntc_1"}'
                ts = int(time.time())
                good = {"webhook-id": "ntc_1", "webhook-timestamp": str(ts),
                        "webhook-signature": sign(secret, "ntc_1", ts, body)}
                self.assertEqual(post(good, body), 200)
                self.assertEqual(proc.stdout.readline().strip(), "received ntc_1 notice.disassociation")
                with open(os.path.join(d, "kept", "ntc_1.json"), "rb") as f:
                    self.assertEqual(f.read(), body)
                forged = dict(good, **{"webhook-signature": sign(new_secret(), "ntc_1", ts, body)})
                self.assertEqual(post(forged, body), 401)
                sneaky = {"webhook-id": "../x", "webhook-timestamp": str(ts),
                          "webhook-signature": sign(secret, "../x", ts, body)}
                self.assertEqual(post(sneaky, body), 400)
                self.assertEqual(sorted(os.listdir(os.path.join(d, "kept"))), ["ntc_1.json"])
            finally:
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=30), 0)
                proc.stdout.close()
                proc.stderr.close()

    def test_trigger_reaches_the_address_in_the_url(self):
        # A server on 127.0.0.2 only: a client that lost the host and
        # connected to 127.0.0.1 (or anything else) would not reach it.
        import http.server
        import threading
        from harness import new_secret

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                self.rfile.read(int(self.headers["Content-Length"]))
                self.send_response(202)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

        server = http.server.HTTPServer(("127.0.0.2", 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            with tempfile.TemporaryDirectory() as d:
                secrets = os.path.join(d, "secrets")
                with open(secrets, "w") as f:
                    f.write(new_secret() + "\n")
                r = run(["trigger", "request.access", "--secret-file", secrets,
                         "--url", f"http://127.0.0.2:{server.server_address[1]}/v1/webhooks/partner-center"])
                self.assertEqual(r.returncode, 0, r.stdout + r.stderr)
                self.assertEqual(r.stdout.strip(), "202 {}")
        finally:
            server.shutdown()
            server.server_close()

    def test_migrate_creates_the_schema_and_is_idempotent(self):
        with tempfile.TemporaryDirectory() as d:
            path = write_config(d)
            first = run(["migrate", "--config", path])
            self.assertEqual(first.returncode, 0, first.stderr)
            self.assertRegex(first.stdout, r"schema at version \d+ \(was 0\)")
            again = run(["migrate", "--config", path])
            self.assertEqual(again.returncode, 0, again.stderr)
            self.assertRegex(again.stdout, r"schema at version (\d+) \(was \1\)")
            path = os.path.join(d, "var", "privacyd.db")
            self.assertEqual(os.stat(path).st_mode & 0o077, 0, "the database must not be readable by others")
            db = sqlite3.connect(path)
            versions = [v for (v,) in db.execute("SELECT version FROM schema_migrations ORDER BY version")]
            self.assertEqual(versions, list(range(1, len(versions) + 1)))
            tables = {t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            self.assertTrue({"requests", "subjects", "webhook_deliveries"} <= tables, tables)

    def test_migrate_on_a_bad_config_fails_with_the_position(self):
        with tempfile.TemporaryDirectory() as d:
            path = write_config(d, database="oracle://db=x")
            r = run(["migrate", "--config", path])
            self.assertEqual(r.returncode, 1)
            self.assertIn(f"{path}:4:11: database must start with sqlite3:// or postgresql://", r.stderr)


if __name__ == "__main__":
    unittest.main()
