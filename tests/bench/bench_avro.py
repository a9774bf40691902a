#!/usr/bin/env python3
"""bench_avro.py - Avro events/s end to end beside JSON, in one run
(issue 16): the same N events (tests/e2e/test_avro.py's record shape) on
a real broker (tests/kafka) as

  json        plain JSON values, route format json (the baseline)
  avro->json  Schema Registry Avro values, route format json (decoded to
              JSON on the build worker, metadata fields added)
  avro        the same Avro values, route format avro (object container
              files, metadata fields appended to the writer schema)

each read by its own `kadx run` (own group, own journal) into the ADX
emulator, one after the other. The rate is N / (last - first ingestion
time in the table): the forwarder's throughput once it runs; the wall
column is from the start of kadx to the last row (includes start-up and
the Kafka group join). Values are framed with fastavro (schemaless) and
the schema registered in the registry stand-in (tests/e2e/registry.py).

usage: bench_avro.py [--kadx PATH] [--events N] [--partitions P]
A sanitizer build (build/) is several times slower than a release build:
  meson setup build-rel -Dbuildtype=release && ninja -C build-rel &&
  .venv/bin/python3 tests/bench/bench_avro.py --kadx build-rel/kadx
"""
import argparse
import io
import json
import os
import struct
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import adx  # noqa: E402
import harness  # noqa: E402
import kafka  # noqa: E402
import registry  # noqa: E402
import test_avro as ta  # noqa: E402


def produce(bs, topic, parts, values):
    from confluent_kafka import Producer
    p = Producer({"bootstrap.servers": bs, "acks": "all", "linger.ms": 20,
                  "batch.size": 1 << 20, "log_level": 3})
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, v, partition=i % parts)
                break
            except BufferError:
                p.poll(0.1)
    left = p.flush(300)
    if left:
        raise SystemExit("%d messages not delivered" % left)


def run_one(kadx_bin, tmp, name, bs, topic, emu, reg_url, table, fmt,
            mapping, conv, n):
    route = {"topic": topic, "database": "leaderboard", "table": table,
             "format": fmt, "mapping": mapping,
             "meta": {"partition": "kp", "offset": "ko", "batch_id": "kb"}}
    if conv:
        route["value_converter"] = "avro"
    cfg = {"kafka": {"bootstrap.servers": bs, "group.id": "bench-" + name},
           "adx": {"ingest_url": emu.url, "auth": {"method": "none"}},
           "schema_registry": {"url": reg_url},
           "routes": [route],
           "journal": {"path": os.path.join(tmp, name + ".db"),
                       "sync": "normal"},
           "forwarder": {"linger_ms": 50},
           "admin": {"listen": "off"}}
    path = os.path.join(tmp, name + ".json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    t0 = time.monotonic()
    k = harness.Proc([kadx_bin, "run", "-c", path], name=name)
    try:
        harness.wait_until(lambda: emu.count(table) >= n, timeout=600,
                           interval=0.2, what="%d rows in %s" % (n, table))
        wall = time.monotonic() - t0
    finally:
        k.stop()
    r = emu.query("%s | summarize lo=min(ingestion_time()), "
                  "hi=max(ingestion_time()), c=count(), d=dcount(Seq)"
                  % table)[0]
    span = (adx_time(r["hi"]) - adx_time(r["lo"]))
    return {"rows": r["c"], "distinct": r["d"], "span": span, "wall": wall}


def adx_time(s):
    """ISO 8601 (ADX's datetime text) to seconds."""
    from datetime import datetime
    s = s.rstrip("Z")
    if "." in s:
        head, frac = s.split(".")
        s = head + "." + (frac + "000000")[:6]
        return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%f").timestamp()
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S").timestamp()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kadx", default=os.environ.get("KADX_BIN", "kadx"))
    ap.add_argument("--events", type=int, default=200000)
    ap.add_argument("--partitions", type=int, default=4)
    a = ap.parse_args()
    harness.KADX = a.kadx
    import fastavro
    ps = fastavro.parse_schema(ta.V2)
    reg = registry.Registry().start()
    sid = reg.register("bench-avro-value", json.dumps(ta.V2))
    head = b"\x00" + struct.pack(">i", sid)
    avro_vals, json_vals = [], []
    for i in range(a.events):
        r = ta.record(i, True)
        b = io.BytesIO()
        fastavro.schemaless_writer(b, ps, r)
        avro_vals.append(head + b.getvalue())
        json_vals.append(json.dumps(r, separators=(",", ":")).encode())
    c = kafka.cluster(topics=[("bench-json", a.partitions),
                              ("bench-avro", a.partitions)])
    emu = adx.Emulator(count_only=False).start()
    try:
        for t in ("JsonA", "JsonB"):
            emu.mgmt(".create table %s (%s, Tags: dynamic, KafkaPartition: "
                     "int, KafkaOffset: long, BatchId: string)"
                     % (t, ta.COLS))
            emu.mgmt(ta.JSON_MAPPING.replace("JsonT", t))
        emu.mgmt(".create table AvroT (%s)" % ta.COLS)
        emu.mgmt(ta.AVRO_MAPPING)
        emu.mgmt(".alter database leaderboard policy streamingingestion "
                 "enable")
        produce(c.bootstrap, "bench-json", a.partitions, json_vals)
        produce(c.bootstrap, "bench-avro", a.partitions, avro_vals)
        jbytes = sum(len(v) for v in json_vals) / a.events
        abytes = sum(len(v) for v in avro_vals) / a.events
        rows = []
        with tempfile.TemporaryDirectory(prefix="kadx-bench-avro-") as tmp:
            for name, topic, table, fmt, mapping, conv, size in (
                    ("json", "bench-json", "JsonA", "json", "json_mapping",
                     False, jbytes),
                    ("avro->json", "bench-avro", "JsonB", "json",
                     "json_mapping", True, abytes),
                    ("avro", "bench-avro", "AvroT", "avro", "avro_mapping",
                     True, abytes)):
                r = run_one(a.kadx, tmp, name.replace(">", ""), c.bootstrap,
                            topic, emu, reg.url, table, fmt, mapping, conv,
                            a.events)
                rows.append((name, size, r))
        print("kadx %s, %d events, %d partitions, real broker, journal "
              "sync=normal" % (a.kadx, a.events, a.partitions))
        print("| route | value bytes | rows (distinct) | events/s "
              "(first..last row) | wall s (start..last row) |")
        print("|---|---|---|---|---|")
        for name, size, r in rows:
            rate = r["rows"] / r["span"] if r["span"] > 0 else float("inf")
            print("| %s | %.0f | %d (%d) | %.0f | %.1f |" % (
                name, size, r["rows"], r["distinct"], rate, r["wall"]))
    finally:
        emu.stop()
        reg.stop()
        c.stop()


if __name__ == "__main__":
    main()
