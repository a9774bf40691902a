"""Day-one operations (issue 17): `kadx run` between the Kafka mock cluster
and the ADX emulator, checked for what a platform team relies on:

- TestProxy: `adx.proxy` sends every ADX request through a (loopback)
  forward proxy; `adx.no_proxy` bypasses it; the environment's http_proxy,
  HTTPS_PROXY, ALL_PROXY are ignored (CONFIG.md, "Proxy").
- TestReload: SIGHUP during delivery reloads (logged), the process stays,
  every event arrives exactly once; a bad file is refused with its reason
  and the running config stays; a secret read from a file is re-read.
- TestConnect: Kafka Connect's REST API on the admin port (admin/connect.c)
  with the documented response shapes and status codes, pause/resume
  stopping and restarting delivery, for a native config (one connector per
  route) and a connector config (one connector named by its "name").
- TestNotify: systemd's notify protocol (Type=notify): READY=1, WATCHDOG=1
  at half of WATCHDOG_USEC, RELOADING=1/READY=1 around SIGHUP, STOPPING=1.
- TestKql: `kadx kql -c FILE --sample EVENT` prints the KQL for the
  routes' tables, mappings and policies; run against an empty emulator
  database, it makes the table kadx then fills exactly once (the dedupe
  check verified at start). `kadx run --check --online` fails before the
  KQL ran (no table), passes after it, and fails with the IngestionTime
  policy off.
- TestTlsReload: the admin TLS certificate and key re-read on SIGHUP (issue
  18): new connections get the renewed certificate; a bad file keeps the
  previous one, with the reason in the log.
"""
import http.client
import http.server
import json
import os
import re
import signal
import shutil
import socket
import ssl
import threading
import urllib.parse

import harness
import kafka
import promparse
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


