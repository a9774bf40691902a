"""The ADX emulator's HTTP surface (issue 5): the seed's KQL, ingest in
every format, the v1/v2 shapes, OneApi errors, auth and tokens, faults,
stats, count-only, and bad input (malformed HTTP, oversized headers,
invalid gzip, invalid KQL) after which the emulator keeps serving."""
import gzip
import http.client
import json
import socket
import time

import adx
import harness


def events(n, start=0):
    return [adx.gameplay_event(start + i, i % 7, i * 10 - 5, 10 + i % 3,
                               "2024-05-01T10:00:%02d.5Z" % (i % 60))
            for i in range(n)]


def raw_http(port, data, read_timeout=5.0):
    """Sends raw bytes on a new connection; returns what comes back until
    the server closes (or the timeout)."""
    s = socket.create_connection(("127.0.0.1", port), timeout=read_timeout)
    try:
        s.sendall(data)
        out = b""
        while True:
            try:
                chunk = s.recv(65536)
            except (ConnectionResetError, socket.timeout):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


class EmulatorCase(harness.TmpDirCase):
    def setUp(self):
        super().setUp()
        self.emu = adx.Emulator().start()
        self.addCleanup(self.emu.__exit__)

    def assert_serving(self):
        self.assertEqual(self.emu.mgmt(".show version")["Tables"][0]
                         ["Rows"][0][0].count("."), 2)


