"""What the integration tests share: a throwaway PostgreSQL cluster, a
running privacyd with its own config and state, and small HTTP helpers.

Standard library only. Every wait polls with a deadline; nothing sleeps a
fixed time hoping something happened.
"""
import base64
import glob
import hashlib
import hmac
import http.client
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time

BIN = os.environ.get("PRIVACYD_BIN", os.path.join(os.path.dirname(__file__), "../../build/privacyd"))
REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "../.."))


def wait_for(predicate, timeout=15.0, what="condition", interval=0.02):
    """Polls `predicate` until it returns a truthy value or `timeout` passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(args, **kw):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=60, **kw)


class PgCluster:
    """A PostgreSQL cluster of our own in a temp folder, on a free port,
    run as an unprivileged user when we are root (CI is). Never the
    machine's default cluster."""

    def __init__(self, fsync=False):
        self.fsync = fsync  # tests trade durability for speed; benchmarks do not
        self.bindir = os.environ.get("PRIVACYD_PG_BINDIR") or self._find_bindir()
        self.root = tempfile.mkdtemp(prefix="privacyd-pg-")
        os.chmod(self.root, 0o755)
        self.data = os.path.join(self.root, "data")
        self.port = free_port()
        self.user = None
        if os.geteuid() == 0:
            self.user = "postgres"
            pw = pwd.getpwnam(self.user)
            os.chown(self.root, pw.pw_uid, pw.pw_gid)
        self._as_owner([f"{self.bindir}/initdb", "-D", self.data, "-A", "trust", "-U", "privacyd",
                        "-E", "UTF8", "--no-sync", "--locale=C"])
        self.start()
        self._as_owner([f"{self.bindir}/createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "privacyd",
                        "privacyd"])

    @staticmethod
    def _find_bindir():
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                       key=lambda p: int(p.split("/")[4]))
        if not found:
            raise RuntimeError("no PostgreSQL server found; run `make deps`")
        return os.path.dirname(found[-1])

    def _as_owner(self, argv):
        if self.user:
            argv = ["runuser", "-u", self.user, "--", *argv]
        subprocess.run(argv, check=True, capture_output=True, timeout=120)

    def start(self):
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 "
                f"-c fsync={'on' if self.fsync else 'off'} -c max_connections=200")
        self._as_owner([f"{self.bindir}/pg_ctl", "-D", self.data, "-l", os.path.join(self.root, "log"),
                        "-o", opts, "-w", "start"])

    def stop(self):
        self._as_owner([f"{self.bindir}/pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop"])

    def dsn(self, dbname="privacyd"):
        return f"postgresql://host=127.0.0.1 port={self.port} dbname={dbname} user=privacyd"

    def psql(self, sql, dbname="privacyd"):
        out = subprocess.run([f"{self.bindir}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "privacyd",
                              "-d", dbname, "-At", "-c", sql], check=True, capture_output=True, text=True,
                             timeout=60)
        return out.stdout

    def dump(self, dbname="privacyd"):
        out = subprocess.run([f"{self.bindir}/pg_dump", "-h", "127.0.0.1", "-p", str(self.port), "-U", "privacyd",
                              dbname], check=True, capture_output=True, timeout=120)
        return out.stdout

    def destroy(self):
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass
        shutil.rmtree(self.root, ignore_errors=True)


