"""bench_queued_emulator.py - the ADX emulator's queued ingestion (its
data-management side over Azurite) driven by Microsoft's Python
QueuedIngestClient: blobs/s and rows/s applied, and the latency from the
SDK's enqueue call to the success message, as a baseline for kadx's queued
path. Not part of `meson test`.

    KADX_BIN=build/kadx .venv/bin/python3 tests/bench/bench_queued_emulator.py \
        [--batches 20] [--rows 5000] [--window 4]

It keeps up to --window batches queued at once (the SDK call returns once
the blob is uploaded and the message posted) and waits for each batch's
success message in the status queue. The emulator polls its queue every
100 ms, so latency has that floor; real ADX batches for up to 5 minutes
by default (its batching policy), the emulator applies each blob at once.
"""
import argparse
import io
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
for _k in list(os.environ):
    if _k.lower() in ("http_proxy", "https_proxy", "all_proxy"):
        del os.environ[_k]
os.environ["NO_PROXY"] = "*"

from azure.kusto.data import KustoConnectionStringBuilder  # noqa: E402
from azure.kusto.data.data_format import DataFormat  # noqa: E402
from azure.kusto.ingest import (IngestionProperties,  # noqa: E402
                                QueuedIngestClient, ReportLevel,
                                StreamDescriptor)
from azure.kusto.ingest.status import KustoIngestStatusQueues  # noqa: E402

import adx  # noqa: E402
import azurite  # noqa: E402


def body(n, start):
    return "".join(json.dumps({
        "playerId": start + i, "gameId": i % 5, "win": i, "stake": 10,
        "eventTime": "2024-05-01T10:00:00Z"}) + "\n"
        for i in range(n)).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--batches", type=int, default=20)
    ap.add_argument("--rows", type=int, default=5000)
    ap.add_argument("--window", type=int, default=4)
    a = ap.parse_args()
    az = azurite.Azurite().start()
    emu = adx.Emulator(extra=az.emulator_args()).start()
    try:
        emu.setup_gameplay()
        kcsb = KustoConnectionStringBuilder.\
            with_aad_application_token_authentication(emu.url, "bench")
        client = QueuedIngestClient(kcsb)
        status = KustoIngestStatusQueues(client)
        props = IngestionProperties(
            database=emu.db, table="GamePlay", data_format=DataFormat.JSON,
            ingestion_mapping_reference=adx.GAMEPLAY_MAPPING,
            report_level=ReportLevel.FailuresAndSuccesses)
        sent = {}  # source id -> enqueue time
        lat = []
        t0 = time.monotonic()
        i = 0
        while len(lat) < a.batches:
            while i < a.batches and len(sent) < a.window:
                t = time.monotonic()
                r = client.ingest_from_stream(
                    StreamDescriptor(io.BytesIO(body(a.rows, i * a.rows))),
                    props)
                sent[str(r.source_id)] = t
                i += 1
            for q in (status.success, status.failure):
                for m in q.pop(16):
                    if q is status.failure:
                        raise SystemExit("failure report: %s" % m)
                    t = sent.pop(m.IngestionSourceId, None)
                    if t is not None:
                        lat.append(time.monotonic() - t)
        wall = time.monotonic() - t0
        n = emu.count("GamePlay")
        assert n == a.batches * a.rows, (n, a.batches * a.rows)
        lat.sort()
        print("| batches | rows/batch | window | wall s | batches/s | rows/s "
              "| enqueue->success p50 ms | p95 ms |")
        print("|---|---|---|---|---|---|---|---|")
        print("| %d | %d | %d | %.1f | %.1f | %.0f | %.0f | %.0f |" % (
            a.batches, a.rows, a.window, wall, a.batches / wall, n / wall,
            statistics.median(lat) * 1000,
            lat[min(len(lat) - 1, int(len(lat) * 0.95))] * 1000))
        client.close()
    finally:
        emu.stop()
        az.stop()


if __name__ == "__main__":
    main()
