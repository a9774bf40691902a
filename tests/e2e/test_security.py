"""Security hardening (issue 18) on a real `kadx run` (Kafka mock cluster ->
kadx -> ADX emulator).

- Private files: started under umask 000, every file kadx creates (journal,
  -wal, -shm, .lock, .settled, `recover export` and `salvage` outputs) is
  0600 and every directory 0700; a journal widened to 0644 is named in a
  warning at the next start.
- Admin over TLS with admin.token_on_get: `curl --cacert` with the token
  works on /status and /metrics (what Prometheus' bearer-token scrape
  config sends), without it 401, /healthz and /readyz open; plain HTTP to
  the TLS port gets no answer.
- Admin limits: a `wrk` flood of /status on more connections than
  admin.max_connections while events are delivered: every event arrives
  exactly once and the server never handed out more requests than
  max_connections x max_requests_per_s allows.
- Exactly-once assumptions: a table whose IngestionTime policy is off makes
  /readyz red for the route with the reason, and an ambiguous send is then
  resent and counted as a possible duplicate; with the policy on, green.
"""
import json
import os
import re
import shutil
import ssl
import stat
import subprocess
import urllib.error
import urllib.request

import harness
import test_forwarder as tf
from harness import wait_until

TOKEN = "security-e2e-token-1234"


def set_admin(path, **admin):
    with open(path) as f:
        cfg = json.load(f)
    cfg["admin"] = dict({"listen": "127.0.0.1:0"}, **admin)
    with open(path, "w") as f:
        json.dump(cfg, f)


def admin_port(proc):
    line = proc.wait_for("admin: listening on", timeout=30,
                         what="the admin listening line")
    return int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))


