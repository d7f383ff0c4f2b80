"""`privacyd serve` on a throwaway PostgreSQL: readiness follows the
database down and back up; migrations run once under concurrency."""
import os
import socket
import struct
import subprocess
import tempfile
import threading
import unittest

from harness import BIN, Daemon, PgCluster, wait_for, write_config


class DroppingProxy:
    """A TCP proxy in front of PostgreSQL. While armed, it lets a connection
    through start-up and authentication and then closes it on the client's
    first statement: the window between libpq's connect succeeding and
    SOCI's first statement on the new connection (its SET
    extra_float_digits), which a server restart or a network fault hits.
    It expects plaintext connections (sslmode and gssencmode disabled), and
    counts a drop only at a first statement, never at an accept."""

    SSL_OR_GSS = (80877103, 80877104)

    def __init__(self, upstream_port):
        self.upstream_port = upstream_port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.lock = threading.Lock()
        self.to_drop = 0
        self.dropped = []  # the statement each dropped connection sent first
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, connections):
        with self.lock:
            self.to_drop = connections

    def dropped_statements(self):
        with self.lock:
            return list(self.dropped)

    def close(self):
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the accept below
        except OSError:
            pass
        self.listener.close()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    @staticmethod
    def _read(sock, n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    @staticmethod
    def _shut(*socks):
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @classmethod
    def _pump(cls, src, dst):
        try:
            while chunk := src.recv(65536):
                dst.sendall(chunk)
        except OSError:
            pass
        cls._shut(src, dst)

    def _serve(self, client):
        with client, socket.create_connection(("127.0.0.1", self.upstream_port)) as upstream:
            self._relay(client, upstream)

    def _relay(self, client, upstream):
        back = threading.Thread(target=self._pump, args=(upstream, client), daemon=True)
        back.start()
        try:
            # Untyped messages until the StartupMessage: SSLRequest or
            # GSSENCRequest first, each answered by the server.
            while True:
                head = self._read(client, 8)
                length, code = struct.unpack("!II", head)
                upstream.sendall(head + self._read(client, length - 8))
                if code not in self.SSL_OR_GSS:
                    break
            # Typed messages: authentication (none under trust), then the
            # first statement.
            while True:
                head = self._read(client, 5)
                kind, length = head[:1], struct.unpack("!I", head[1:])[0]
                body = self._read(client, length - 4)
                if kind == b"Q":
                    with self.lock:
                        drop = self.to_drop > 0
                        if drop:
                            self.to_drop -= 1
                            self.dropped.append(body.rstrip(b"\0").decode(errors="replace"))
                    if drop:
                        break
                upstream.sendall(head + body)
                if kind == b"Q":
                    self._pump(client, upstream)
                    break
        except (ConnectionError, OSError):
            pass
        self._shut(client, upstream)
        back.join()


class ServeOnPostgres(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.pg = PgCluster()

    @classmethod
    def tearDownClass(cls):
        cls.pg.destroy()

    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)

    def test_readyz_follows_the_database_down_and_back(self):
        self.pg.psql("CREATE DATABASE ready_test")
        path = write_config(self.dir.name, database=self.pg.dsn("ready_test"))
        d = Daemon(path)
        self.addCleanup(d.kill)
        d.wait_ready()
        self.assertEqual(d.get_json("/readyz")[0], 200)
        self.pg.stop()
        try:
            wait_for(lambda: d.get_json("/readyz")[0] == 503, what="/readyz to report the database down")
            self.assertEqual(d.get_json("/healthz")[0], 200, "the process itself is still up")
        finally:
            self.pg.start()
        wait_for(lambda: d.get_json("/readyz")[0] == 200, timeout=30, what="/readyz to recover")
        self.assertEqual(d.stop(), 0, "\n".join(d.lines[-40:]))

    def test_a_connection_dropped_before_its_first_statement_is_retried(self):
        # The server accepts the connection and then drops it (a restart, a
        # network fault) before SOCI's first statement on it. The work that
        # needed it fails as unavailable, the slot connects again on its
        # next use, and the daemon recovers. Under ASan it also exits
        # without a leak but SOCI 4.0.3's own (store/database.cpp lets that
        # one through; SOCI 4.1.3 sends no such SET to PostgreSQL 12 and
        # later, and this assertion will say so after an upgrade).
        self.pg.psql("CREATE DATABASE dropped_test")
        proxy = DroppingProxy(self.pg.port)
        self.addCleanup(proxy.close)
        dsn = (f"postgresql://host=127.0.0.1 port={proxy.port} dbname=dropped_test user=privacyd "
               "sslmode=disable gssencmode=disable")
        path = write_config(self.dir.name, database=dsn)
        d = Daemon(path)
        self.addCleanup(d.kill)
        d.wait_ready()
        self.assertEqual(d.get_json("/readyz")[0], 200)
        proxy.arm(3)
        self.pg.psql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                     "WHERE datname = 'dropped_test' AND pid <> pg_backend_pid()")
        wait_for(lambda: len(proxy.dropped_statements()) == 3, timeout=30,
                 what="three connections dropped before their first statement")
        self.assertTrue(all("extra_float_digits" in s for s in proxy.dropped_statements()),
                        proxy.dropped_statements())
        wait_for(lambda: d.get_json("/readyz")[0] == 200, timeout=30, what="/readyz to recover")
        self.assertEqual(d.stop(), 0, "\n".join(d.lines[-40:]))

    def test_concurrent_migrations_apply_each_version_once(self):
        self.pg.psql("CREATE DATABASE migrate_test")
        path = write_config(self.dir.name, database=self.pg.dsn("migrate_test"))
        procs = [subprocess.Popen([BIN, "migrate", "--config", path], stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(4)]
        for p in procs:
            out, err = p.communicate(timeout=60)
            self.assertEqual(p.returncode, 0, err)
        rows = self.pg.psql("SELECT version, count(*) FROM schema_migrations GROUP BY version ORDER BY version",
                            dbname="migrate_test").split()
        self.assertTrue(rows)
        for row in rows:
            version, count = row.split("|")
            self.assertEqual(count, "1", f"version {version} applied {count} times")

    def test_serve_refuses_to_start_without_a_database(self):
        path = write_config(self.dir.name,
                            database="postgresql://host=127.0.0.1 port=1 dbname=none connect_timeout=2")
        d = Daemon(path)
        self.assertEqual(d.wait_exit(), 1)
        self.assertTrue(any("cannot connect to the database" in l for l in d.lines), d.lines)


if __name__ == "__main__":
    unittest.main()
