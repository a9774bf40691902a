"""test_python_queued.py - the emulator's queued ingestion (its data-
management side over Azurite, emulators/dm.c) checked with
Microsoft's Python SDK: azure-kusto-ingest 6.x's QueuedIngestClient and its
status queues (KustoIngestStatusQueues), azure-storage-blob for a blob the
test uploads itself. Meson test `conformance-python-queued`.

What it checks, against one Azurite (npm, tests/conformance) and one
`kadx adx-emulator --storage-*` on 127.0.0.1:
- the SDK finds its resources in `.get ingestion resources` (account SAS,
  Azurite's path-style URLs), uploads a gzip blob, posts its message; the
  rows land with the table's JSON mapping and a success message names the
  SDK's source id;
- `ingest-by:` tags with ingestIfNotExists: a resend with the same tag
  stores nothing and is reported Skipped_IngestByTagAlreadyExists;
- an uncompressed CSV blob (ingest_from_blob) by position;
- a failure report for an unknown mapping, and for an injected blob fault
  (POST /_emulator/dm/faults fail_count), each Permanent, nothing stored;
- a delayed status (status_delay_ms): the rows are in at once, the success
  message is written after the delay;
- the status table (ReportMethod Table, IngestionStatusInTable): a message
  the test composes as the Node/Java SDKs do (a Pending row first, through
  the table REST API with the SAS of `.get ingestion resources`); the
  emulator sets the row to Succeeded. (The Python SDK reports by queue only,
  and the Node SDK cannot address Azurite's path-style table URL.)
Everything is waited on with deadlines (harness.wait_until), nothing slept.
"""
import base64
import datetime
import io
import json
import os
import sys
import unittest
import urllib.request
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

for _k in list(os.environ):
    if _k.lower() in ("http_proxy", "https_proxy", "all_proxy"):
        del os.environ[_k]
os.environ["NO_PROXY"] = "*"
os.environ["no_proxy"] = "*"

try:
    from azure.kusto.data import KustoConnectionStringBuilder
    from azure.kusto.data.data_format import DataFormat
    from azure.kusto.ingest import (BlobDescriptor, IngestionProperties,
                                    QueuedIngestClient, ReportLevel,
                                    StreamDescriptor)
    from azure.kusto.ingest.status import KustoIngestStatusQueues
    from azure.storage.blob import BlobClient
    from azure.storage.queue import QueueClient
    import azure.kusto.ingest._version as _ki_version
except ImportError as e:  # pragma: no cover
    print("skipped: azure-kusto-ingest is not installed "
          "(bash .ci/install-deps): %s" % e)
    sys.exit(77)

import adx  # noqa: E402  (tests/e2e/adx.py)
import azurite  # noqa: E402
import harness  # noqa: E402

DB = "leaderboard"
TOKEN = "queued-conformance-token"
DEADLINE = 60.0


def gameplay(n, start=0):
    return "".join(json.dumps({
        "playerId": start + i, "gameId": i % 5, "win": i, "stake": 10,
        "eventTime": "2024-05-01T10:00:%02dZ" % (i % 60)}) + "\n"
        for i in range(n)).encode()


def iso(s):
    """An ADX datetime string (7 fraction digits, Z) as a datetime."""
    s = s.rstrip("Z")
    if "." in s:
        head, frac = s.split(".", 1)
        s = head + "." + (frac + "000000")[:6]
    return datetime.datetime.fromisoformat(s)


def props(**kw):
    kw.setdefault("ingestion_mapping_reference", adx.GAMEPLAY_MAPPING)
    kw.setdefault("data_format", DataFormat.JSON)
    return IngestionProperties(database=DB, table="GamePlay",
                               report_level=ReportLevel.FailuresAndSuccesses,
                               **kw)