class TestSeed(EmulatorCase):
    def test_seed_kql_unchanged(self):
        emu = self.emu
        emu.setup_gameplay()
        tables = emu.mgmt(".show tables")["Tables"][0]["Rows"]
        self.assertIn("GamePlay", [r[0] for r in tables])
        maps = emu.mgmt(".show table GamePlay ingestion json mappings")
        self.assertEqual(maps["Tables"][0]["Rows"][0][0],
                         adx.GAMEPLAY_MAPPING)
        pol = emu.mgmt(".show database leaderboard policy "
                       "streamingingestion")
        self.assertIn('"IsEnabled":true', json.dumps(pol).replace(" ", "")
                      .replace('\\"', '"'))
        body = emu.ingest("GamePlay", events(25),
                          mapping=adx.GAMEPLAY_MAPPING)
        self.assertEqual(body["Tables"][0]["Columns"][0]["ColumnName"],
                         "ConsumedRecordsCount")
        self.assertEqual(emu.count("GamePlay"), 25)
        rows = emu.query("GamePlay | where PlayerID == 3 | project "
                         "PlayerID, GameID, Win, Stake, EventTime")
        self.assertEqual(rows, [{"PlayerID": 3, "GameID": 3, "Win": 25,
                                 "Stake": 10,
                                 "EventTime": "2024-05-01T10:00:03.5Z"}])
        # the latency query: ingestion time is stamped on each row
        lat = emu.query("GamePlay | extend Latency = ingestion_time() - "
                        "EventTime | summarize max(Latency)")
        self.assertEqual(len(lat), 1)
        self.assertRegex(list(lat[0].values())[0], r"^\d+\.\d\d:\d\d:\d\d")
        emu.mgmt(".clear table GamePlay data")
        self.assertEqual(emu.count("GamePlay"), 0)

    def test_docker_setup_kql_file_runs(self):
        """Every block of docker/kql/setup.kql, as the file stands."""
        path = harness.SRC + "/docker/kql/setup.kql"
        try:
            text = open(path).read()
        except OSError:
            self.skipTest("no docker/kql/setup.kql")
        blocks, cur = [], []
        for line in text.splitlines() + [""]:
            s = line.strip()
            if s.startswith("//"):
                continue
            if not s:
                if cur:
                    blocks.append(" ".join(cur))
                cur = []
                continue
            cur.append(s)
        cmds = [b for b in blocks if b.startswith(".")]
        queries = [b for b in blocks if not b.startswith(".")]
        self.assertGreaterEqual(len(cmds), 3)
        for c in cmds:
            self.emu.mgmt(c)
        self.emu.ingest("GamePlay", events(30),
                        mapping=adx.GAMEPLAY_MAPPING)
        for q in queries:
            rows = self.emu.query(q)
            self.assertTrue(rows, q)

    def test_v1_and_v2_shapes_and_properties_string(self):
        emu = self.emu
        emu.setup_gameplay()
        emu.ingest("GamePlay", events(3), mapping=adx.GAMEPLAY_MAPPING)
        st, v1, hdrs = emu.request(
            "POST", "/v1/rest/query",
            {"db": "leaderboard", "csl": "GamePlay | count",
             "properties": json.dumps({"Options": {"servertimeout": "1m"}})},
            headers={"x-ms-client-request-id": "KNC.execute;abc"})
        self.assertEqual(st, 200, v1)
        self.assertEqual(hdrs["x-ms-client-request-id"], "KNC.execute;abc")
        self.assertRegex(hdrs["x-ms-activity-id"], r"^[0-9a-f-]{36}$")
        t = v1["Tables"][0]
        self.assertEqual(t["Columns"][0]["DataType"], "Int64")
        self.assertEqual(t["Rows"], [[3]])
        st, v2, _ = emu.request(
            "POST", "/v2/rest/query",
            {"db": "leaderboard", "csl": "GamePlay | count",
             "properties": {"Options": {}}})
        self.assertEqual(st, 200)
        self.assertEqual(v2[0]["FrameType"], "DataSetHeader")
        self.assertEqual(v2[-1]["FrameType"], "DataSetCompletion")
        self.assertFalse(v2[-1]["HasErrors"])
        prim = [f for f in v2 if f.get("TableKind") == "PrimaryResult"]
        self.assertEqual(prim[0]["Rows"], [[3]])
        # control commands are refused on v2, as ADX does
        with self.assertRaises(adx.AdxError) as cm:
            emu.query_v2(".show tables")
        self.assertIn("do not support api_version=v2", cm.exception.detail)
        # bad properties
        st, body, _ = emu.request("POST", "/v1/rest/query",
                                  {"db": "leaderboard", "csl": "GamePlay",
                                   "properties": 42})
        self.assertEqual(st, 400)

    def test_formats_multijson_csv_identity(self):
        emu = self.emu
        emu.setup_gameplay()
        multi = json.dumps(events(4)) + "\n" + json.dumps(events(1, 100)[0])
        emu.ingest("GamePlay", multi, fmt="multijson",
                   mapping=adx.GAMEPLAY_MAPPING)
        emu.ingest("GamePlay", "1,2,3,4,2024-01-01T00:00:00Z\n"
                   "\"5\",6,7,8,2024-01-01\r\n", fmt="csv", compress=False)
        emu.ingest("GamePlay", [{"PlayerID": 9, "Win": 99}], fmt="json")
        self.assertEqual(emu.count("GamePlay"), 8)
        rows = emu.query("GamePlay | where PlayerID == 9")
        self.assertEqual(rows[0]["Win"], 99)
        self.assertIsNone(rows[0]["GameID"])
        # a bad value becomes null, it does not fail the request
        emu.ingest("GamePlay", [{"playerId": "x", "gameId": 1, "win": 1,
                                 "stake": 1, "eventTime": "not a date"}],
                   mapping=adx.GAMEPLAY_MAPPING)
        self.assertEqual(emu.count("GamePlay"), 9)

    def test_mapping_adds_column_and_changes_apply(self):
        emu = self.emu
        emu.setup_gameplay()
        m = json.dumps([
            {"column": "PlayerID", "Properties": {"Path": "$.p"}},
            {"column": "Note", "datatype": "string",
             "Properties": {"Path": "$['a note']"}},
            {"column": "EventTime", "Properties": {
                "Path": "$.t", "Transform": "DateTimeFromUnixMilliseconds"}}])
        literal = "'%s'" % m.replace("\\", "\\\\").replace("'", "\\'")
        emu.mgmt(".create table GamePlay ingestion json mapping 'm2' " +
                 literal)
        emu.ingest("GamePlay", [{"p": 1, "a note": "hi", "t": 1714557600500}],
                   mapping="m2")
        rows = emu.query("GamePlay | project PlayerID, Note, EventTime")
        self.assertEqual(rows, [{"PlayerID": 1, "Note": "hi",
                                 "EventTime": "2024-05-01T10:00:00.5Z"}])
        # the same name with a new body: the next ingest uses the new one
        emu.mgmt(".create table GamePlay ingestion json mapping 'm2' "
                 "'[{\"column\":\"PlayerID\",\"Properties\":"
                 "{\"Path\":\"$.q\"}}]'")
        emu.ingest("GamePlay", [{"p": 5, "q": 2}], mapping="m2")
        self.assertEqual(emu.count("GamePlay"), 2)
        self.assertEqual(emu.query("GamePlay | where PlayerID == 2 | count")
                         [0]["Count"], 1)


