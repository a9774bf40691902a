"""Day-one operations (issue 17): `kadx run` between the Kafka mock cluster
and the ADX emulator, checked for what a platform team relies on:

- TestProxy: `adx.proxy` sends every ADX request through a (loopback)
  forward proxy; `adx.no_proxy` bypasses it; the environment's http_proxy,
  HTTPS_PROXY, ALL_PROXY are ignored (CONFIG.md, "Proxy").
- TestReload: SIGHUP during delivery reloads (logged), the process stays,
  every event arrives exactly once; a bad file is refused with its reason
  and the running config stays; a secret read from a file is re-read.
"""
import http.client
import http.server
import json
import os
import re
import signal
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


def count(proc, needle):
    return sum(1 for l in proc.lines() if needle in l)


class TestReload(tf.ForwarderBase):
    partitions = 4

    def hup(self, p, needle):
        """SIGHUP, then waits for one more line containing needle."""
        before = count(p, needle)
        p.signal(signal.SIGHUP)
        wait_until(lambda: count(p, needle) > before or not p.alive(),
                   timeout=20, what="%r after SIGHUP" % needle)
        self.assertTrue(p.alive(), "kadx died on SIGHUP\n" + p.tail())
        return [l for l in p.lines() if needle in l][-1]

    def test_hup_during_delivery_loses_nothing(self):
        n = 1500 if harness.FULL else 400
        emu = self.start_emulator()
        tf.setup_table(emu)
        tf.write_config(self.cfg, self.bs, "g-hup", self.journal, emu.url,
                        forwarder={"linger_ms": 20, "batch_max_rows": 50})
        p = self.start_kadx()
        prod = tf.Producer(self.bs, self.parts, n, 50)
        prod.start()
        linger = [80, 5, 200, 30, 60]
        hups = 0
        # reloads spread over the delivery: each one after more rows landed
        for i, lg in enumerate(linger):
            patch_config(self.cfg, lambda c, lg=lg: (
                c["forwarder"].update({"linger_ms": lg,
                                       "max_inflight": 1 + i % 4}),
                c.update({"log": {"level": "debug" if i % 2 else "info"}})))
            line = self.hup(p, "reload: '%s' applied" % self.cfg)
            hups += 1
            self.assertIn("forwarder.linger_ms", line)
            want = (i + 1) * n * self.partitions // (len(linger) + 1)
            self.wait_count(emu, want, 60, p)
        prod.finish()
        # a key that needs a restart: logged, running value kept
        patch_config(self.cfg, lambda c: c["journal"].update(
            {"max_bytes": "64MiB"}))
        self.hup(p, "needs a restart (running values kept): "
                    "journal.max_bytes")
        self.wait_count(emu, n * self.partitions, 60, p)
        tf.audit(emu, self.parts, n)
        self.assertGreaterEqual(count(p, "reload: '"), hups + 1)
        self.assertEqual(p.stop(), 0)

    def test_bad_reload_keeps_running_config(self):
        emu = self.start_emulator()
        tf.setup_table(emu)
        tf.write_config(self.cfg, self.bs, "g-badhup", self.journal, emu.url)
        with open(self.cfg) as f:
            good = f.read()
        p = self.start_kadx()
        tf.produce(self.bs, self.parts, 0, 20)
        self.wait_count(emu, 20 * self.partitions, 30, p)
        kept = "not applied, the running configuration stays: "
        bad = [
            ("{ not json", "not valid JSON"),
            (good.replace('"linger_ms"', '"lingr_ms"'),
             "unknown key 'forwarder.lingr_ms'"),
            (good.replace('"topic": "gameplay"', '"topic": "other"'),
             "routes[0] ('gameplay') changed its name or topic"),
            (good.replace('"mapping": "kadx_mapping"',
                          '"mapping": "${file:/nonexistent/x}"'),
             "cannot read '/nonexistent/x'"),
        ]
        for text, why in bad:
            with open(self.cfg, "w") as f:
                f.write(text)
            line = self.hup(p, kept)
            self.assertIn(why, line)
        # still delivering with the running config
        tf.produce(self.bs, self.parts, 20, 20)
        self.wait_count(emu, 40 * self.partitions, 30, p)
        tf.audit(emu, self.parts, 40)
        self.assertEqual(p.stop(), 0)

    def test_secret_file_reread(self):
        """A wrong static token pauses the route (401); the right one
        written into the token file and SIGHUP resume it."""
        emu = self.start_emulator(auth="token", static_token="right-token-1")
        tf.setup_table(emu)
        tok = os.path.join(self.tmp, "token")
        with open(tok, "w") as f:
            f.write("wrong-token-0\n")
        tf.write_config(self.cfg, self.bs, "g-secret", self.journal, emu.url,
                        auth={"method": "static_token",
                              "token": "${file:%s}" % tok})
        p = self.start_kadx()
        tf.produce(self.bs, self.parts, 0, 10)
        p.wait_for("paused-config", timeout=30, what="the 401 pause")
        self.assertEqual(emu.count(tf.TABLE), 0)
        with open(tok, "w") as f:
            f.write("right-token-1\n")
        line = self.hup(p, "reload: '%s' applied" % self.cfg)
        self.assertIn("adx.auth.token", line)
        self.assertNotIn("right-token-1", "\n".join(p.lines()))
        self.wait_count(emu, 10 * self.partitions, 30, p)
        tf.audit(emu, self.parts, 10)
        self.assertEqual(p.stop(), 0)


if __name__ == "__main__":
    harness.main()