def admin_req(port, method, path, token=None):
    """(status, parsed JSON body or None, headers) of one admin request."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        hdrs = {"Authorization": "Bearer " + token} if token else {}
        conn.request(method, path, headers=hdrs)
        r = conn.getresponse()
        raw = r.read()
        return r.status, (json.loads(raw) if raw else None), dict(
            r.getheaders())
    finally:
        conn.close()


class TestConnect(tf.ForwarderBase):
    partitions = 2

    def admin_port(self, p):
        line = p.wait_for("admin: listening on", timeout=30,
                          what="the admin listening line")
        return int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))

    def test_native_routes_are_connectors(self):
        emu = self.start_emulator()
        tf.setup_table(emu)
        tf.write_config(self.cfg, self.bs, "g-connect", self.journal,
                        emu.url, admin=True)
        patch_config(self.cfg, lambda c: c["admin"].update(
            {"token": "connect-admin-token"}))
        p = self.start_kadx()
        port = self.admin_port(p)
        tok = "connect-admin-token"
        st, body, _ = admin_req(port, "GET", "/connectors")
        self.assertEqual((st, body), (200, ["gameplay"]))
        st, info, _ = admin_req(port, "GET", "/connectors/gameplay")
        self.assertEqual(st, 200)
        self.assertEqual(set(info), {"name", "config", "tasks", "type"})
        self.assertEqual(info["type"], "sink")
        self.assertEqual(info["tasks"], [{"connector": "gameplay", "task": 0}])
        cfg = info["config"]
        self.assertTrue(all(isinstance(v, str) for v in cfg.values()), cfg)
        self.assertTrue(cfg["connector.class"].endswith("KustoSinkConnector"))
        self.assertEqual(cfg["topics"], "gameplay")
        self.assertEqual(cfg["kusto.query.url"], emu.url)
        st, conf, _ = admin_req(port, "GET", "/connectors/gameplay/config")
        self.assertEqual((st, conf), (200, cfg))
        st, tasks, _ = admin_req(port, "GET", "/connectors/gameplay/tasks")
        self.assertEqual(st, 200)
        self.assertEqual(tasks[0]["id"], {"connector": "gameplay", "task": 0})
        self.assertIsInstance(tasks[0]["config"], dict)

        def status():
            st, b, _ = admin_req(port, "GET", "/connectors/gameplay/status")
            self.assertEqual(st, 200)
            self.assertEqual(set(b), {"name", "connector", "tasks", "type"})
            self.assertEqual(set(b["connector"]), {"state", "worker_id"})
            self.assertEqual(b["connector"]["worker_id"], "127.0.0.1:%d" % port)
            self.assertEqual(set(b["tasks"][0]) - {"trace"},
                             {"id", "state", "worker_id"})
            return b

        self.assertEqual(status()["connector"]["state"], "RUNNING")
        self.assertEqual(status()["tasks"][0]["state"], "RUNNING")
        tf.produce(self.bs, self.parts, 0, 10)
        self.wait_count(emu, 10 * self.partitions, 30, p)

        # pause: mutating calls need the admin token
        st, b, _ = admin_req(port, "PUT", "/connectors/gameplay/pause")
        self.assertEqual(st, 401)
        st, b, _ = admin_req(port, "PUT", "/connectors/gameplay/pause", tok)
        self.assertEqual((st, b), (202, None))
        self.assertEqual(status()["connector"]["state"], "PAUSED")
        self.assertEqual(status()["tasks"][0]["state"], "PAUSED")
        tf.produce(self.bs, self.parts, 10, 10)
        # journaled while paused, not sent
        wait_until(lambda: self.journaled(port) >= 20 * self.partitions,
                   timeout=30, what="the paused events in the journal")
        self.assertEqual(emu.count(tf.TABLE), 10 * self.partitions)
        # /metrics while paused: the oldest waiting event's age grows
        ages = []
        for _ in range(2):
            fams = self.metrics(port)
            ages.append(fams["kadx_oldest_undelivered_age_seconds"].get(
                route="gameplay"))
            wait_until(lambda: self.metrics(port)[
                "kadx_oldest_undelivered_age_seconds"].get(
                    route="gameplay") > ages[-1], timeout=10,
                what="the age to grow")
        self.assertGreater(ages[0], 0)
        (_, lab, v, _), = fams["kadx_build_info"].samples
        self.assertEqual((lab["version"], v), ("0.1.0", 1))
        self.assertIn("librdkafka", lab)
        self.assertGreater(fams["process_resident_memory_bytes"].get(),
                           4 << 20)
        self.assertGreater(fams["process_cpu_seconds_total"].get(), 0)
        self.assertGreaterEqual(fams["process_open_fds"].get(), 5)
        self.assertGreater(fams["process_max_fds"].get(),
                           fams["process_open_fds"].get())
        self.assertEqual(fams["process_cpu_seconds_total"].type, "counter")
        st, b, _ = admin_req(port, "PUT", "/connectors/gameplay/resume", tok)
        self.assertEqual((st, b), (202, None))
        self.wait_count(emu, 20 * self.partitions, 30, p)
        self.assertEqual(status()["connector"]["state"], "RUNNING")
        wait_until(lambda: self.metrics(port)[
            "kadx_oldest_undelivered_age_seconds"].get(route="gameplay") == 0,
            timeout=30, what="no undelivered event left")

        st, b, _ = admin_req(port, "POST", "/connectors/gameplay/restart", tok)
        self.assertEqual((st, b), (204, None))
        st, b, _ = admin_req(port, "POST", "/connectors/gameplay/restart"
                        "?includeTasks=true&onlyFailed=false", tok)
        self.assertEqual(st, 202)
        self.assertEqual(b["name"], "gameplay")
        st, b, _ = admin_req(port, "POST", "/connectors/gameplay/tasks/0/restart",
                        tok)
        self.assertEqual((st, b), (204, None))
        st, b, _ = admin_req(port, "GET", "/connectors/gameplay/tasks/0/status")
        self.assertEqual((st, b["id"], b["state"]), (200, 0, "RUNNING"))

        st, b, _ = admin_req(port, "GET", "/connectors?expand=status&expand=info")
        self.assertEqual(st, 200)
        self.assertEqual(set(b["gameplay"]), {"status", "info"})
        self.assertEqual(b["gameplay"]["status"]["type"], "sink")
        st, b, _ = admin_req(port, "GET", "/connector-plugins")
        self.assertEqual(st, 200)
        self.assertEqual(b[0]["type"], "sink")

        # errors: Connect's shape
        st, b, _ = admin_req(port, "GET", "/connectors/nope/status")
        self.assertEqual((st, b), (404, {"error_code": 404,
                                         "message": "Connector nope not "
                                                    "found"}))
        st, b, _ = admin_req(port, "GET", "/connectors/gameplay/tasks/7/status")
        self.assertEqual((st, b["error_code"]), (404, 404))
        st, b, h = admin_req(port, "POST", "/connectors", tok)
        self.assertEqual((st, b["error_code"], h.get("Allow")),
                         (405, 405, "GET"))
        st, b, _ = admin_req(port, "DELETE", "/connectors/gameplay", tok)
        self.assertEqual((st, b["error_code"]), (405, 405))
        st, b, _ = admin_req(port, "GET", "/connectors/gameplay/pause")
        self.assertEqual(st, 405)
        tf.audit(emu, self.parts, 20)
        self.assertEqual(p.stop(), 0)

    def metrics(self, port):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            r = conn.getresponse()
            self.assertEqual(r.status, 200)
            return promparse.parse(r.read().decode())
        finally:
            conn.close()

    def journaled(self, port):
        st, b, _ = admin_req(port, "GET", "/status")
        return b["intake"]["journaled"]

    def test_connector_config_is_one_connector(self):
        emu = self.start_emulator()
        tf.setup_table(emu)
        with open(self.cfg, "w") as f:
            json.dump({"name": "kusto-sink", "config": {
                "connector.class": "com.microsoft.azure.kusto.kafka.connect."
                                   "sink.KustoSinkConnector",
                "topics": "gameplay",
                "kusto.query.url": emu.url,
                "kusto.ingestion.url": emu.url,
                "aad.auth.strategy": "az_dev_token",
                "aad.auth.accesstoken": "any-token-123",
                "kusto.tables.topics.mapping":
                    "[{'topic': 'gameplay','db': 'leaderboard', "
                    "'table': 'GamePlay','format': 'json', "
                    "'mapping': 'kadx_mapping', 'streaming': 'true'}]"}}, f)
        # the connector config cannot name a journal: the default
        # ./kadx-journal.db, in the test's own directory; the admin port is
        # the default 127.0.0.1:8081 (suite tests do not run in parallel)
        p = harness.Proc([harness.KADX, "run", "-c", self.cfg,
                          "--bootstrap-servers", self.bs], cwd=self.tmp,
                         name="kadx run")
        p.wait_for("running (group", timeout=30, what="the running line")
        port = self.admin_port(p)
        st, body, _ = admin_req(port, "GET", "/connectors")
        self.assertEqual((st, body), (200, ["kusto-sink"]))
        st, b, _ = admin_req(port, "GET", "/connectors/kusto-sink/status")
        self.assertEqual(st, 200)
        self.assertEqual(b["connector"]["state"], "RUNNING")
        self.assertEqual(len(b["tasks"]), 1)
        st, b, _ = admin_req(port, "GET", "/connectors/kusto-sink/config")
        self.assertNotIn("any-token-123", json.dumps(b))
        self.assertEqual(b["name"], "kusto-sink")
        tf.produce(self.bs, self.parts, 0, 5)
        self.wait_count(emu, 5 * self.partitions, 30, p)
        # pausing the connector pauses the whole gateway
        st, _, _ = admin_req(port, "PUT", "/connectors/kusto-sink/pause")
        self.assertEqual(st, 202)
        st, b, _ = admin_req(port, "GET", "/status")
        self.assertTrue(b["paused"], b)
        st, _, _ = admin_req(port, "PUT", "/connectors/kusto-sink/resume")
        self.assertEqual(st, 202)
        st, b, _ = admin_req(port, "GET", "/status")
        self.assertFalse(b["paused"], b)
        tf.produce(self.bs, self.parts, 5, 5)
        self.wait_count(emu, 10 * self.partitions, 30, p)
        self.assertEqual(p.stop(), 0)


class TestNotify(tf.ForwarderBase):
    partitions = 1

    def test_ready_watchdog_reload_stopping(self):
        emu = self.start_emulator()
        tf.setup_table(emu)
        tf.write_config(self.cfg, self.bs, "g-notify", self.journal, emu.url)
        path = os.path.join(self.tmp, "notify.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(0.2)
        self.addCleanup(sock.close)
        got = []

        def received(msg):
            def seen():
                try:
                    got.append(sock.recv(4096).decode())
                except socket.timeout:
                    pass
                return sum(1 for g in got if msg in g)
            return seen

        p = harness.kadx("run", "-c", self.cfg, name="kadx run",
                         env={"NOTIFY_SOCKET": path,
                              "WATCHDOG_USEC": "200000"})
        wait_until(received("READY=1"), timeout=30, what="READY=1")
        # sent once the gateway runs (after its "running" line)
        p.wait_for("running (group", timeout=10, what="the running line")
        # every 100 ms: at least 3 within a generous deadline
        wait_until(lambda: received("WATCHDOG=1")() >= 3, timeout=10,
                   what="three WATCHDOG=1")
        p.signal(signal.SIGHUP)
        wait_until(received("RELOADING=1"), timeout=10, what="RELOADING=1")
        wait_until(lambda: received("READY=1")() >= 2, timeout=10,
                   what="READY=1 after the reload")
        p.signal(signal.SIGTERM)
        wait_until(received("STOPPING=1"), timeout=10, what="STOPPING=1")
        self.assertEqual(p.wait(30), 0)


def peer_cert_der(port):
    """The DER certificate the admin port presents to a new connection."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=10) as raw:
        with ctx.wrap_socket(raw) as s:
            return s.getpeercert(binary_form=True)


