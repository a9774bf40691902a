"""A Confluent Schema Registry stand-in for the e2e tests, written from the
registry's documented REST API (Confluent "Schema Registry API
Reference"), because no real Confluent-compatible registry can be
installed on this project's machines (checked 2026-12-05, Debian 12,
OpenJDK 17, Maven 3.8.7 against Maven Central as served here):

- Karapace: pip finds no distribution of it on the PyPI served here.
- Apicurio Registry (io.apicurio:apicurio-registry-app, a Quarkus app that
  must be rebuilt by the quarkus-maven-plugin from its published jar and
  its module jars): every line served here lacks a module the app needs.
  - 3.3.3 / 3.3.2: the jar's classes are Java 21 (class file 65) and
    Debian 12 has no openjdk-21; more to the point
    apicurio-registry-schema-util-provider 3.3.3 and 3.3.2 (the artifact
    type providers: Avro, JSON Schema, Protobuf parsing) are not served.
  - 3.0.9 (Java 17): the app jar is served, but its parent POM
    io.apicurio:apicurio-registry:3.0.9 is not, so Maven cannot read its
    dependencies; listing them by hand (versions from the 3.0.7 parent,
    which is served) still fails: apicurio-registry-utils-kafka 3.0.9 and
    apicurio-registry-config-definitions 3.0.9 are not served, nor are
    utils-kafka, schema-util-provider, config-definitions, config-index
    and utils-import-export at 3.0.7 (no apicurio-registry-app 3.0.7).
  - 2.6.13.Final / 2.6.12.Final (Java 11, Quarkus 3.15.3):
    apicurio-registry-schema-util-provider 2.6.13.Final and 2.6.12.Final
    are not served ("Could not find artifact ... in central").
  (Apicurio's parent POM also names two non-Central repositories; they are
  not reachable here either.)

What kadx and confluent-kafka's serializers call:

- POST /subjects/{subject}/versions {"schema", "schemaType"?, "references"?}
  -> {"id": N}: the same (schema, type) gets the same id in every subject,
  a new one the next id (ids start at 1, as the registry's do).
- GET /schemas/ids/{id} -> {"schema": "...", "schemaType"?} (the type is
  left out for AVRO, as the registry does), 404 {"error_code": 40403}.
- GET /subjects, GET /subjects/{subject}/versions.

https with a given certificate (tls=(cert, key)). Basic auth when a user
is given (401 {"error_code": 401} otherwise); the
content type is application/vnd.schemaregistry.v1+json. Test controls:
`down` (every request answers 503, as a registry whose backing store is
gone does), `gets` (GET /schemas/ids/{id} count per id) and `auths` (the
Authorization headers seen).
"""
import base64
import http.server
import json
import re
import ssl
import threading

CT = "application/vnd.schemaregistry.v1+json"


class Registry:
    def __init__(self, user=None, password=None, tls=None):
        """tls: (certificate file, key file) to serve https."""
        self.tls = tls
        self.user = user
        self.password = password
        self.lock = threading.Lock()
        self.schemas = {}   # id -> (schema text, type)
        self.subjects = {}  # subject -> [id, ...]
        self.next_id = 1
        self.down = False
        self.gets = {}
        self.auths = []
        self.server = None
        self.url = None

    # ---- direct registration (for a test that wants an id without HTTP)
    def register(self, subject, schema, schema_type="AVRO"):
        with self.lock:
            for sid, (s, t) in self.schemas.items():
                if s == schema and t == schema_type:
                    break
            else:
                sid = self.next_id
                self.next_id += 1
                self.schemas[sid] = (schema, schema_type)
            vers = self.subjects.setdefault(subject, [])
            if sid not in vers:
                vers.append(sid)
            return sid

    def start(self):
        reg = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _send(self, status, obj):
                body = json.dumps(obj).encode()
                self.send_response(status)
                self.send_header("Content-Type", CT)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _authorized(self):
                h = self.headers.get("Authorization")
                with reg.lock:
                    reg.auths.append(h)
                if reg.user is None:
                    return True
                want = "Basic " + base64.b64encode(
                    ("%s:%s" % (reg.user, reg.password)).encode()).decode()
                return h == want

            def _pre(self):
                if reg.down:
                    self._send(503, {"error_code": 50302,
                                     "message": "the registry is down"})
                    return False
                if not self._authorized():
                    self._send(401, {"error_code": 401,
                                     "message": "Unauthorized"})
                    return False
                return True

            def do_GET(self):
                n = int(self.headers.get("Content-Length") or 0)
                if n:
                    self.rfile.read(n)
                path = self.path.split("?")[0]
                m = re.fullmatch(r"/schemas/ids/(\d+)", path)
                if m:
                    sid = int(m.group(1))
                    with reg.lock:
                        reg.gets[sid] = reg.gets.get(sid, 0) + 1
                if not self._pre():
                    return
                if m:
                    with reg.lock:
                        got = reg.schemas.get(sid)
                    if got is None:
                        self._send(404, {"error_code": 40403,
                                         "message": "Schema %d not found"
                                         % sid})
                        return
                    body = {"schema": got[0]}
                    if got[1] != "AVRO":
                        body["schemaType"] = got[1]
                    self._send(200, body)
                    return
                if path == "/subjects":
                    with reg.lock:
                        self._send(200, sorted(reg.subjects))
                    return
                m = re.fullmatch(r"/subjects/([^/]+)/versions", path)
                if m:
                    with reg.lock:
                        vers = reg.subjects.get(m.group(1))
                    if vers is None:
                        self._send(404, {"error_code": 40401,
                                         "message": "Subject not found"})
                    else:
                        self._send(200, list(range(1, len(vers) + 1)))
                    return
                self._send(404, {"error_code": 404, "message": "not found"})

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                if not self._pre():
                    return
                path = self.path.split("?")[0]
                m = re.fullmatch(r"/subjects/([^/]+)/versions", path)
                if not m:
                    self._send(404, {"error_code": 404,
                                     "message": "not found"})
                    return
                try:
                    req = json.loads(raw)
                    schema = req["schema"]
                except (ValueError, KeyError):
                    self._send(422, {"error_code": 42201,
                                     "message": "Invalid schema"})
                    return
                sid = reg.register(m.group(1), schema,
                                   req.get("schemaType") or "AVRO")
                self._send(200, {"id": sid})

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                                      Handler)
        self.server.daemon_threads = True
        scheme = "http"
        if self.tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*self.tls)
            self.server.socket = ctx.wrap_socket(self.server.socket,
                                                 server_side=True)
            scheme = "https"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = "%s://127.0.0.1:%d" % (scheme,
                                          self.server.server_address[1])
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None
