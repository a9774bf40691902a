"""Day-one operations (issue 17): `kadx run` between the Kafka mock cluster
and the ADX emulator, checked for what a platform team relies on:

- TestProxy: `adx.proxy` sends every ADX request through a (loopback)
  forward proxy; `adx.no_proxy` bypasses it; the environment's http_proxy,
  HTTPS_PROXY, ALL_PROXY are ignored (CONFIG.md, "Proxy").
"""
import http.client
import http.server
import json
import os
import re
import threading
import urllib.parse

import harness
import kafka
import test_forwarder as tf
from harness import wait_until


class CountingProxy:
    """A loopback HTTP forward proxy (absolute-form requests, RFC 9112
    3.2.2): relays each request to its origin and records the request line.
    Only plain http origins (the emulator) are relayed."""

    def __init__(self):
        self.seen = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _relay(self):
                with outer.lock:
                    outer.seen.append("%s %s" % (self.command, self.path))
                u = urllib.parse.urlsplit(self.path)
                if u.scheme != "http" or u.hostname != "127.0.0.1":
                    self.send_error(502, "not relayed")
                    return
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else None
                hdrs = {k: v for k, v in self.headers.items()
                        if k.lower() not in ("proxy-connection",
                                             "connection", "host")}
                c = http.client.HTTPConnection(u.hostname, u.port,
                                               timeout=30)
                try:
                    path = u.path + ("?" + u.query if u.query else "")
                    c.request(self.command, path, body=body, headers=hdrs)
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

    def ingests(self):
        with self.lock:
            return [s for s in self.seen if "/v1/rest/ingest/" in s]

    def stop(self):
        self.srv.shutdown()
        self.srv.server_close()


def patch_config(path, fn):
    with open(path) as f:
        cfg = json.load(f)
    fn(cfg)
    with open(path, "w") as f:
        json.dump(cfg, f)


class TestProxy(tf.ForwarderBase):
    partitions = 2

    def setUp(self):
        super().setUp()
        self.proxy = CountingProxy()
        self.addCleanup(self.proxy.stop)
        self.emu = self.start_emulator()
        tf.setup_table(self.emu)

    def deliver(self, group, adx_extra, env=None, start=0, n=20):
        tf.write_config(self.cfg, self.bs, group, self.journal, self.emu.url)
        patch_config(self.cfg, lambda c: c["adx"].update(adx_extra))
        p = harness.kadx("run", "-c", self.cfg, env=env, name="kadx run")
        p.wait_for("running (group", timeout=30, what="the running line")
        tf.produce(self.bs, self.parts, start, n)
        self.wait_count(self.emu, (start + n) * len(self.parts), 30, p)
        self.assertEqual(p.stop(), 0)

    def test_adx_proxy_carries_every_request(self):
        self.deliver("g-proxy", {"proxy": self.proxy.url})
        self.assertTrue(self.proxy.ingests(), self.proxy.seen)
        self.assertTrue(all(s.startswith("POST " + self.emu.url)
                            for s in self.proxy.ingests()), self.proxy.seen)

    def test_environment_proxy_ignored_and_no_proxy_honoured(self):
        """The environment names the proxy: kadx goes direct. Then
        adx.proxy names a dead port and adx.no_proxy lists 127.0.0.1:
        delivery still works, nothing reaches a proxy."""
        env = {k: self.proxy.url for k in ("http_proxy", "HTTP_PROXY",
                                           "https_proxy", "HTTPS_PROXY",
                                           "all_proxy", "ALL_PROXY")}
        env["no_proxy"] = env["NO_PROXY"] = ""
        self.deliver("g-env", {}, env=env)
        dead = "http://127.0.0.1:%d" % harness.free_port()
        self.deliver("g-env", {"proxy": dead, "no_proxy": "127.0.0.1"},
                     start=20)
        self.assertEqual(self.proxy.seen, [])


if __name__ == "__main__":
    harness.main()