def pem_der(path):
    with open(path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


class TestTlsReload(tf.ForwarderBase):
    partitions = 1

    def test_hup_reloads_admin_certificate(self):
        import test_security as ts
        old = os.path.join(self.tmp, "old")
        new = os.path.join(self.tmp, "new")
        live = os.path.join(self.tmp, "live")
        for d in (old, new, live):
            os.mkdir(d)
        old_cert, old_key = ts.make_cert(old)
        new_cert, new_key = ts.make_cert(new)
        self.assertNotEqual(pem_der(old_cert), pem_der(new_cert))
        cert = os.path.join(live, "tls.crt")
        key = os.path.join(live, "tls.key")
        shutil.copy(old_cert, cert)
        shutil.copy(old_key, key)
        emu = self.start_emulator()
        tf.setup_table(emu)
        tf.write_config(self.cfg, self.bs, "g-tlshup", self.journal, emu.url)
        ts.set_admin(self.cfg, token=ts.TOKEN, token_on_get=True,
                     tls_cert=cert, tls_key=key)
        p = self.start_kadx()
        port = ts.admin_port(p)
        self.assertEqual(peer_cert_der(port), pem_der(old_cert))
        tf.produce(self.bs, self.parts, 0, 10)
        self.wait_count(emu, 10, 30, p)
        # renewed in place (what certbot or cert-manager does), then HUP
        shutil.copy(new_cert, cert)
        shutil.copy(new_key, key)
        line = TestReload.hup(self, p, "admin: TLS certificate reloaded")
        self.assertIn(cert, line)
        self.assertEqual(peer_cert_der(port), pem_der(new_cert))
        code, body = ts.curl("https://127.0.0.1:%d/status" % port, new_cert,
                             ts.TOKEN)
        self.assertEqual(code, 200, body)
        # a broken certificate file: the renewed pair stays, the log says why
        with open(cert, "w") as f:
            f.write("-----BEGIN CERTIFICATE-----\nnot base64\n")
        line = TestReload.hup(self, p, "TLS certificate not reloaded")
        self.assertIn("the previous one stays in use", line)
        self.assertIn("cannot load certificate '%s'" % cert, line)
        self.assertEqual(peer_cert_der(port), pem_der(new_cert))
        # a key that does not match the certificate: refused too
        shutil.copy(old_cert, cert)
        line = TestReload.hup(self, p, "TLS certificate not reloaded")
        self.assertIn("private key", line)  # load or match: OpenSSL says which
        self.assertEqual(peer_cert_der(port), pem_der(new_cert))
        code, body = ts.curl("https://127.0.0.1:%d/status" % port, new_cert,
                             ts.TOKEN)
        self.assertEqual(code, 200, body)
        # still delivering
        tf.produce(self.bs, self.parts, 10, 10)
        self.wait_count(emu, 20, 30, p)
        tf.audit(emu, self.parts, 20)
        self.assertEqual(p.stop(), 0)


def kql_blocks(text):
    """The management commands of a setup.kql-style text, as
    docker/kql/apply.sh sends them (// lines dropped, blocks joined)."""
    out, cur = [], []
    for line in text.splitlines() + [""]:
        if line.strip().startswith("//"):
            continue
        if not line.strip():
            if cur and cur[0].startswith("."):
                out.append(" ".join(cur))
            cur = []
            continue
        cur.append(line.strip())
    return out


class TestKql(tf.ForwarderBase):
    partitions = 2

    def check_online(self, *extra):
        """`kadx run --check --online`: (exit status, its report)."""
        p = harness.kadx("run", "--check", "--online", "-c", self.cfg,
                         *extra, name="kadx check online")
        rc = p.wait(90)
        json.loads("\n".join(p.out))  # stdout stays the config's JSON
        return rc, "\n".join(p.err)

    def test_printed_kql_makes_an_exactly_once_table(self):
        n = 200
        emu = self.start_emulator()
        tf.write_config(self.cfg, self.bs, "g-kql", self.journal, emu.url)
        patch_config(self.cfg, lambda c: c["routes"][0].update(
            {"meta": {"topic": "KafkaTopic", "partition": "KafkaPartition",
                      "offset": "KafkaOffset", "batch_id": "kadx_batch"},
             "dedupe_column": "BatchId"}))
        sample = os.path.join(self.tmp, "event.json")
        with open(sample, "w") as f:
            f.write(tf.event(0, 0))
        # without a sample the mapping is only a comment (it would replace
        # the payload's entries)
        p = harness.kadx("kql", "-c", self.cfg, name="kadx kql")
        self.assertEqual(p.wait(30), 0, p.tail())
        text = "\n".join(p.out)
        self.assertIn("\n// .create-or-alter table GamePlay ingestion json "
                      "mapping 'kadx_mapping'", text)
        self.assertFalse([b for b in kql_blocks(text) if "mapping" in b])
        p = harness.kadx("kql", "-c", self.cfg, "--sample", sample,
                         name="kadx kql")
        self.assertEqual(p.wait(30), 0, p.tail())
        blocks = kql_blocks("\n".join(p.out))
        self.assertEqual(blocks[0], ".alter database leaderboard policy "
                                    "streamingingestion enable")
        self.assertEqual(blocks[1],
                         ".create-merge table GamePlay (playerId: long, "
                         "gameId: long, win: long, stake: long, eventTime: "
                         "datetime, KafkaTopic: string, KafkaPartition: int, "
                         "KafkaOffset: long, BatchId: string)")
        self.assertEqual(blocks[2],
                         ".alter table GamePlay policy ingestiontime true")
        m = re.match(r"^\.create-or-alter table GamePlay ingestion json "
                     r"mapping 'kadx_mapping' '(.*)'$", blocks[3])
        self.assertIsNotNone(m, blocks[3])
        paths = {e["column"]: e["Properties"]["Path"]
                 for e in json.loads(m.group(1))}
        self.assertEqual(paths["BatchId"], "$.kadx_batch")
        self.assertEqual(paths["playerId"], "$.playerId")
        self.assertEqual(len(blocks), 4)
        # before the KQL: the online check finds no table, exit 1
        rc, lines = self.check_online()
        self.assertEqual(rc, 1, lines)
        self.assertIn("FAIL adx: route 'gameplay': table leaderboard.GamePlay",
                      lines)
        self.assertIn("ok   kafka: topic 'gameplay' (route 'gameplay'): "
                      "%d partitions" % self.partitions, lines)
        for b in blocks:  # an empty database: the KQL makes everything
            emu.mgmt(b)
        rc, lines = self.check_online()
        self.assertEqual(rc, 0, lines)
        for want in ("ok   kafka: metadata from",
                     "ok   kafka: group 'g-kql': coordinator answers",
                     "ok   adx: no authentication configured",
                     "ok   adx: route 'gameplay': table leaderboard.GamePlay "
                     "exists",
                     "ok   adx: route 'gameplay': dedupe column 'BatchId' is "
                     "string",
                     "ok   adx: route 'gameplay': IngestionTime policy on",
                     "ok   adx: route 'gameplay': streaming ingestion enabled "
                     "on the database",
                     "ok   adx: route 'gameplay': json mapping 'kadx_mapping' "
                     "exists and maps the dedupe column BatchId",
                     "online check: all ok"):
            self.assertIn(want, lines)
        # the policy off: said, with the command that fixes it
        emu.mgmt(".alter table GamePlay policy ingestiontime false")
        rc, lines = self.check_online()
        self.assertEqual(rc, 1, lines)
        self.assertIn("FAIL adx: route 'gameplay': IngestionTime policy off",
                      lines)
        emu.mgmt(".alter table GamePlay policy ingestiontime true")
        # Kafka unreachable (a closed loopback port): said within the
        # bounded wait, and the ADX checks still run
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = "127.0.0.1:%d" % s.getsockname()[1]
        rc, lines = self.check_online("--bootstrap-servers", closed)
        self.assertEqual(rc, 1, lines)
        self.assertIn("FAIL kafka: no metadata from the brokers within", lines)
        self.assertIn("ok   adx: route 'gameplay': IngestionTime policy on",
                      lines)
        # kadx checks the exactly-once assumptions at start (issue 18)
        k = self.start_kadx()
        k.wait_for("exactly once verified", timeout=60,
                   what="the dedupe check's verdict")
        tf.produce(self.bs, self.parts, 0, n)
        self.wait_count(emu, n * self.partitions, 60, k)
        tf.audit(emu, self.parts, n)
        rows = emu.query("GamePlay | where isempty(BatchId) | count")
        self.assertEqual(rows[0]["Count"], 0)
        self.assertEqual(k.stop(), 0)
        # a config error names the key; a bad sample says so
        with open(self.cfg) as f:
            good = f.read()
        with open(self.cfg, "w") as f:
            f.write(good.replace('"linger_ms"', '"lingr_ms"'))
        p = harness.kadx("kql", "-c", self.cfg, name="kadx kql")
        self.assertEqual(p.wait(30), 2)
        self.assertIn("forwarder.lingr_ms", p.tail())
        with open(self.cfg, "w") as f:
            f.write(good)
        with open(sample, "w") as f:
            f.write("[1, 2]")
        p = harness.kadx("kql", "-c", self.cfg, "--sample", sample,
                         name="kadx kql")
        self.assertEqual(p.wait(30), 1)
        self.assertIn("is not one JSON object", p.tail())


if __name__ == "__main__":
    harness.main()