class TestErrors(EmulatorCase):
    def test_ingest_errors_are_oneapi(self):
        emu = self.emu
        emu.mgmt(adx.SEED_CREATE_TABLE)
        emu.mgmt(adx.SEED_CREATE_MAPPING)
        cases = [
            # streaming policy not enabled yet
            (dict(table="GamePlay", mapping=adx.GAMEPLAY_MAPPING), 400,
             "StreamingIngestionPolicyNotEnabled"),
        ]
        for kw, status, code in cases:
            with self.assertRaises(adx.AdxError) as cm:
                emu.ingest(kw["table"], events(1), mapping=kw["mapping"])
            self.assertEqual(cm.exception.status, status)
            self.assertIn(code, cm.exception.code)
            self.assertIs(cm.exception.permanent, True)
        emu.mgmt(adx.SEED_STREAMING_POLICY.format(db="leaderboard"))
        with self.assertRaises(adx.AdxError) as cm:
            emu.ingest("GamePlay", events(1), db="nosuchdb")
        self.assertEqual(cm.exception.status, 404)
        with self.assertRaises(adx.AdxError) as cm:
            emu.ingest("NoSuchTable", events(1))
        self.assertEqual(cm.exception.status // 100, 4)
        self.assertTrue(cm.exception.permanent)
        with self.assertRaises(adx.AdxError) as cm:
            emu.ingest("GamePlay", events(1), mapping="nosuchmapping")
        self.assertEqual(cm.exception.code,
                         "BadRequest_MappingReferenceWasNotFound")
        with self.assertRaises(adx.AdxError) as cm:
            emu.ingest("GamePlay", events(1), fmt="parquet")
        self.assertEqual(cm.exception.status, 400)
        # invalid gzip
        with self.assertRaises(adx.AdxError) as cm:
            emu.ingest("GamePlay", b"\x1f\x8bthis is not gzip",
                       compress=False, headers={"Content-Encoding": "gzip"},
                       mapping=adx.GAMEPLAY_MAPPING)
        self.assertEqual(cm.exception.status, 400)
        self.assertIn("gzip", cm.exception.detail)
        # a record that is not JSON
        with self.assertRaises(adx.AdxError) as cm:
            emu.ingest("GamePlay", b'{"playerId":1}\n{oops\n',
                       mapping=adx.GAMEPLAY_MAPPING)
        self.assertIn("line 2", cm.exception.detail)
        # over the 4 MB streaming limit (the compressed body counts)
        big = bytes(range(256)) * (4 * 1024 * 4 + 1)
        st, body, _ = emu.request(
            "POST", "/v1/rest/ingest/leaderboard/GamePlay?streamFormat=json",
            big, {"Content-Encoding": "gzip"})
        self.assertEqual(st, 413)
        self.assertIn("@permanent", body["error"])
        self.assertEqual(emu.count("GamePlay"), 0)
        self.assert_serving()

    def test_invalid_kql_is_clear_and_serving_goes_on(self):
        emu = self.emu
        emu.setup_gameplay()
        with self.assertRaises(adx.AdxError) as cm:
            emu.query("GamePlay | frobnicate 3")
        self.assertEqual(cm.exception.status, 400)
        self.assertIn("frobnicate", cm.exception.detail)
        with self.assertRaises(adx.AdxError) as cm:
            emu.mgmt(".frobnicate table GamePlay")
        self.assertEqual(cm.exception.status, 400)
        st, body, _ = emu.request("POST", "/v1/rest/query", "{not json")
        self.assertEqual(st, 400)
        self.assertIn("error", body)
        self.assertEqual(emu.count("GamePlay"), 0)

    def test_malformed_http_and_oversized_headers(self):
        emu = self.emu
        out = raw_http(emu.port, b"THIS IS NOT HTTP\x00\x01\r\n\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out[:200])
        self.assertIn(b'"@permanent":true', out)
        big = b"X-Big: " + b"a" * (70 * 1024) + b"\r\n"
        out = raw_http(emu.port, b"GET /v1/rest/auth/metadata HTTP/1.1\r\n"
                       b"Host: x\r\n" + big + b"\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 431"), out[:200])
        out = raw_http(emu.port, b"POST /v1/rest/mgmt HTTP/1.1\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\nzz\r\n")
        self.assertTrue(out.startswith(b"HTTP/1.1 400"), out[:200])
        # a client that vanishes mid-request changes nothing
        s = socket.create_connection(("127.0.0.1", emu.port))
        s.sendall(b"POST /v1/rest/mgmt HTTP/1.1\r\nContent-Length: 100\r\n"
                  b"\r\n{")
        s.close()
        self.assert_serving()
        self.assertTrue(emu.proc.alive())

    def test_unknown_endpoint(self):
        st, body, _ = self.emu.request("GET", "/nope")
        self.assertEqual(st, 404)
        self.assertIn("/nope", body["error"]["@message"])


class TestAuth(harness.TmpDirCase):
    def test_tokens(self):
        emu = adx.Emulator(auth="token", client_id="app-1",
                           client_secret="s3cret-value",
                           static_token="static-token-1",
                           token_lifetime=2).start()
        self.addCleanup(emu.__exit__)
        # the metadata endpoint needs no token and points at the emulator
        emu.token = None
        md = emu._ok("GET", "/v1/rest/auth/metadata")
        self.assertEqual(md["AzureAD"]["LoginEndpoint"], emu.url)
        with self.assertRaises(adx.AdxError) as cm:
            emu.mgmt(".show tables")
        self.assertEqual(cm.exception.status, 401)
        with self.assertRaises(adx.AdxError) as cm:
            emu.ingest("GamePlay", events(1))
        self.assertEqual(cm.exception.status, 401)
        # the static token works
        emu.token = "static-token-1"
        emu.mgmt(".show tables")
        # client credentials at the AAD-shaped endpoint
        emu.token = None
        form = ("grant_type=client_credentials&client_id=app-1&"
                "client_secret=s3cret-value&scope=https%3A%2F%2F"
                "kusto.kusto.windows.net%2F.default")
        st, tok, _ = emu.request(
            "POST", "/tenant-x/oauth2/v2.0/token", form,
            {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(st, 200, tok)
        self.assertEqual(tok["token_type"], "Bearer")
        self.assertEqual(tok["expires_in"], 2)
        bad = form.replace("s3cret-value", "wrong")
        st, body, _ = emu.request(
            "POST", "/tenant-x/oauth2/v2.0/token", bad,
            {"Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual(st, 401)
        self.assertEqual(body["error"], "invalid_client")
        emu.token = tok["access_token"]
        emu.mgmt(".show tables")
        # IMDS-shaped endpoint: needs Metadata: true
        st, _, _ = emu.request("GET", "/metadata/identity/oauth2/token?"
                               "api-version=2018-02-01&resource=x")
        self.assertEqual(st, 400)
        st, mi, _ = emu.request("GET", "/metadata/identity/oauth2/token?"
                                "api-version=2018-02-01&resource=x",
                                headers={"Metadata": "true"})
        self.assertEqual(st, 200)
        self.assertEqual(mi["expires_in"], "2")
        # issued tokens expire after --token-lifetime

        def expired():
            st, _, _ = emu.request("POST", "/v1/rest/mgmt",
                                   {"csl": ".show tables"})
            return st == 401
        harness.wait_until(expired, timeout=10, what="the token to expire")
        self.assertNotIn("s3cret-value", "\n".join(emu.proc.lines()))


class TestFaults(EmulatorCase):
    def setUp(self):
        super().setUp()
        self.emu.setup_gameplay()

    def test_fail_next_n(self):
        emu = self.emu
        emu.faults(fail_count=2, fail_status=503)
        for _ in range(2):
            with self.assertRaises(adx.AdxError) as cm:
                emu.ingest("GamePlay", events(1),
                           mapping=adx.GAMEPLAY_MAPPING)
            self.assertEqual(cm.exception.status, 503)
            self.assertIs(cm.exception.permanent, False)
        emu.ingest("GamePlay", events(1), mapping=adx.GAMEPLAY_MAPPING)
        emu.faults(fail_count=1, fail_status=400, fail_code="Stream_Bad")
        with self.assertRaises(adx.AdxError) as cm:
            emu.ingest("GamePlay", events(1), mapping=adx.GAMEPLAY_MAPPING)
        self.assertEqual((cm.exception.status, cm.exception.code,
                          cm.exception.permanent), (400, "Stream_Bad", True))
        self.assertEqual(emu.count("GamePlay"), 1)
        self.assertEqual(emu.stats()["faults_fired"]["fail"], 3)

    def test_throttle_429_retry_after(self):
        emu = self.emu
        emu.faults(throttle_rps=2, retry_after_s=3)
        codes = []
        for _ in range(6):
            try:
                emu.ingest("GamePlay", events(1),
                           mapping=adx.GAMEPLAY_MAPPING)
                codes.append(200)
            except adx.AdxError as e:
                codes.append(e.status)
                self.assertEqual(e.headers["retry-after"], "3")
                self.assertEqual(e.code, "Throttling")
                self.assertIs(e.permanent, False)
        self.assertIn(429, codes)
        self.assertEqual(codes[0], 200)
        self.assertEqual(emu.count("GamePlay"), codes.count(200))
        emu.faults(throttle_rps=0)
        emu.ingest("GamePlay", events(1), mapping=adx.GAMEPLAY_MAPPING)

    def test_apply_then_reset(self):
        emu = self.emu
        emu.faults(reset_count=1)
        with self.assertRaises((ConnectionResetError,
                                http.client.RemoteDisconnected)):
            emu.ingest("GamePlay", events(5), mapping=adx.GAMEPLAY_MAPPING)
        # the rows were applied although nobody heard about it
        self.assertEqual(emu.count("GamePlay"), 5)
        emu.ingest("GamePlay", events(1), mapping=adx.GAMEPLAY_MAPPING)
        st = emu.stats()
        self.assertEqual(st["faults_fired"]["reset"], 1)
        self.assertEqual(st["tables"]["leaderboard.GamePlay"], 6)

    def test_latency(self):
        emu = self.emu
        emu.faults(latency_ms=400)
        t0 = time.monotonic()
        emu.ingest("GamePlay", events(2), mapping=adx.GAMEPLAY_MAPPING)
        self.assertGreaterEqual(time.monotonic() - t0, 0.39)
        emu.reset()
        self.assertEqual(emu.stats()["faults"]["latency_ms"], 0)
        with self.assertRaises(adx.AdxError):
            emu.faults(frobnicate=1)

    def test_late_apply(self):
        """The late-apply fault (issue 19): a share of ingest requests is
        applied only after a delay, even when the client has hung up (ADX
        keeps working); a request whose servertimeout ends first is cut
        off and never applied."""
        emu = self.emu
        st = emu.faults(late_share=1, late_min_ms=500, late_max_ms=600)
        self.assertEqual((st["late_share"], st["late_min_ms"],
                          st["late_max_ms"]), (1, 500, 600))
        # a client that gives up at once: the rows arrive anyway, later
        s = socket.create_connection(("127.0.0.1", emu.port), timeout=10)
        body = gzip.compress(b'{"playerId":1}\n{"playerId":2}\n'
                             b'{"playerId":3}\n')
        t0 = time.monotonic()
        s.sendall(b"POST /v1/rest/ingest/leaderboard/GamePlay?streamFormat="
                  b"json HTTP/1.1\r\nContent-Encoding: gzip\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        harness.wait_until(lambda: emu.stats()["faults_fired"]["late"] == 1,
                           what="the request to be held")
        self.assertEqual(emu.count("GamePlay"), 0)
        s.close()
        harness.wait_until(lambda: emu.count("GamePlay") == 3, timeout=10,
                           what="the late rows")
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        st = emu.stats()
        self.assertEqual((st["late_applied"], st["late_client_gone"],
                          st["late_expired"]), (1, 1, 0))
        # a client that waits gets its answer after the delay; the Java
        # SDK's servertimeout form is understood
        t0 = time.monotonic()
        emu.ingest("GamePlay", events(2), mapping=adx.GAMEPLAY_MAPPING,
                   headers={"servertimeout": "00:10:00"})
        self.assertGreaterEqual(time.monotonic() - t0, 0.45)
        self.assertEqual(emu.count("GamePlay"), 5)
        # servertimeout shorter than the delay: cut off, never applied
        with self.assertRaises(adx.AdxError) as cm:
            emu.ingest("GamePlay", events(4), mapping=adx.GAMEPLAY_MAPPING,
                       headers={"servertimeout": "00:00:00.200"})
        self.assertEqual((cm.exception.status, cm.exception.code),
                         (504, "General_Timeout"))
        st = emu.stats()
        self.assertEqual((st["late_applied"], st["late_expired"]), (2, 1))
        self.assertEqual(emu.count("GamePlay"), 5)
        with self.assertRaises(adx.AdxError) as cm:
            emu.ingest("GamePlay", events(1), mapping=adx.GAMEPLAY_MAPPING,
                       headers={"servertimeout": "soon"})
        self.assertEqual(cm.exception.status, 400)
        with self.assertRaises(adx.AdxError) as cm:
            emu.faults(late_min_ms=900, late_max_ms=100)
        self.assertIn("late_max_ms", str(cm.exception.body))
        emu.reset()
        st = emu.stats()["faults"]
        self.assertEqual((st["late_share"], st["late_min_ms"],
                          st["late_max_ms"]), (0, 1000, 8000))

    def test_stop_with_a_request_waiting(self):
        emu = self.emu
        emu.faults(latency_ms=60000)
        s = socket.create_connection(("127.0.0.1", emu.port), timeout=10)
        body = gzip.compress(b'{"playerId":1}\n')
        s.sendall(b"POST /v1/rest/ingest/leaderboard/GamePlay?streamFormat="
                  b"json HTTP/1.1\r\nContent-Encoding: gzip\r\n"
                  b"Content-Length: %d\r\n\r\n" % len(body) + body)
        harness.wait_until(lambda: emu.stats()["faults_fired"]["latency"],
                           what="the request to be held")
        self.assertEqual(emu.stop(), 0)
        self.assertTrue(s.recv(100).startswith(b"HTTP/1.1 503"))
        s.close()


class TestCountOnly(harness.TmpDirCase):
    def test_count_only(self):
        emu = adx.Emulator(count_only=True).start()
        self.addCleanup(emu.__exit__)
        emu.setup_gameplay()
        emu.ingest("GamePlay", events(50), mapping=adx.GAMEPLAY_MAPPING)
        st = emu.stats()
        self.assertEqual(st["rows_accepted"], 50)
        self.assertTrue(st["count_only"])
        self.assertEqual(emu.count("GamePlay"), 0)
        self.assertEqual(emu.stop(), 0)


class TestPersistence(harness.TmpDirCase):
    def test_data_file_survives_restart(self):
        path = self.tmp + "/adx.db"
        emu = adx.Emulator(data=path).start()
        self.addCleanup(emu.__exit__)
        emu.setup_gameplay()
        emu.ingest("GamePlay", events(7), mapping=adx.GAMEPLAY_MAPPING)
        self.assertEqual(emu.stop(), 0)
        emu2 = adx.Emulator(data=path).start()
        self.addCleanup(emu2.__exit__)
        self.assertEqual(emu2.count("GamePlay"), 7)
        emu2.ingest("GamePlay", events(1), mapping=adx.GAMEPLAY_MAPPING)


if __name__ == "__main__":
    harness.main()
