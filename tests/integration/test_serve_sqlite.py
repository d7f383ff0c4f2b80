"""`privacyd serve` on the SQLite default: health, readiness, systemd
notifications, HTTP limits, signals."""
import os
import signal
import socket
import tempfile
import time
import unittest

from harness import Daemon, NotifySocket, wait_for, write_config


class ServeOnSqlite(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.daemon = None

    def tearDown(self):
        if self.daemon:
            self.daemon.kill()

    def start(self, extra="", env=None):
        path = write_config(self.dir.name, extra=extra)
        self.daemon = Daemon(path, env=env)
        self.daemon.wait_ready()
        return self.daemon

    def test_health_and_readiness_on_both_listeners(self):
        d = self.start()
        for listener in ("public", "admin"):
            status, body = d.get_json("/healthz", listener)
            self.assertEqual((status, body), (200, {"status": "ok"}))
            status, body = d.get_json("/readyz", listener)
            self.assertEqual(status, 200)
            self.assertEqual(body["status"], "ready")

    def test_ready_arrives_only_once_the_port_accepts(self):
        notify = NotifySocket(self.dir.name)
        self.addCleanup(notify.close)
        path = write_config(self.dir.name)
        self.daemon = Daemon(path, env={"NOTIFY_SOCKET": notify.path})
        msg = notify.wait_for("READY=1")
        # The STATUS line says where we listen; connect at once, no retry.
        status_line = [l for l in msg.split("\n") if l.startswith("STATUS=")][0]
        port = int(status_line.split("serving on 127.0.0.1:")[1].split(",")[0])
        with socket.create_connection(("127.0.0.1", port), timeout=5):
            pass
        self.assertTrue(any(m.startswith("STATUS=") for m in notify.messages[0].split("\n")))
        self.daemon.wait_ready()
        self.daemon.signal(signal.SIGTERM)
        stopping = notify.wait_for("STOPPING=1")
        self.assertIn("STATUS=draining", stopping)
        self.assertEqual(self.daemon.stop(), 0)

    def test_sigterm_drains_and_exits_zero(self):
        d = self.start()
        self.assertEqual(d.stop(), 0)
        self.assertTrue(any("draining" in l for l in d.lines))
        self.assertTrue(any(l.endswith("stopped") for l in d.lines))

    def test_sigterm_lets_a_kept_alive_client_finish(self):
        d = self.start()
        sock = socket.create_connection(("127.0.0.1", d.port()), timeout=5)
        self.addCleanup(sock.close)
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertIn(b"200 OK", sock.recv(4096))
        # An idle keep-alive connection must not hold the shutdown up.
        self.assertEqual(d.stop(timeout=15), 0)

    def test_sighup_reloads_and_keeps_serving(self):
        d = self.start()
        d.signal(signal.SIGHUP)
        d.wait_log("reload requested")
        self.assertEqual(d.get_json("/healthz")[0], 200)

    def test_unknown_route_and_wrong_method(self):
        d = self.start()
        self.assertEqual(d.request("GET", "/nope")[0], 404)
        status, _, body = d.request("POST", "/healthz", body=b"{}", headers={"Content-Type": "application/json"})
        self.assertEqual(status, 405)
        self.assertIn(b'"code":"method_not_allowed"', body)

    def test_oversized_header_is_refused(self):
        d = self.start(extra="limits: { max_header: 1KiB }\n")
        status, _, _ = d.request("GET", "/healthz", headers={"X-Filler": "a" * 4096})
        self.assertEqual(status, 431)
        self.assertEqual(d.get_json("/healthz")[0], 200)

    def test_a_silent_client_is_cut_off_after_the_read_timeout(self):
        d = self.start(extra="limits: { read_timeout: 1s }\n")
        sock = socket.create_connection(("127.0.0.1", d.port()), timeout=10)
        self.addCleanup(sock.close)
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # and never the rest
        self.assertEqual(sock.recv(4096), b"", "the server should close the connection")

    def test_connection_cap_refuses_the_extra_connection(self):
        d = self.start(extra="limits: { max_connections: 2, read_timeout: 20s }\n")
        held = [socket.create_connection(("127.0.0.1", d.port()), timeout=5) for _ in range(2)]
        for s in held:
            self.addCleanup(s.close)
        # The two idle connections are accepted (the server holds them);
        # wait until it has counted them, then a third is turned away.
        def third_refused():
            with socket.create_connection(("127.0.0.1", d.port()), timeout=5) as s:
                data = s.recv(4096)
                return data.startswith(b"HTTP/1.1 503")
        wait_for(third_refused, what="the third connection to be refused")
        for s in held:
            s.close()
        wait_for(lambda: d.get_json("/healthz")[0] == 200, what="service after the cap frees up")

    def test_a_bad_config_exits_non_zero_with_the_position(self):
        path = write_config(self.dir.name, extra="limits: { read_timeout: 5 }\n")
        d = Daemon(path)
        code = d.wait_exit()
        self.assertNotEqual(code, 0)
        self.assertTrue(any(f"{path}:14:25: bad duration" in l for l in d.lines), d.lines)

    def test_a_taken_port_fails_start_up_clearly(self):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            s.listen()
            port = s.getsockname()[1]
            path = write_config(self.dir.name)
            with open(path) as f:
                text = f.read().replace("listen: 127.0.0.1:0\nadmin", f"listen: 127.0.0.1:{port}\nadmin", 1)
            with open(path, "w") as f:
                f.write(text)
            d = Daemon(path)
            self.assertEqual(d.wait_exit(), 1)
            self.assertTrue(any("serve failed" in l for l in d.lines), d.lines)


if __name__ == "__main__":
    unittest.main()
