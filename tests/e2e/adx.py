"""adx.py - start the ADX emulator (`kadx adx-emulator`) and talk to it.

Stdlib only. Other end-to-end tests use it like this:

    import adx
    with adx.Emulator() as emu:          # waits for "listening on"
        emu.setup_gameplay()             # the seed KQL: table, mapping, policy
        emu.ingest("GamePlay", [{"playerId": 1, ...}],
                   mapping=adx.GAMEPLAY_MAPPING)
        assert emu.count("GamePlay") == 1
        emu.faults(fail_count=2, fail_status=503)   # control endpoint
        print(emu.stats()["rows_accepted"])

Emulator(...) takes the command's options as keywords (databases, auth,
static_token, client_id, client_secret, token_lifetime, count_only, data,
max_body, extra). The process runs under harness.Proc, so it is killed by
PID when the test ends even if the test forgets stop().
"""
import gzip as _gzip
import http.client
import json
import re
import urllib.parse

import harness

GAMEPLAY_TABLE = "GamePlay"
GAMEPLAY_MAPPING = "gameplay_json_mapping"

# The seed's KQL, unchanged (create table, JSON mapping, streaming policy).
SEED_CREATE_TABLE = (".create table GamePlay (PlayerID: int, GameID: int, "
                     "Win: long, Stake: int, EventTime: datetime)")
SEED_CREATE_MAPPING = (
    ".create table GamePlay ingestion json mapping 'gameplay_json_mapping' "
    "'[{\"column\":\"PlayerID\",\"Properties\":{\"Path\":\"$.playerId\"}},"
    "{\"column\":\"GameID\",\"Properties\":{\"Path\":\"$.gameId\"}},'"
    "'{\"column\":\"Win\",\"Properties\":{\"Path\":\"$.win\"}},"
    "{\"column\":\"Stake\",\"Properties\":{\"Path\":\"$.stake\"}},'"
    "'{\"column\":\"EventTime\",\"Properties\":{\"Path\":\"$.eventTime\"}}]'")
SEED_STREAMING_POLICY = (".alter database {db} policy streamingingestion "
                         "enable")


class AdxError(Exception):
    """A non-2xx answer: status, parsed body (or raw text) and headers."""

    def __init__(self, status, body, headers):
        self.status = status
        self.body = body
        self.headers = headers
        err = body.get("error", {}) if isinstance(body, dict) else {}
        self.code = err.get("code")
        self.permanent = err.get("@permanent")
        self.detail = err.get("@message") or err.get("message") or str(body)
        super().__init__("HTTP %d %s: %s" % (status, self.code, self.detail))