def make_cert(d):
    """A self-signed EC certificate for 127.0.0.1 (and its key) in d."""
    cert = os.path.join(d, "admin-cert.pem")
    key = os.path.join(d, "admin-key.pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
         "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out",
         cert, "-days", "2", "-subj", "/CN=localhost", "-addext",
         "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True, timeout=60)
    return cert, key


def curl(url, cacert=None, token=None):
    """(HTTP status, body) from the curl CLI; status 0 = no HTTP answer."""
    args = ["curl", "-sS", "--max-time", "10", "-o", "-", "-w",
            "\n%{http_code}", url]
    if cacert:
        args += ["--cacert", cacert]
    if token:
        args += ["-H", "Authorization: Bearer " + token]
    p = subprocess.run(args, capture_output=True, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    body, _, code = out.rpartition("\n")
    return int(code or 0), body


class SecurityCase(tf.ForwarderBase):
    partitions = 2

    def modes(self, root):
        """{path: (is_dir, mode)} of everything under root."""
        got = {}
        for d, dirs, files in os.walk(root):
            for n in dirs:
                p = os.path.join(d, n)
                got[p] = (True, stat.S_IMODE(os.lstat(p).st_mode))
            for n in files:
                p = os.path.join(d, n)
                got[p] = (False, stat.S_IMODE(os.lstat(p).st_mode))
        return got

    def test_private_files_under_umask_000(self):
        n = 300
        jdir = os.path.join(self.tmp, "kadx")
        os.mkdir(jdir, 0o700)
        self.journal = os.path.join(jdir, "journal.db")
        old = os.umask(0)
        self.addCleanup(os.umask, old)
        emu = self.start_emulator()
        tf.setup_table(emu)
        tf.write_config(self.cfg, self.bs, "g-perm", self.journal, emu.url)
        tf.produce(self.bs, self.parts, 0, n)
        k = self.start_kadx()
        self.wait_count(emu, n * self.partitions, 60, k)
        # while it runs: the journal, its -wal/-shm, lock and settled file
        want = {self.journal + s for s in
                ("", "-wal", "-shm", ".lock", ".settled")}
        wait_until(lambda: all(os.path.exists(p) for p in want),
                   timeout=20, what="the settled file")
        running = self.modes(jdir)
        self.assertLessEqual(want, set(running))
        # a read-only export while it runs goes through a snapshot (in
        # TMPDIR, removed afterwards); its output is private too
        out1 = os.path.join(jdir, "export-live.jsonl")
        rc, _, err = harness.run("recover", self.journal, "export", "all",
                                 "--read-only", "-q", "-o", out1,
                                 env={"TMPDIR": jdir})
        self.assertEqual(rc, 0, err)
        self.assertIn("reading a snapshot", err)
        self.assertEqual(k.stop(), 0)
        # stopped: export and salvage
        out2 = os.path.join(jdir, "export.jsonl")
        rc, _, err = harness.run("recover", self.journal, "export", "all",
                                 "-q", "-o", out2)
        self.assertEqual(rc, 0, err)
        with open(out2) as f:
            self.assertEqual(sum(1 for _ in f), n * self.partitions)
        salv = os.path.join(jdir, "salvaged.db")
        rc, _, err = harness.run("recover", self.journal, "salvage", "--all",
                                 "-q", "-o", salv)
        self.assertEqual(rc, 0, err)
        got = dict(running)
        got.update(self.modes(jdir))
        self.assertIn(out1, got)
        self.assertIn(salv, got)
        bad = {p: "%s %04o" % ("dir" if isdir else "file", m)
               for p, (isdir, m) in got.items()
               if m != (0o700 if isdir else 0o600)}
        self.assertEqual(bad, {}, "created with other modes than 0600/0700")
        # nothing left behind in TMPDIR by the snapshot
        self.assertEqual([p for p in got if "kadx-recover-" in p], [])

        # an existing journal with wider permissions: a warning naming it
        os.chmod(self.journal, 0o644)
        k = self.start_kadx()
        line = k.wait_for("others may read", timeout=20,
                          what="the permission warning")
        self.assertIn("'%s' has mode 0644" % self.journal, line)
        self.assertNotIn(".lock'", line)
        self.assertEqual(k.stop(), 0)

    def start_tls(self, n, **admin):
        self.cert, key = make_cert(self.tmp)
        self.emu = self.start_emulator()
        tf.setup_table(self.emu)
        tf.write_config(self.cfg, self.bs, "g-tls-%d" % id(self),
                        self.journal, self.emu.url)
        set_admin(self.cfg, token=TOKEN, token_on_get=True,
                  tls_cert=self.cert, tls_key=key, **admin)
        tf.produce(self.bs, self.parts, 0, n)
        self.k = self.start_kadx()
        self.port = admin_port(self.k)
        self.base = "https://127.0.0.1:%d" % self.port

    def test_tls_status_with_token(self):
        n = 100
        self.start_tls(n)
        self.assertIn("(https)", self.k.wait_for("admin: listening on"))
        self.wait_count(self.emu, n * self.partitions, 60, self.k)
        code, body = curl(self.base + "/status", self.cert, TOKEN)
        self.assertEqual(code, 200, body)
        st = json.loads(body)
        self.assertEqual(st["routes"][0]["name"], "gameplay")
        # what Prometheus sends with `authorization: {credentials: ...}`
        code, body = curl(self.base + "/metrics", self.cert, TOKEN)
        self.assertEqual(code, 200, body)
        self.assertIn("kadx_delivered_events_total", body)
        # Python's ssl module agrees (verifies the chain and the IP SAN)
        ctx = ssl.create_default_context(cafile=self.cert)
        req = urllib.request.Request(self.base + "/status",
                                     headers={"Authorization":
                                              "Bearer " + TOKEN})
        with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
            self.assertEqual(r.status, 200)
        self.assertEqual(self.k.stop(), 0)

    def test_tls_get_without_token_401(self):
        self.start_tls(10)
        for path in ("/status", "/metrics", "/dead-letters"):
            code, body = curl(self.base + path, self.cert)
            self.assertEqual(code, 401, (path, body))
            self.assertNotIn(TOKEN, body)
            code, body = curl(self.base + path, self.cert, TOKEN + "x")
            self.assertEqual(code, 401, (path, body))
        # a POST without it is refused as before
        p = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w",
                            "%{http_code}", "--cacert", self.cert, "-XPOST",
                            "-d", "{}", self.base + "/pause"],
                           capture_output=True, timeout=30)
        self.assertEqual(p.stdout.decode(), "401")
        # without --cacert the self-signed certificate is refused
        code, _ = curl(self.base + "/healthz")
        self.assertEqual(code, 0)
        # plain HTTP on the TLS port: no HTTP answer
        code, _ = curl("http://127.0.0.1:%d/healthz" % self.port)
        self.assertNotEqual(code, 200)
        self.assertTrue(self.k.alive())
        self.assertEqual(self.k.stop(), 0)

    def test_tls_probes_open(self):
        n = 50
        self.start_tls(n)
        self.wait_count(self.emu, n * self.partitions, 60, self.k)
        code, body = curl(self.base + "/healthz", self.cert)
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["status"], "ok")
        wait_until(lambda: curl(self.base + "/readyz", self.cert)[0] == 200,
                   timeout=30, what="/readyz green without a token")
        self.assertEqual(self.k.stop(), 0)

    def test_wrk_flood_does_not_starve_delivery(self):
        """wrk on 32 connections against /status (max_connections 8,
        5 requests/s each) while 4000 events are produced and delivered.
        Checked without timing: every event arrives exactly once, wrk got
        no more answers than 8 connections x 5/s allow (plus each one's
        burst), none of them an error, and /healthz answers after."""
        if shutil.which("wrk") is None:
            self.fail("wrk is not installed (.ci/install-deps installs it)")
        n = 2000
        rate, maxc, secs = 5, 8, 6
        self.emu = self.start_emulator()
        tf.setup_table(self.emu)
        tf.write_config(self.cfg, self.bs, "g-wrk", self.journal,
                        self.emu.url)
        set_admin(self.cfg, max_connections=maxc, max_requests_per_s=rate)
        self.k = self.start_kadx()
        self.port = admin_port(self.k)
        self.k.wait_for("assigned", timeout=60, what="partitions assigned")
        w = harness.Proc(["wrk", "-t", "2", "-c", "32", "-d", "%ds" % secs,
                          "--timeout", "5s",
                          "http://127.0.0.1:%d/status" % self.port],
                         name="wrk")
        tf.produce(self.bs, self.parts, 0, n)
        self.wait_count(self.emu, n * self.partitions, 60, self.k)
        self.assertEqual(w.wait(timeout=60), 0, w.tail())
        # over the cap connections wait in the kernel's backlog: once wrk
        # lets go, the server answers again
        code, body = curl("http://127.0.0.1:%d/healthz" % self.port)
        self.assertEqual(code, 200, body)
        out = "\n".join(w.out)
        m = re.search(r"(\d+) requests in ([\d.]+)s", out)
        self.assertIsNotNone(m, out)
        non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
        # over the connection cap: 503 and close (wrk reconnects)
        served = int(m.group(1)) - (int(non2xx.group(1)) if non2xx else 0)
        took = float(m.group(2))
        self.assertGreater(served, 0, out)
        self.assertLessEqual(served, maxc * rate * (took + 1) + maxc * rate,
                             out)
        self.assertIsNone(non2xx, out)
        self.assertEqual(self.k.stop(), 0)
        tf.audit(self.emu, self.parts, n)

    def start_eo(self, policy_on):
        self.emu = self.start_emulator()
        tf.setup_table(self.emu)
        self.emu.mgmt(".alter table GamePlay policy ingestiontime %s" %
                      ("true" if policy_on else "false"))
        tf.write_config(self.cfg, self.bs, "g-eo-%d" % id(self),
                        self.journal, self.emu.url)
        set_admin(self.cfg)
        self.k = self.start_kadx()
        self.port = admin_port(self.k)

    def readyz(self):
        code, body = curl("http://127.0.0.1:%d/readyz" % self.port)
        return code, json.loads(body) if body else None

    def route_check(self):
        _, r = self.readyz()
        return [c for c in r["checks"] if c["name"] == "route gameplay"][0]

    def test_ingestiontime_policy_off_readyz_red(self):
        n = 200
        self.start_eo(False)
        line = self.k.wait_for("is not exactly once", timeout=30,
                               what="the exactly-once error")
        self.assertIn("IngestionTime policy is off", line)
        chk = wait_until(
            lambda: (lambda c: c if not c["ok"] else None)(
                self.route_check()), timeout=20, what="route check red")
        self.assertIn("not exactly once", chk["detail"])
        self.assertIn("IngestionTime policy is off", chk["detail"])
        self.assertEqual(self.readyz()[0], 503)
        # it does not pretend: an applied-then-reset send is resent and
        # counted as a possible duplicate, not "resolved" by the query
        self.emu.faults(reset_count=1)
        tf.produce(self.bs, self.parts, 0, n)
        self.wait_count(self.emu, n * self.partitions, 60, self.k)
        wait_until(lambda: self.emu.stats()["faults_fired"]["reset"] == 1,
                   timeout=20, what="the reset fault")
        st = wait_until(
            lambda: (lambda s: s if s["routes"][0]["forwarder"]
                     ["possible_duplicates"] >= 1 else None)(
                json.loads(curl("http://127.0.0.1:%d/status" %
                                self.port)[1])),
            timeout=30, what="a possible duplicate counted")
        self.assertEqual(st["routes"][0]["forwarder"]["dedupe_queries"], 0)
        self.assertNotIn("ambiguous send resolved", "\n".join(
            self.k.lines()))
        self.assertEqual(self.k.stop(), 0)

    def test_ingestiontime_policy_on_readyz_green(self):
        self.start_eo(True)
        self.k.wait_for("exactly once verified", timeout=30,
                        what="the exactly-once check")
        wait_until(lambda: self.readyz()[0] == 200, timeout=30,
                   what="/readyz green")
        chk = self.route_check()
        self.assertTrue(chk["ok"], chk)
        self.assertNotIn("not exactly once", "\n".join(self.k.lines()))
        self.assertEqual(self.k.stop(), 0)


if __name__ == "__main__":
    harness.main()
