"""Keep-alive connections the server is closing (gateway/adx.c,
FORWARDER.md "Connections"): a server in front of ADX (nginx's
keepalive_timeout, a load balancer's idle timeout) closes a keep-alive
connection once it has been idle for a while. libcurl reuses a pooled
connection idle up to CURLOPT_MAXAGE_CONN (118 s by default), and notices
a closed one only when the server's FIN has arrived: a request written as
the server's idle timer fires (the FIN still on its way) dies, and an
ingest that dies after its body was written is ambiguous (INV-5): a dedupe
query and a wait, or a resend counted as a possible duplicate, for a
request the server never read. `adx.keepalive_idle_ms` (50 s by default)
keeps kadx from reusing a connection idle that long.

IdleRelay sits between kadx and the ADX emulator. A connection idle
`close_s` is closed (FIN, a server's keep-alive timeout); a request that
arrives on a connection idle `race_s` or more is answered with a reset,
unread: that is the race above (the request met the server's idle
timeout), made deterministic. Batches are sent one at a time, each once
the previous connection has been idle past race_s:

- test_closed_connection_not_reused: the server closed it (FIN): libcurl
  sees that and connects again, no request fails;
- test_idle_connection_not_reused: with adx.keepalive_idle_ms below the
  server's idle timeout, kadx opens a new connection instead of writing
  on the idle one: no ambiguous failure, no dedupe query. With the default
  (50 s) the same test fails: every ingest is ambiguous (measured: see
  FORWARDER.md).
"""
import http.client
import http.server
import json
import os
import re
import select
import socket
import struct
import threading
import time

import harness
import test_forwarder as tf
from harness import wait_until
from test_ops import admin_req, patch_config


class IdleRelay:
    """An HTTP/1.1 reverse relay to `origin` (host, port). A connection
    idle close_s is closed (FIN); a request arriving on one idle race_s or
    more (race_s < close_s) gets a TCP reset, unread."""

    def __init__(self, origin, close_s, race_s=None):
        self.lock = threading.Lock()
        self.opened = 0
        self.closed = 0
        self.resets = 0
        self.idle_since = {}  # open connection -> monotonic time
        self.requests = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle(self):
                with outer.lock:
                    outer.opened += 1
                    self.no = outer.opened
                try:
                    self.close_connection = True
                    self.handle_one_request()
                    while not self.close_connection and self.next_request():
                        self.handle_one_request()
                finally:
                    with outer.lock:
                        outer.idle_since.pop(self.no, None)
                        outer.closed += 1

            def next_request(self):
                """True when the next request is there to be read."""
                since = time.monotonic()
                with outer.lock:
                    outer.idle_since[self.no] = since
                r, _, _ = select.select([self.connection], [], [], close_s)
                with outer.lock:
                    outer.idle_since.pop(self.no, None)
                if not r:
                    return False  # idle timeout: FIN
                try:
                    peek = self.connection.recv(1, socket.MSG_PEEK)
                except OSError:
                    return False
                if not peek:
                    return False  # the client closed it
                if race_s is not None and time.monotonic() - since >= race_s:
                    # the request met the idle timeout: reset, unread
                    self.connection.setsockopt(
                        socket.SOL_SOCKET, socket.SO_LINGER,
                        struct.pack("ii", 1, 0))
                    with outer.lock:
                        outer.resets += 1
                    return False
                return True

            def _relay(self):
                with outer.lock:
                    outer.requests.append((self.no, self.command, self.path))
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("connection", "host",
                                             "content-length")}
                c = http.client.HTTPConnection(*origin, timeout=30)
                try:
                    c.request(self.command, self.path, body=body,
                              headers=hdrs)
                    r = c.getresponse()
                    data = r.read()
                    self.send_response(r.status)
                    for k, v in r.getheaders():
                        if k.lower() not in ("connection", "content-length",
                                             "transfer-encoding"):
                            self.send_header(k, v)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                finally:
                    c.close()

            do_GET = _relay
            do_POST = _relay

        self.srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.srv.daemon_threads = True
        self.url = "http://127.0.0.1:%d" % self.srv.server_address[1]
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def all_idle_for(self, s):
        """True when every open connection has been idle at least s
        seconds (also when none is open)."""
        now = time.monotonic()
        with self.lock:
            busy = self.opened - self.closed - len(self.idle_since)
            return busy == 0 and all(now - t >= s
                                     for t in self.idle_since.values())

    def snapshot(self):
        with self.lock:
            return self.opened, self.closed, self.resets, list(self.requests)

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