class Emulator:
    def __init__(self, databases=("leaderboard",), auth=None,
                 static_token=None, client_id=None, client_secret=None,
                 token_lifetime=None, count_only=False, data=None,
                 max_body=None, extra=(), env=None, timeout=30.0):
        self.databases = list(databases)
        self.db = self.databases[0]
        self.token = static_token
        self.timeout = timeout
        args = ["adx-emulator", "--listen", "127.0.0.1:0"]
        for d in self.databases:
            args += ["--database", d]
        if auth:
            args += ["--auth", auth]
        if static_token:
            args += ["--static-token", static_token]
        if client_id:
            args += ["--client-id", client_id]
        if client_secret:
            args += ["--client-secret", client_secret]
        if token_lifetime is not None:
            args += ["--token-lifetime", str(token_lifetime)]
        if count_only:
            args.append("--count-only")
        if data:
            args += ["--data", str(data)]
        if max_body is not None:
            args += ["--max-body", str(max_body)]
        args += list(extra)
        self.args = args
        self.env = env
        self.proc = None
        self.url = None
        self.port = None

    # ---- lifecycle ----
    def start(self):
        self.proc = harness.kadx(*self.args, env=self.env,
                                 name="adx-emulator")
        line = self.proc.wait_for("adx-emulator listening on", timeout=30,
                                  what="the emulator's listening line")
        m = re.search(r"http://([0-9.]+):(\d+)", line)
        self.port = int(m.group(2))
        self.host = m.group(1)
        self.url = "http://%s:%d" % (self.host, self.port)
        return self

    def stop(self):
        """SIGTERM; returns the exit code (0 expected)."""
        if self.proc is None:
            return None
        rc = self.proc.stop()
        self.proc = None
        return rc

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        if self.proc is not None:
            self.proc.kill()
            self.proc = None

    # ---- raw HTTP ----
    def request(self, method, path, body=None, headers=None, raw=False):
        """Returns (status, parsed JSON or bytes, headers dict)."""
        conn = http.client.HTTPConnection(self.host, self.port,
                                          timeout=self.timeout)
        try:
            h = dict(headers or {})
            if self.token and "Authorization" not in h:
                h["Authorization"] = "Bearer " + self.token
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
                h.setdefault("Content-Type",
                             "application/json; charset=utf-8")
            elif isinstance(body, str):
                body = body.encode()
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
            hdrs = {k.lower(): v for k, v in r.getheaders()}
        finally:
            conn.close()
        if raw:
            return r.status, data, hdrs
        try:
            parsed = json.loads(data) if data else None
        except ValueError:
            parsed = data.decode("utf-8", "replace")
        return r.status, parsed, hdrs

    def _ok(self, method, path, body=None, headers=None):
        status, parsed, hdrs = self.request(method, path, body, headers)
        if status // 100 != 2:
            raise AdxError(status, parsed, hdrs)
        return parsed

    # ---- Kusto API ----
    def mgmt(self, csl, db=None):
        """Runs a management command; returns the v1 body."""
        return self._ok("POST", "/v1/rest/mgmt",
                        {"db": db or self.db, "csl": csl})

    def query_v1(self, csl, db=None):
        return self._ok("POST", "/v1/rest/query",
                        {"db": db or self.db, "csl": csl})

    def query_v2(self, csl, db=None):
        return self._ok("POST", "/v2/rest/query",
                        {"db": db or self.db, "csl": csl})

    def query(self, csl, db=None):
        """Runs a KQL query (v2); returns the primary result as dicts."""
        frames = self.query_v2(csl, db)
        for f in frames:
            if f.get("FrameType") == "DataTable" and \
                    f.get("TableKind") == "PrimaryResult":
                names = [c["ColumnName"] for c in f["Columns"]]
                return [dict(zip(names, row)) for row in f["Rows"]]
        return []

    def count(self, table, db=None):
        rows = self.query("%s | count" % table, db)
        return rows[0]["Count"] if rows else 0

    def setup_gameplay(self, db=None):
        """The seed setup: GamePlay table, its JSON mapping, and the
        database's streaming policy."""
        db = db or self.db
        self.mgmt(SEED_CREATE_TABLE, db)
        self.mgmt(SEED_CREATE_MAPPING, db)
        self.mgmt(SEED_STREAMING_POLICY.format(db=db), db)

    def ingest(self, table, records, fmt="json", mapping=None, db=None,
               compress=True, headers=None):
        """Streams records (a list of dicts, or bytes/str as they are) to
        /v1/rest/ingest; returns the parsed v1 body or raises AdxError."""
        if isinstance(records, (list, tuple)):
            body = "".join(json.dumps(r) + "\n" for r in records).encode()
        elif isinstance(records, str):
            body = records.encode()
        else:
            body = records
        h = dict(headers or {})
        if compress:
            body = _gzip.compress(body)
            h["Content-Encoding"] = "gzip"
        q = {"streamFormat": fmt}
        if mapping:
            q["mappingName"] = mapping
        path = "/v1/rest/ingest/%s/%s?%s" % (
            urllib.parse.quote(db or self.db), urllib.parse.quote(table),
            urllib.parse.urlencode(q))
        return self._ok("POST", path, body, h)

    # ---- control endpoint ----
    def faults(self, **kw):
        """POST /_emulator/faults with the given keys (fail_count,
        fail_status, fail_permanent, fail_code, fail_message, latency_ms,
        reset_count, throttle_rps, retry_after_s, late_share, late_min_ms,
        late_max_ms); returns the new state."""
        return self._ok("POST", "/_emulator/faults", kw)

    def stats(self):
        return self._ok("GET", "/_emulator/stats")

    def reset(self):
        return self._ok("POST", "/_emulator/reset", {})


def gameplay_event(player, game, win, stake, when):
    """One event as the seed's producer writes it (when: ISO string)."""
    return {"playerId": player, "gameId": game, "win": win, "stake": stake,
            "eventTime": when}
