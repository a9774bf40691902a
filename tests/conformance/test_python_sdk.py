"""test_python_sdk.py - conformance of the kadx ADX emulator, checked with
Microsoft's Python SDKs (azure-kusto-data, azure-kusto-ingest 6.x, pinned
in tests/requirements.txt) as the client.

What it checks, each against a fresh `kadx adx-emulator --auth token` on
127.0.0.1:
- management commands through KustoClient.execute_mgmt (the seed's table,
  mapping and streaming policy; .show tables; .show ... mappings);
- queries in v2 (execute_query; the Python SDK has no v1 query call, its
  v1 parsing is exercised by every execute_mgmt), typed values (int, long, datetime) as the SDK parses them;
- KustoStreamingIngestClient and ManagedStreamingIngestClient ingesting
  JSON (the SDK gzips it) with the table's mapping; the rows are checked by
  KQL queries, not only by the SDK's return value;
- both kinds of credential: the emulator's static token
  (with_aad_application_token_authentication) and a token that the
  emulator's own AAD-shaped endpoint issues for a client id and secret
  (with_token_provider: MSAL Python refuses http:// authorities, so the
  callback makes the client-credentials call);
- errors: a 429 is KustoThrottlingError; a permanent 400 is a
  KustoApiError with permanent true, and the managed client does not fall
  back to queued ingestion for it; invalid KQL is a KustoServiceError;
- the managed client retries a transient 503 and then succeeds by
  streaming (it never reaches its queued fallback, which needs blob
  storage: not emulated).

Loopback only: proxy variables are dropped, the SDK's cloud metadata comes
from the emulator (GET /v1/rest/auth/metadata). The Python SDK sends no
telemetry of its own; azure-core tracing is off unless a tracer is set up.
Exit 77 (skipped) only when the SDK is not installed (.ci/install-deps).
"""
import datetime
import io
import json
import os
import sys
import unittest
import urllib.parse
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

for _k in list(os.environ):
    if _k.lower() in ("http_proxy", "https_proxy", "all_proxy"):
        del os.environ[_k]
os.environ["NO_PROXY"] = "*"
os.environ["no_proxy"] = "*"

try:
    from azure.kusto.data import (ClientRequestProperties, KustoClient,
                                  KustoConnectionStringBuilder)
    from azure.kusto.data.exceptions import (KustoApiError,
                                             KustoServiceError,
                                             KustoThrottlingError)
    from azure.kusto.ingest import (IngestionProperties,
                                    KustoStreamingIngestClient,
                                    ManagedStreamingIngestClient,
                                    StreamDescriptor)
    from azure.kusto.data.data_format import DataFormat
    import azure.kusto.data._version as _kd_version
except ImportError as e:  # pragma: no cover
    print("skipped: azure-kusto-data/ingest are not installed "
          "(bash .ci/install-deps): %s" % e)
    sys.exit(77)

import adx  # noqa: E402  (tests/e2e/adx.py)

TOKEN = "conformance-static-token"
CLIENT_ID = "conformance-app"
CLIENT_SECRET = "conformance-secret"
DB = "leaderboard"


def gameplay(n, start=0):
    lines = []
    for i in range(n):
        lines.append(json.dumps({
            "playerId": start + i, "gameId": i % 5, "win": i * 3,
            "stake": 10,
            "eventTime": "2024-05-01T10:00:%02dZ" % (i % 60)}))
    return ("\n".join(lines) + "\n").encode()


def props(mapping=adx.GAMEPLAY_MAPPING):
    return IngestionProperties(database=DB, table="GamePlay",
                               data_format=DataFormat.JSON,
                               ingestion_mapping_reference=mapping)