class PythonQueuedConformance(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.az = azurite.Azurite().start()
        cls.emu = adx.Emulator(databases=(DB,), auth="token",
                               static_token=TOKEN,
                               extra=cls.az.emulator_args()).start()
        cls.emu.token = TOKEN
        kcsb = KustoConnectionStringBuilder.\
            with_aad_application_token_authentication(cls.emu.url, TOKEN)
        cls.client = QueuedIngestClient(kcsb)
        cls.status = KustoIngestStatusQueues(cls.client)
        cls.emu.setup_gameplay()
        # the status messages by source id, as they are popped
        cls.seen = {}

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        try:
            rc = cls.emu.stop()
            assert rc == 0, "the emulator exits 0 on SIGTERM, got %r" % rc
        finally:
            cls.az.stop()

    def count(self):
        return self.emu.count("GamePlay")

    def dm(self):
        return self.emu._ok("GET", "/_emulator/dm")

    def report_for(self, source_id):
        """Waits for the status message about source_id (either queue)."""
        sid = str(source_id)

        def poll():
            for q in (self.status.success, self.status.failure):
                for m in q.pop(16):
                    self.seen[m.IngestionSourceId] = m
            return sid in self.seen
        harness.wait_until(poll, timeout=DEADLINE,
                           what="the status message of %s" % sid)
        return self.seen[sid]

    def test_1_queued_json_with_mapping(self):
        before = self.count()
        res = self.client.ingest_from_stream(
            StreamDescriptor(io.BytesIO(gameplay(50))), props())
        self.assertTrue(res.blob_uri.split("?")[0].endswith(".gz"),
                        "the SDK uploaded a gzip blob")
        msg = self.report_for(res.source_id)
        self.assertEqual(type(msg).__name__, "SuccessMessage")
        self.assertEqual((msg.Database, msg.Table), (DB, "GamePlay"))
        self.assertEqual(self.count(), before + 50)
        rows = self.emu.query("GamePlay | where PlayerID == 7 | project "
                              "PlayerID, Win, Stake")
        self.assertEqual(rows, [{"PlayerID": 7, "Win": 7, "Stake": 10}])

    def test_2_ingest_by_tag_makes_a_resend_a_no_op(self):
        tag = "batch-%s" % uuid.uuid4()
        before = self.count()
        p = props(ingest_by_tags=[tag], ingest_if_not_exists=[tag])
        first = self.client.ingest_from_stream(
            StreamDescriptor(io.BytesIO(gameplay(20, start=100))), p)
        self.assertEqual(type(self.report_for(first.source_id)).__name__,
                         "SuccessMessage")
        self.assertEqual(self.count(), before + 20)
        again = self.client.ingest_from_stream(
            StreamDescriptor(io.BytesIO(gameplay(20, start=100))), p)
        msg = self.report_for(again.source_id)
        self.assertEqual(type(msg).__name__, "FailureMessage")
        self.assertEqual(msg.ErrorCode, "Skipped_IngestByTagAlreadyExists")
        self.assertEqual(self.count(), before + 20, "the resend stored nothing")
        self.assertGreaterEqual(self.dm()["stats"]["skipped"], 1)
        # another tag on the same data is ingested
        other = self.client.ingest_from_stream(
            StreamDescriptor(io.BytesIO(gameplay(20, start=100))),
            props(ingest_by_tags=[tag + "-b"],
                  ingest_if_not_exists=[tag + "-b"]))
        self.assertEqual(type(self.report_for(other.source_id)).__name__,
                         "SuccessMessage")
        self.assertEqual(self.count(), before + 40)

    def test_3_uncompressed_csv_blob(self):
        # the container and SAS the SDK was given, used directly
        res = self.emu.mgmt(".get ingestion resources")
        rows = {r[0]: r[1] for r in res["Tables"][0]["Rows"]}
        container = rows["TempStorage"]
        base, sas = container.split("?", 1)
        name = "plain-%s.csv" % uuid.uuid4()
        csv = "".join("%d,%d,%d,%d,2024-05-01T11:00:00Z\n" % (
            5000 + i, 1, i, 3) for i in range(12)).encode()
        BlobClient.from_blob_url("%s/%s?%s" % (base, name, sas)).upload_blob(
            csv)
        before = self.count()
        sid = uuid.uuid4()
        self.client.ingest_from_blob(
            BlobDescriptor("%s/%s?%s" % (base, name, sas), len(csv), sid),
            IngestionProperties(database=DB, table="GamePlay",
                                data_format=DataFormat.CSV,
                                report_level=ReportLevel.FailuresAndSuccesses))
        self.assertEqual(type(self.report_for(sid)).__name__,
                         "SuccessMessage")
        self.assertEqual(self.count(), before + 12)
        self.assertEqual(self.emu.count("GamePlay | where PlayerID >= 5000 "
                                        "and Stake == 3"), 12)

    def test_4_failure_reports(self):
        before = self.count()
        res = self.client.ingest_from_stream(
            StreamDescriptor(io.BytesIO(gameplay(5, start=200))),
            props(ingestion_mapping_reference="no_such_mapping"))
        msg = self.report_for(res.source_id)
        self.assertEqual(type(msg).__name__, "FailureMessage")
        self.assertEqual(msg.ErrorCode,
                         "BadRequest_MappingReferenceWasNotFound")
        self.assertEqual(msg.FailureStatus, "Permanent")
        # an injected blob failure
        self.emu._ok("POST", "/_emulator/dm/faults",
                     {"fail_count": 1, "fail_code": "BadRequest_InvalidBlob"})
        res = self.client.ingest_from_stream(
            StreamDescriptor(io.BytesIO(gameplay(5, start=300))), props())
        msg = self.report_for(res.source_id)
        self.assertEqual(type(msg).__name__, "FailureMessage")
        self.assertEqual(msg.ErrorCode, "BadRequest_InvalidBlob")
        self.assertEqual(self.count(), before, "failed blobs store nothing")
        self.assertEqual(self.dm()["stats"]["fired_fail"], 1)
        # a bad fault key is an error naming it
        with self.assertRaises(adx.AdxError) as cm:
            self.emu._ok("POST", "/_emulator/dm/faults", {"nope": 1})
        self.assertIn("nope", str(cm.exception))

    def test_5_delayed_status(self):
        self.emu._ok("POST", "/_emulator/dm/faults", {"status_delay_ms": 3000})
        try:
            before = self.count()
            res = self.client.ingest_from_stream(
                StreamDescriptor(io.BytesIO(gameplay(7, start=400))), props())
            msg = self.report_for(res.source_id)
            self.assertEqual(type(msg).__name__, "SuccessMessage")
            self.assertEqual(self.count(), before + 7)
            applied = self.emu.query(
                "GamePlay | where PlayerID >= 400 and PlayerID < 407 | "
                "summarize t = max(ingestion_time())")[0]["t"]
            t_applied = iso(applied)
            t_report = iso(msg.SucceededOn)
            self.assertGreaterEqual(
                (t_report - t_applied).total_seconds(), 2.9,
                "the report comes after the delay")
        finally:
            self.emu._ok("POST", "/_emulator/dm/faults",
                         {"status_delay_ms": 0})

    def test_6_status_table_row(self):
        res = self.emu.mgmt(".get ingestion resources")
        rows = {r[0]: r[1] for r in res["Tables"][0]["Rows"]}
        table = rows["IngestionsStatusTable"]
        tbase, tsas = table.split("?", 1)
        cbase, csas = rows["TempStorage"].split("?", 1)
        sid = str(uuid.uuid4())
        hdrs = {"Content-Type": "application/json",
                "Accept": "application/json;odata=nometadata",
                "x-ms-version": "2019-02-02"}
        req = urllib.request.Request(
            "%s?%s" % (tbase, tsas), method="POST", headers=hdrs,
            data=json.dumps({"PartitionKey": sid, "RowKey": sid,
                             "Status": "Pending"}).encode())
        with urllib.request.urlopen(req, timeout=20) as r:
            self.assertEqual(r.status, 201)
        blob = "%s/%s.json?%s" % (cbase, sid, csas)
        BlobClient.from_blob_url(blob).upload_blob(gameplay(4, start=600))
        before = self.count()
        msg = {"Id": sid, "BlobPath": blob, "DatabaseName": DB,
               "TableName": "GamePlay", "ReportLevel": 2,
               "ReportMethod": "Table",
               "IngestionStatusInTable": {"TableConnectionString": table,
                                          "PartitionKey": sid,
                                          "RowKey": sid},
               "AdditionalProperties": {
                   "format": "json",
                   "ingestionMappingReference": adx.GAMEPLAY_MAPPING}}
        QueueClient.from_queue_url(
            rows["SecuredReadyForAggregationQueue"]).send_message(
            base64.b64encode(json.dumps(msg).encode()).decode())
        entity = "%s(PartitionKey='%s',RowKey='%s')?%s" % (tbase, sid, sid,
                                                           tsas)
        got = {}

        def succeeded():
            r = urllib.request.Request(entity, headers=hdrs)
            with urllib.request.urlopen(r, timeout=20) as resp:
                got.update(json.loads(resp.read()))
            return got.get("Status") == "Succeeded"
        harness.wait_until(succeeded, timeout=DEADLINE,
                           what="the status row to say Succeeded")
        self.assertEqual((got["Database"], got["Table"],
                          got["IngestionSourceId"]), (DB, "GamePlay", sid))
        self.assertEqual(self.count(), before + 4)


if __name__ == "__main__":
    print("azure-kusto-ingest %s" % _ki_version.VERSION)
    prog = unittest.main(exit=False, verbosity=2)
    r = prog.result
    ran = r.testsRun
    bad = len(r.failures) + len(r.errors)
    if r.skipped:
        bad += len(r.skipped)  # a skipped test is a failing test here
    print("%d passed, %d failed" % (ran - bad, bad))
    sys.exit(1 if bad or not ran else 0)
