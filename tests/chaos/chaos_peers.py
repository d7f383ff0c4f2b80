"""The chaos suite's peers: a partner that takes notice webhooks (and can
be told to answer 503 at random), and a mail server that can be told to
drop connections at random. Both record what they got, by id, so a run can
tell a repeat with the same id from a notice sent under two ids.
Standard library only."""
import collections
import email
import email.policy
import http.server
import json
import os
import random
import socketserver
import sys
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
from harness import sign  # noqa: E402


class Partner:
    """Every partner's notice webhook (the policies point P-1001 and P-1002
    here, with one secret). A delivery whose signature verifies is answered
    503 with probability `fail_rate`, else 200, after up to `delay` seconds
    (so a daemon killed mid-delivery has sent and not heard back). Kept
    per webhook-id: how
    many times it was answered 2xx (`received`) and refused (`refused`);
    per (request id, partner id): every webhook-id it came under."""

    def __init__(self, secret, fail_rate=0.0, delay=0.0, seed=None):
        self.secret = secret
        self.fail_rate = fail_rate
        self.delay = delay
        self.rng = random.Random(seed)
        self.received = collections.Counter()
        self.refused = collections.Counter()
        self.ids_by_target = collections.defaultdict(set)   # (request_id, partner_id) -> {webhook-id}
        self.request_of = {}                                   # webhook-id -> request_id
        self.bad_signatures = 0
        self.mismatched = 0          # body's notice_id differs from its webhook-id
        self.overlaps = 0            # one id delivered twice at the same time
        self._in_flight = set()
        self._lock = threading.Lock()
        partner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def answer(self, status):
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_POST(self):
                raw = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                msg_id = self.headers.get("webhook-id", "")
                ts = self.headers.get("webhook-timestamp", "")
                if sign(partner.secret, msg_id, ts, raw) not in self.headers.get("webhook-signature", "").split(" "):
                    with partner._lock:
                        partner.bad_signatures += 1
                    return self.answer(401)
                try:
                    body = json.loads(raw)
                    target = (str(body["request_id"]), str(body["partner_id"]))
                except (ValueError, KeyError, TypeError):
                    return self.answer(400)
                with partner._lock:
                    if msg_id in partner._in_flight:
                        partner.overlaps += 1
                    partner._in_flight.add(msg_id)
                    partner.ids_by_target[target].add(msg_id)
                    partner.request_of[msg_id] = target[0]
                    if body.get("notice_id") != msg_id:
                        partner.mismatched += 1
                    refuse = partner.rng.random() < partner.fail_rate
                    if refuse:
                        partner.refused[msg_id] += 1
                    else:
                        partner.received[msg_id] += 1
                    pause = partner.rng.uniform(0, partner.delay)
                try:
                    time.sleep(pause)
                    self.answer(503 if refuse else 200)
                finally:
                    with partner._lock:
                        partner._in_flight.discard(msg_id)

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notices"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class MailSink:
    """Just enough SMTP (RFC 5321, no TLS offered) to take the subject
    notices; a whole message is answered after up to `delay` seconds. With
    probability `drop_rate` a connection is dropped at a
    random point: right after the greeting, after EHLO, after RCPT, in the
    middle of DATA, or after the whole message but before the 250 (the mail
    arrived, the sender does not know: a repeat must follow, with the same
    notice); or it is refused with a temporary 421. A mail counts as
    received when its whole DATA arrived. Mails are kept by recipient:
    [(Message-ID or None, Subject)]."""

    DROPS = ("greeting", "ehlo", "rcpt", "data-mid", "data-end", "421")

    def __init__(self, drop_rate=0.0, delay=0.0, seed=None):
        self.drop_rate = drop_rate
        self.delay = delay
        self.rng = random.Random(seed)
        self.mails = collections.defaultdict(list)
        self.drops = collections.Counter()
        self.connections = 0
        self._lock = threading.Lock()
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            timeout = 30

            def reply(self, line):
                self.wfile.write((line + "\r\n").encode())
                self.wfile.flush()

            def handle(self):
                with sink._lock:
                    sink.connections += 1
                    drop = sink.rng.choice(sink.DROPS) if sink.rng.random() < sink.drop_rate else None
                    if drop:
                        sink.drops[drop] += 1
                if drop == "421":
                    return self.reply("421 chaos: try again later")
                self.reply("220 chaos ESMTP")
                if drop == "greeting":
                    return
                rcpts = []
                while True:
                    line = self.rfile.readline().decode(errors="replace").rstrip("\r\n")
                    if not line:
                        return
                    verb = line.split(" ")[0].upper()
                    if verb in ("EHLO", "HELO"):
                        if drop == "ehlo":
                            return
                        self.reply("250-chaos")
                        self.reply("250 8BITMIME")
                    elif verb == "MAIL":
                        rcpts = []
                        self.reply("250 ok")
                    elif verb == "RCPT":
                        if drop == "rcpt":
                            return
                        rcpts.append(line[8:].strip().strip("<>").lower())
                        self.reply("250 ok")
                    elif verb == "DATA":
                        self.reply("354 go ahead")
                        data, lines = b"", 0
                        while not data.endswith(b"\r\n.\r\n"):
                            chunk = self.rfile.readline()
                            if not chunk:
                                return
                            data += chunk
                            lines += 1
                            if drop == "data-mid" and lines == 3:
                                return
                        msg = email.message_from_bytes(data[:-5].replace(b"\r\n..", b"\r\n."),
                                                       policy=email.policy.default)
                        with sink._lock:
                            for r in rcpts:
                                sink.mails[r].append((msg.get("Message-ID"), str(msg.get("Subject", ""))))
                            pause = sink.rng.uniform(0, sink.delay)
                        time.sleep(pause)
                        if drop == "data-end":
                            return
                        self.reply("250 queued")
                    elif verb == "QUIT":
                        return self.reply("221 bye")
                    else:
                        self.reply("250 ok")

        class Server(socketserver.ThreadingMixIn, socketserver.TCPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128

        self.server = Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def read_mail_dir(folder):
    """Subject notices written as files (notices.file_dir): recipient ->
    [(Message-ID, Subject)]; the file is named after the notice id."""
    mails = collections.defaultdict(list)
    if not os.path.isdir(folder):
        return mails
    for name in sorted(os.listdir(folder)):
        if not name.endswith(".eml"):
            continue
        with open(os.path.join(folder, name), "rb") as f:
            msg = email.message_from_bytes(f.read(), policy=email.policy.default)
        to = str(msg.get("To", "")).strip().strip("<>").lower()
        mails[to].append((msg.get("Message-ID") or f"<{name[:-4]}@privacyd>", str(msg.get("Subject", ""))))
    return mails
