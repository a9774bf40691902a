"""run_java.py - the meson test conformance-java: the ADX emulator driven by
Microsoft's Java SDK (kusto-ingest/kusto-data, tests/conformance/java).

Compiles java/src with javac against java/lib/ (the jars .ci/install-deps
resolved from the pinned pom) into a temporary folder and runs it twice,
each time against a fresh `kadx adx-emulator`, then checks the rows once
more with a KQL query of its own:
1. plain: http://localhost:PORT, emulator without auth (over http:// the
   Java SDK sends no token: see Conformance.java);
2. tls: https://localhost:TLSPORT, the emulator with --auth token behind a
   TLS front made here (a throwaway self-signed certificate from openssl,
   trusted by the JVM through a PKCS12 trust store made with keytool); the
   SDK runs its token path: GET /v1/rest/auth/metadata, a token from the
   emulator's /{tenant}/oauth2/v2.0/token, bearer on every call. The front
   records the request lines it forwards, so the test sees which calls the
   SDK made first.
Exits 77 (skipped) when javac or the jars are missing. Loopback only; the
JVM gets no proxy.
"""
import asyncio
import re
import ssl
import threading
import glob
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import adx  # noqa: E402

CLIENT_ID = "java-conformance-app"
CLIENT_SECRET = "java-conformance-secret"
REQ_LINE = re.compile(rb"(GET|POST) (/\S*) HTTP/1\.1\r\n")


class TlsFront:
    """TLS on 127.0.0.1:<free port> in front of a plain HTTP server; keeps
    the request lines (method, path) it forwards."""

    def __init__(self, backend_port, cert, key):
        self.backend_port = backend_port
        self.ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self.ctx.load_cert_chain(cert, key)
        self.seen = []
        self.loop = asyncio.new_event_loop()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self.thread.start()
        if not self.ready.wait(10):
            raise RuntimeError("the TLS front did not start")
        return self

    def stop(self):
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def _run(self):
        asyncio.set_event_loop(self.loop)
        srv = self.loop.run_until_complete(asyncio.start_server(
            self._conn, "127.0.0.1", 0, ssl=self.ctx))
        self.port = srv.sockets[0].getsockname()[1]
        self.ready.set()
        self.loop.run_forever()
        srv.close()

    async def _pump(self, r, w, record):
        carry = b""      # the tail of the previous chunk (a line may span)
        base = 0         # stream offset of carry[0]
        done = -1        # stream offset of the last request line recorded
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                if record:
                    buf = carry + data
                    for m in REQ_LINE.finditer(buf):
                        if base + m.end() > done:
                            done = base + m.end()
                            self.seen.append((m.group(1).decode(),
                                              m.group(2).decode()))
                    keep = min(len(buf), 4096)
                    base += len(buf) - keep
                    carry = buf[-keep:]
                w.write(data)
                await w.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            w.close()

    async def _conn(self, cr, cw):
        try:
            br, bw = await asyncio.open_connection("127.0.0.1",
                                                   self.backend_port)
        except OSError:
            cw.close()
            return
        await asyncio.gather(self._pump(cr, bw, True),
                             self._pump(br, cw, False))


def make_cert(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    trust = os.path.join(tmp, "trust.p12")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-keyout", key, "-out", cert, "-days", "1",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    subprocess.run(["keytool", "-importcert", "-noprompt", "-alias",
                    "kadx-emulator", "-file", cert, "-keystore", trust,
                    "-storetype", "PKCS12", "-storepass", "changeit"],
                   check=True, capture_output=True, timeout=60)
    return cert, key, trust