class PythonSdkConformance(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.emu = adx.Emulator(databases=(DB,), auth="token",
                               static_token=TOKEN, client_id=CLIENT_ID,
                               client_secret=CLIENT_SECRET).start()
        url = cls.emu.url
        cls.tokens_issued = 0

        def app_token():
            # the client-credentials call, as MSAL would make it
            body = urllib.parse.urlencode({
                "grant_type": "client_credentials", "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "scope": "https://kusto.kusto.windows.net/.default"}).encode()
            req = urllib.request.Request(url + "/tenant-x/oauth2/v2.0/token",
                                         data=body, method="POST")
            with urllib.request.urlopen(req, timeout=10) as r:
                tok = json.loads(r.read())
            cls.tokens_issued += 1
            return tok["access_token"]

        static = KustoConnectionStringBuilder.\
            with_aad_application_token_authentication(url, TOKEN)
        issued = KustoConnectionStringBuilder.with_token_provider(url,
                                                                  app_token)
        cls.client = KustoClient(static)
        cls.issued_client = KustoClient(issued)
        cls.streaming = KustoStreamingIngestClient(issued)
        cls.managed = ManagedStreamingIngestClient(static)
        # no real backoff between the managed client's streaming attempts
        cls.managed._set_retry_settings(max_seconds_per_retry=0.05)

    @classmethod
    def tearDownClass(cls):
        for c in (cls.client, cls.issued_client, cls.streaming,
                  cls.managed):
            c.close()
        rc = cls.emu.stop()
        assert rc == 0, "the emulator exits 0 on SIGTERM, got %r" % rc

    def count(self, client=None):
        r = (client or self.client).execute_query(DB, "GamePlay | count")
        return r.primary_results[0][0]["Count"]

    def test_1_mgmt_seed_setup(self):
        self.client.execute_mgmt(DB, adx.SEED_CREATE_TABLE)
        self.client.execute_mgmt(DB, adx.SEED_CREATE_MAPPING)
        self.client.execute_mgmt(
            DB, adx.SEED_STREAMING_POLICY.format(db=DB))
        tables = self.client.execute_mgmt(DB, ".show tables")
        names = [r["TableName"] for r in tables.primary_results[0]]
        self.assertIn("GamePlay", names)
        maps = self.client.execute_mgmt(
            DB, ".show table GamePlay ingestion json mappings")
        self.assertEqual(maps.primary_results[0][0]["Name"],
                         adx.GAMEPLAY_MAPPING)
        self.assertEqual(self.count(), 0)

    def test_2_streaming_client_with_issued_token(self):
        before = self.tokens_issued
        self.streaming.ingest_from_stream(
            StreamDescriptor(io.BytesIO(gameplay(40))), props())
        self.assertGreater(self.tokens_issued, before,
                           "the SDK asked the token callback")
        self.assertEqual(self.count(), 40)
        self.assertEqual(self.count(self.issued_client), 40)
        self.assertEqual(self.emu.stats()["tables"]["%s.GamePlay" % DB], 40)

    def test_3_query_v2_typed(self):
        r = self.client.execute_query(
            DB, "GamePlay | where PlayerID == 7 | project PlayerID, Win, "
                "EventTime")
        row = r.primary_results[0][0]
        self.assertEqual(row["PlayerID"], 7)
        self.assertEqual(row["Win"], 21)
        self.assertEqual(row["EventTime"].isoformat(),
                         "2024-05-01T10:00:07+00:00")
        crp = ClientRequestProperties()
        crp.set_option("servertimeout", datetime.timedelta(minutes=1))
        v2 = self.client.execute_query(DB, "GamePlay | summarize "
                                       "n = count() by GameID | "
                                       "order by GameID asc", crp)
        self.assertEqual([(x["GameID"], x["n"])
                          for x in v2.primary_results[0]],
                         [(g, 8) for g in range(5)])

    def test_4_managed_streaming_client(self):
        res = self.managed.ingest_from_stream(
            StreamDescriptor(io.BytesIO(gameplay(25, start=1000))), props())
        self.assertIsNotNone(res)
        self.assertEqual(self.count(), 65)
        r = self.client.execute_query(
            DB, "GamePlay | where PlayerID >= 1000 | summarize "
                "min(PlayerID), max(PlayerID), count()")
        row = r.primary_results[0][0]
        self.assertEqual((row["min_PlayerID"], row["max_PlayerID"],
                          row["count_"]), (1000, 1024, 25))

    def test_5_managed_retries_a_transient_503(self):
        self.emu.faults(fail_count=2, fail_status=503)
        self.managed.ingest_from_stream(
            StreamDescriptor(io.BytesIO(gameplay(5, start=2000))), props())
        st = self.emu.stats()
        self.assertEqual(st["faults_fired"]["fail"], 2)
        self.assertEqual(self.count(), 70, "stored once, after two 503s")

    def test_6_errors(self):
        self.emu.faults(fail_count=1, fail_status=429)
        with self.assertRaises(KustoThrottlingError):
            self.streaming.ingest_from_stream(
                StreamDescriptor(io.BytesIO(gameplay(1))), props())
        # a permanent error: the managed client raises it and does not
        # fall back to queued ingestion; azure-kusto-ingest 6.0.4 still
        # makes all its 3 streaming attempts first (tenacity retries any
        # exception), so all 3 must fail
        fired = self.emu.stats()["faults_fired"]["fail"]
        self.emu.faults(fail_count=3, fail_status=400,
                        fail_code="Stream_WrongNumberOfFields")
        with self.assertRaises(KustoApiError) as cm:
            self.managed.ingest_from_stream(
                StreamDescriptor(io.BytesIO(gameplay(1))), props())
        err = cm.exception.get_api_error()
        self.assertEqual(err.code, "Stream_WrongNumberOfFields")
        self.assertTrue(err.permanent)
        self.assertEqual(self.emu.stats()["faults_fired"]["fail"], fired + 3)
        # an unknown mapping comes from the emulator itself, permanent too
        with self.assertRaises(KustoApiError) as cm:
            self.managed.ingest_from_stream(
                StreamDescriptor(io.BytesIO(gameplay(1))), props("nope"))
        self.assertEqual(cm.exception.get_api_error().code,
                         "BadRequest_MappingReferenceWasNotFound")
        self.assertTrue(cm.exception.get_api_error().permanent)
        with self.assertRaises(KustoServiceError):
            self.client.execute_query(DB, "GamePlay | frobnicate")
        self.assertEqual(self.count(), 70, "nothing applied by the failures")

    def test_7_unauthorized(self):
        bad = KustoClient(KustoConnectionStringBuilder.
                          with_aad_application_token_authentication(
                              self.emu.url, "not-a-token"))
        try:
            with self.assertRaises(KustoServiceError) as cm:
                bad.execute_query(DB, "GamePlay | count")
            self.assertIn("401", str(cm.exception))
        finally:
            bad.close()

    def test_8_clear_table(self):
        self.client.execute_mgmt(DB, ".clear table GamePlay data")
        self.assertEqual(self.count(), 0)


if __name__ == "__main__":
    print("azure-kusto-data %s" % _kd_version.VERSION)
    prog = unittest.main(exit=False, verbosity=2)
    r = prog.result
    ran = r.testsRun
    bad = len(r.failures) + len(r.errors)
    if r.skipped:
        bad += len(r.skipped)  # a skipped test is a failing test here
    print("%d passed, %d failed" % (ran - bad, bad))
    sys.exit(1 if bad or not ran else 0)