class KeepAliveCase(tf.ForwarderBase):
    partitions = 1
    rounds = 6

    def setUp(self):
        super().setUp()
        self.emu = self.start_emulator()
        tf.setup_table(self.emu)
        host, port = re.match(r"http://([^:]+):(\d+)", self.emu.url).groups()
        self.emu_origin = (host, int(port))

    def deliver_one_at_a_time(self, relay, adx_cfg, ready):
        """rounds batches, each sent once ready() holds; returns the
        route's forwarder counters and the relay's requests."""
        emu = self.emu
        tf.write_config(self.cfg, self.bs, "g-keepalive", self.journal,
                        relay.url, admin=True, adx_cfg=adx_cfg,
                        forwarder={"linger_ms": 10, "batch_max_rows": 100})
        p = self.start_kadx()
        line = p.wait_for("admin: listening on", timeout=30,
                          what="the admin listening line")
        aport = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
        p.wait_for("assigned", timeout=30, what="partitions assigned")
        for i in range(self.rounds):
            wait_until(ready, timeout=30, what="the connections idle")
            tf.produce(self.bs, self.parts, i, 1)
            self.wait_count(emu, i + 1, 60, p)
        _, s, _ = admin_req(aport, "GET", "/status")
        f = s["routes"][0]["forwarder"]
        opened, closed, resets, reqs = relay.snapshot()
        ingests = [r for r in reqs if "/v1/rest/ingest/" in r[2]]
        print("relay: %d connections, %d resets, %d requests (%d ingests); "
              "forwarder %s" % (opened, resets, len(reqs), len(ingests),
                                json.dumps({k: f[k] for k in (
                                    "requests", "batches_delivered",
                                    "transient_errors", "ambiguous",
                                    "dedupe_queries",
                                    "possible_duplicates")})))
        tf.audit(emu, self.parts, self.rounds)
        self.assertEqual(p.stop(), 0)
        return f, resets, ingests

    def check_clean(self, f, resets, ingests):
        self.assertEqual(f["batches_delivered"], self.rounds)
        self.assertEqual((f["transient_errors"], f["ambiguous"],
                          f["dedupe_queries"], resets), (0, 0, 0, 0), f)
        self.assertEqual(len(ingests), self.rounds, ingests)
        # each ingest on a connection of its own: none reused after idling
        self.assertEqual(len({r[0] for r in ingests}), self.rounds, ingests)

    def test_closed_connection_not_reused(self):
        """The server's FIN arrived before the next request."""
        relay = IdleRelay(self.emu_origin, close_s=0.3)
        self.addCleanup(relay.stop)
        self.check_clean(*self.deliver_one_at_a_time(
            relay, None, lambda: relay.snapshot()[0] == relay.snapshot()[1]))

    def test_idle_connection_not_reused(self):
        """The next request would meet the server's idle timeout: with
        adx.keepalive_idle_ms 1000 kadx does not reuse a connection idle
        1.2 s (the relay resets requests on connections idle 1.2 s)."""
        relay = IdleRelay(self.emu_origin, close_s=30, race_s=1.2)
        self.addCleanup(relay.stop)
        self.check_clean(*self.deliver_one_at_a_time(
            relay, {"keepalive_idle_ms": int(os.environ.get(
                "KADX_TEST_KEEPALIVE_IDLE_MS", "1000"))},
            lambda: relay.all_idle_for(1.3)))


if __name__ == "__main__":
    harness.main()