def run_mode(mode, java, cp, tmp, env, trust, cert, key):
    tls = mode == "tls"
    opts = dict(auth="token", client_id=CLIENT_ID,
                client_secret=CLIENT_SECRET) if tls else {}
    with adx.Emulator(databases=("leaderboard",), **opts) as emu:
        front = TlsFront(emu.port, cert, key).start() if tls else None
        try:
            url = ("https://localhost:%d" % front.port if tls
                   else "http://localhost:%d" % emu.port)
            jvm = [java, "-Dorg.slf4j.simpleLogger.defaultLogLevel=error",
                   "-Djava.net.preferIPv4Stack=true"]
            if tls:
                jvm += ["-Djavax.net.ssl.trustStore=" + trust,
                        "-Djavax.net.ssl.trustStorePassword=changeit",
                        "-Djavax.net.ssl.trustStoreType=PKCS12"]
            work = os.path.join(tmp, mode)
            os.makedirs(work)
            rc = subprocess.call(
                jvm + ["-cp", cp, "kadx.Conformance", url, work,
                       adx.SEED_CREATE_TABLE, adx.SEED_CREATE_MAPPING,
                       adx.SEED_STREAMING_POLICY.format(db="leaderboard"),
                       adx.GAMEPLAY_MAPPING, CLIENT_ID, CLIENT_SECRET],
                env=env, timeout=150)
        finally:
            if front:
                front.stop()
        if rc != 0:
            return rc
        if tls:
            emu.token = emu.request("POST", "/t/oauth2/v2.0/token",
                                    "grant_type=client_credentials&"
                                    "client_id=%s&client_secret=%s" % (
                                        CLIENT_ID, CLIENT_SECRET),
                                    {"Content-Type": "application/"
                                     "x-www-form-urlencoded"})[1][
                                         "access_token"]
            seen = front.seen
            first = [p for m, p in seen][:1]
            for want in (("GET", "/v1/rest/auth/metadata"),
                         ("POST", "/kadx-tenant/oauth2/v2.0/token"),
                         ("POST", "/v1/rest/mgmt"),
                         ("POST", "/v2/rest/query")):
                if want not in seen:
                    print("FAIL: the SDK never sent %s %s (saw %s)" % (
                        want + (seen,)))
                    return 1
            if seen.index(("GET", "/v1/rest/auth/metadata")) > seen.index(
                    ("POST", "/kadx-tenant/oauth2/v2.0/token")):
                print("FAIL: the SDK asked for a token before the cloud "
                      "metadata: %s" % seen)
                return 1
            if not any(m == "POST" and p.startswith(
                    "/v1/rest/ingest/leaderboard/GamePlay") for m, p in seen):
                print("FAIL: no streaming ingest request seen")
                return 1
            if emu.stats()["auth_failures"] != 0:
                print("FAIL: the emulator refused a token the SDK sent")
                return 1
            print("ok: over TLS the SDK sent %d requests, first %s, "
                  "metadata + token endpoint + bearer; 0 auth failures"
                  % (len(seen), first))
        n = emu.count("GamePlay")
        if n != 50:
            print("FAIL: the emulator holds %d GamePlay rows, not 50" % n)
            return 1
        print("ok: the emulator's own query counts 50 rows (%s)" % mode)
        if emu.stop() != 0:
            print("FAIL: the emulator did not exit 0 on SIGTERM")
            return 1
    return 0


def main():
    javac, java = shutil.which("javac"), shutil.which("java")
    jars = glob.glob(os.path.join(HERE, "java", "lib", "*.jar"))
    if not javac or not java or not any("kusto-ingest" in j for j in jars):
        print("skipped: javac or the kusto-ingest jars are missing "
              "(bash .ci/install-deps)")
        return 77
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy",
                                "java_tool_options")}
    with tempfile.TemporaryDirectory(prefix="kadx-java-") as tmp:
        classes = os.path.join(tmp, "classes")
        srcs = glob.glob(os.path.join(HERE, "java", "src", "main", "java",
                                      "kadx", "*.java"))
        cp = os.path.join(HERE, "java", "lib", "*")
        subprocess.run([javac, "-d", classes, "-cp", cp] + srcs, check=True,
                       timeout=120)
        cert, key, trust = make_cert(tmp)
        for mode in ("plain", "tls"):
            print("--- %s" % mode, flush=True)
            rc = run_mode(mode, java, classes + os.pathsep + cp, tmp, env,
                          trust, cert, key)
            if rc != 0:
                return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