def snapshot_files(folder):
    """path → (SHA-256 of the content, mode, mtime_ns) of every file under
    `folder`, to tell whether anything changed: a failed comparison prints
    digests, never a key."""
    out = {}
    for root, _, files in os.walk(folder):
        for name in files:
            path = os.path.join(root, name)
            st = os.stat(path)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
            out[os.path.relpath(path, folder)] = (digest, stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def new_secret():
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def sign(secret, msg_id, timestamp, body):
    """Standard Webhooks: v1,base64(HMAC-SHA256(key, "{id}.{ts}.{body}"))."""
    key = base64.b64decode(secret[len("whsec_"):])
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def write_secrets(folder, secrets):
    with open(os.path.join(folder, "var", "keys", "webhook-secrets"), "w") as f:
        f.write("# rotated secrets: any one verifies\n" + "\n".join(secrets) + "\n")


def write_config(folder, database=None, extra="", log_level="debug", workflows=None):
    """A config in `folder` with port-0 listeners and state in folder/var,
    a fresh data key and one webhook secret (folder/var/keys/webhook-secrets)."""
    os.makedirs(os.path.join(folder, "var", "keys"), exist_ok=True)
    if not os.path.exists(os.path.join(folder, "var", "keys", "data.key")):
        with open(os.path.join(folder, "var", "keys", "data.key"), "wb") as f:
            f.write(os.urandom(32))
    if not os.path.exists(os.path.join(folder, "var", "keys", "webhook-secrets")):
        write_secrets(folder, [new_secret()])
    path = os.path.join(folder, "privacyd.yaml")
    database = database or "sqlite3://db=var/privacyd.db"
    with open(path, "w") as f:
        f.write(f"""listen: 127.0.0.1:0
admin:
  listen: 127.0.0.1:0
database: "{database}"
workflows: {workflows or os.path.join(REPO, "workflows")}
policies: {REPO}/policies
keys:
  data_key_file: var/keys/data.key
webhook:
  secrets_file: var/keys/webhook-secrets
notices:
  file_dir: var/notices
log: {{ level: {log_level} }}
{extra}""")
    return path


def demo_setup(folder, partner_url, partner_secret, systems=None, replace=None):
    """The shipped policies copied to folder/policies, for a config in
    `folder`: paths under folder/var, both partners' notice webhooks at
    `partner_url` signed with `partner_secret`, data systems at `systems`
    (name → SOCI URL) when given, and any other `replace` (old → new).
    Returns the policies folder; call use_policies() on the config."""
    policies = os.path.join(folder, "policies")
    shutil.copytree(os.path.join(REPO, "policies"), policies)
    swaps = {"../var/": "var/", "http://127.0.0.1:9100/notices": partner_url,
             "http://127.0.0.1:9101/notices": partner_url}
    for name, url in (systems or {}).items():
        swaps[f"sqlite3://db=var/demo/{'partner-center' if name == 'partner-center' else 'institute'}.db"] = url
    swaps.update(replace or {})
    for name in os.listdir(policies):
        if name.endswith(".yaml"):
            path = os.path.join(policies, name)
            with open(path) as f:
                text = f.read()
            for old, new in swaps.items():
                text = text.replace(old, new)
            with open(path, "w") as f:
                f.write(text)
    os.makedirs(os.path.join(folder, "var", "keys"), exist_ok=True)
    for partner in ("P-1001", "P-1002"):
        with open(os.path.join(folder, "var", "keys", f"partner-{partner}.secret"), "w") as f:
            f.write(partner_secret + "\n")
    return policies


def use_policies(config, policies, notices=None):
    """Points `config` at `policies` (and replaces its notices section)."""
    with open(config) as f:
        text = f.read().replace(f"policies: {REPO}/policies", f"policies: {policies}")
    if notices is not None:
        text = text.replace("notices:\n  file_dir: var/notices\n", "notices:\n" + notices)
    with open(config, "w") as f:
        f.write(text)


class Daemon:
    """`privacyd serve` as a child process; stderr is collected so tests can
    wait for events and check that no personal data was logged."""

    LISTENING = re.compile(r"listening listener=(\w+) addr=([\d.]+):(\d+)")

    def __init__(self, config, env=None):
        self.lines = []
        self.addr = {}
        self._cond = threading.Condition()
        full_env = dict(os.environ)
        full_env.pop("NOTIFY_SOCKET", None)
        full_env.update(env or {})
        self.proc = subprocess.Popen([BIN, "serve", "--config", config], stdout=subprocess.DEVNULL, errors="replace",
                                     stderr=subprocess.PIPE, text=True, env=full_env)
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            with self._cond:
                self.lines.append(line.rstrip("\n"))
                m = self.LISTENING.search(line)
                if m:
                    self.addr[m.group(1)] = (m.group(2), int(m.group(3)))
                self._cond.notify_all()

    def wait_log(self, pattern, timeout=15.0):
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if rx.search(line):
                        return line
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise AssertionError(f"privacyd exited ({self.proc.returncode}) before logging {pattern!r}:\n"
                                         + "\n".join(self.lines[-20:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no log line matching {pattern!r}; last lines:\n" + "\n".join(self.lines[-20:]))
                self._cond.wait(min(left, 0.2))

    def wait_ready(self, timeout=30.0):
        self.wait_log(r"\bready\b", timeout)
        return self

    def port(self, listener="public"):
        return self.addr[listener][1]

    def request(self, method, path, body=None, headers=None, listener="public", timeout=10):
        conn = http.client.HTTPConnection("127.0.0.1", self.port(listener), timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, dict(resp.getheaders()), data
        finally:
            conn.close()

    def webhook(self, body, secret, msg_id=None, timestamp=None, headers=None, signature=None):
        """POSTs a signed webhook; `body` is a dict (sent as JSON) or bytes."""
        if isinstance(body, dict):
            body = json.dumps(body).encode()
        msg_id = msg_id or "msg_" + os.urandom(8).hex()
        timestamp = int(time.time()) if timestamp is None else timestamp
        h = {"Content-Type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
             "webhook-signature": signature or sign(secret, msg_id, timestamp, body)}
        h.update(headers or {})
        status, _, data = self.request("POST", "/v1/webhooks/partner-center", body=body, headers=h)
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data
        return status, parsed

    def get_json(self, path, listener="public"):
        status, _, data = self.request("GET", path, listener=listener)
        return status, json.loads(data) if data else None

    def signal(self, signo):
        self.proc.send_signal(signo)

    def stop(self, timeout=30):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=timeout)
        self._finish()
        return code

    def wait_exit(self, timeout=30):
        code = self.proc.wait(timeout=timeout)
        self._finish()
        return code

    def _finish(self):
        self._reader.join(timeout=5)
        self.proc.stderr.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        self._finish()


class OnPostgres:
    """A test-case mixin: one throwaway cluster per class, a fresh database
    per test (`self.dbname`), and `query`/`count` against it."""

    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()
        cls.databases = 0

    @classmethod
    def tearDownClass(cls):
        cls.pg.destroy()

    def database(self):
        type(self).databases += 1
        self.dbname = f"{type(self).__name__.lower()}_{type(self).databases}"
        self.pg.psql(f"CREATE DATABASE {self.dbname}")
        return self.pg.dsn(self.dbname)

    def query(self, sql):
        out = self.pg.psql(sql, dbname=self.dbname).strip()
        return out if out else None

    def count(self, sql):
        return int(self.query(sql))


class Receiver:
    """A webhook receiver on loopback that plays an internal service or a
    partner: it verifies every Standard Webhooks signature, records every
    delivery by webhook-id, and can fail, halt or hang on request. It also
    notices two deliveries of one id in flight at once."""

    def __init__(self, secret, tls=None):
        """`tls` = (certificate file, key file) serves HTTPS."""
        import http.server
        import socketserver
        import ssl
        self.secret = secret
        self.deliveries = []          # (webhook-id, body dict, time)
        self.fail_first = {}          # step (or notice type) -> how many deliveries to answer 503
        self.script = {}              # step (or notice type) -> [(status, headers)] answered in turn
        self.halt_steps = set()
        self.hang_steps = set()
        self.hold_steps = set()             # answered normally, but only once `release` is set
        self.holding = threading.Event()    # set when a held delivery arrived
        self.hanging = threading.Event()   # set when a hung delivery arrived
        self.release = threading.Event()   # set to let hung deliveries finish
        self.bad_signatures = 0
        self.overlaps = 0
        self._in_flight = set()
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                msg_id = self.headers.get("webhook-id", "")
                ts = self.headers.get("webhook-timestamp", "")
                sig = self.headers.get("webhook-signature", "")
                if sign(receiver.secret, msg_id, ts, raw) not in sig.split(" "):
                    with receiver._lock:
                        receiver.bad_signatures += 1
                    self.send_response(401)
                    self.end_headers()
                    return
                body = json.loads(raw)
                with receiver._lock:
                    if msg_id in receiver._in_flight:
                        receiver.overlaps += 1
                    receiver._in_flight.add(msg_id)
                    receiver.deliveries.append((msg_id, body, time.time()))
                    step = body.get("step") or body.get("type")
                    failing = receiver.fail_first.get(step, 0)
                    if failing:
                        receiver.fail_first[step] = failing - 1
                    scripted = receiver.script.get(step)
                    answer_now = scripted.pop(0) if scripted else None
                try:
                    if step in receiver.hold_steps and not receiver.release.is_set():
                        receiver.holding.set()
                        receiver.release.wait(60)
                    if step in receiver.hang_steps and not receiver.release.is_set():
                        receiver.hanging.set()
                        receiver.release.wait(60)
                        return  # the caller is gone by now
                    if failing:
                        self.send_response(503)
                        self.end_headers()
                        return
                    if answer_now:
                        status, extra = answer_now
                        self.send_response(status)
                        for k, v in extra.items():
                            self.send_header(k, v)
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    answer = json.dumps({"halt": True} if step in receiver.halt_steps else {"ok": True}).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(answer)))
                    self.end_headers()
                    self.wfile.write(answer)
                finally:
                    with receiver._lock:
                        receiver._in_flight.discard(msg_id)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self.server = Server(("127.0.0.1", 0), Handler)
        scheme = "http"
        if tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def ids(self):
        with self._lock:
            return [d[0] for d in self.deliveries]

    def steps_for(self, request_id):
        with self._lock:
            return [d[1]["step"] for d in self.deliveries if d[1]["request_id"] == request_id]

    def close(self):
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


class NotifySocket:
    """A NOTIFY_SOCKET of our own: collects what privacyd tells systemd."""

    def __init__(self, folder):
        self.path = os.path.join(folder, "notify.sock")
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.messages = []

    def receive(self, timeout=30.0):
        self.sock.settimeout(timeout)
        msg = self.sock.recv(4096).decode()
        self.messages.append(msg)
        return msg

    def wait_for(self, key, timeout=30.0):
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {key} on the notify socket; got {self.messages}")
            msg = self.receive(left)
            if any(line.startswith(key) for line in msg.split("\n")):
                return msg

    def close(self):
        self.sock.close()


def write_admin_tokens(folder, config, roles=(("viewer", "watcher"), ("operator", "ops"))):
    """Admin tokens for `config`: a token per (ROLE, NAME), stored as hashes
    in folder/var/keys/admin-tokens. Returns {NAME: token}."""
    tokens = {}
    lines = ["# ROLE NAME sha256:HEX"]
    for role, name in roles:
        token = base64.urlsafe_b64encode(os.urandom(24)).decode().rstrip("=")
        tokens[name] = token
        lines.append(f"{role} {name} sha256:{hashlib.sha256(token.encode()).hexdigest()}")
    path = os.path.join(folder, "var", "keys", "admin-tokens")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(config) as f:
        text = f.read()
    if "tokens_file:" not in text:
        text = text.replace("admin:\n  listen: 127.0.0.1:0\n",
                            "admin:\n  listen: 127.0.0.1:0\n  tokens_file: var/keys/admin-tokens\n")
        with open(config, "w") as f:
            f.write(text)
    return tokens


def make_certificates(folder):
    """A test CA and a certificate for 127.0.0.1 that it signed."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True, timeout=60)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
            "-subj", "/CN=privacyd test CA")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr", "-subj",
            "/CN=127.0.0.1")
    with open(os.path.join(folder, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "2", "-extfile", "ext.cnf")
    return os.path.join(folder, "ca.pem"), (os.path.join(folder, "server.pem"), os.path.join(folder, "server.key"))
