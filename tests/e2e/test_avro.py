"""Avro topics through a Schema Registry (issue 16), on the real broker.

The producer is independent of kadx: confluent-kafka's Producer with its
AvroSerializer (fastavro underneath) registering the schemas in the
registry stand-in (registry.py; basic auth on). kadx decodes with its own
code (gateway/avro.c), so what arrives in the emulator checks the two
against each other.

- test_avro_and_json: one topic, records written with two versions of a
  schema (v2 adds a nullable field) plus three bad records (no magic byte,
  an id the registry does not know, a body cut short). Two kadx instances
  read it in their own groups: a Kusto sink connector config
  (AvroConverter, "format": "avro", an Avro mapping) and a native route
  with format json (JSON mapping, metadata fields, dedupe column). Each
  delivers every good record exactly once, dead-letters exactly the three
  with their reasons, and fetches each schema id once. The native instance
  also reads a JSON Schema topic (confluent-kafka's JSONSerializer).
- test_registry_tls_ca_file: an https registry with a self-signed
  certificate, verified only with schema_registry.ca_file.
- test_registry_down: the registry answers 503 for 30 s while records of
  a schema kadx has not seen yet arrive: sending of the route pauses,
  /readyz is red with the reason, then everything is delivered once. Then
  kadx restarts with the registry down: the schemas kept in the journal
  decode the new records.
"""
import json
import os
import threading
import time

import harness
import kafka
import registry
import test_forwarder as tf
from harness import wait_until

TOPIC = tf.TOPIC
USER, PASSWORD = "sr-user", "sr-pass-9f1c"

V1 = {"type": "record", "name": "GamePlay", "namespace": "kadx.test",
      "fields": [{"name": "seq", "type": "long"},
                 {"name": "playerId", "type": "int"},
                 {"name": "win", "type": "long"},
                 {"name": "eventTime", "type": "string"},
                 {"name": "tags", "type": {"type": "array",
                                           "items": "string"}}]}
V2 = dict(V1, fields=V1["fields"] + [
    {"name": "bonus", "type": ["null", "int"], "default": None}])

COLS = "Seq: long, PlayerID: int, Win: long, EventTime: datetime, Bonus: int"
AVRO_MAPPING = (
    ".create table AvroT ingestion avro mapping 'avro_mapping' '["
    "{\"column\":\"Seq\",\"Properties\":{\"Field\":\"seq\"}},"
    "{\"column\":\"PlayerID\",\"Properties\":{\"Field\":\"playerId\"}},"
    "{\"column\":\"Win\",\"Properties\":{\"Field\":\"win\"}},"
    "{\"column\":\"EventTime\",\"Properties\":{\"Field\":\"eventTime\"}},"
    "{\"column\":\"Bonus\",\"Properties\":{\"Path\":\"$.bonus\"}}]'")
JSON_MAPPING = (
    ".create table JsonT ingestion json mapping 'json_mapping' '["
    "{\"column\":\"Seq\",\"Properties\":{\"Path\":\"$.seq\"}},"
    "{\"column\":\"PlayerID\",\"Properties\":{\"Path\":\"$.playerId\"}},"
    "{\"column\":\"Win\",\"Properties\":{\"Path\":\"$.win\"}},"
    "{\"column\":\"EventTime\",\"Properties\":{\"Path\":\"$.eventTime\"}},"
    "{\"column\":\"Bonus\",\"Properties\":{\"Path\":\"$.bonus\"}},"
    "{\"column\":\"Tags\",\"Properties\":{\"Path\":\"$.tags\"}},"
    "{\"column\":\"KafkaPartition\",\"Properties\":{\"Path\":\"$.kp\"}},"
    "{\"column\":\"KafkaOffset\",\"Properties\":{\"Path\":\"$.ko\"}},"
    "{\"column\":\"BatchId\",\"Properties\":{\"Path\":\"$.kb\"}}]'")


JS_TOPIC = "gameplay-js"
JS_SCHEMA = {"$schema": "http://json-schema.org/draft-07/schema#",
             "title": "Play", "type": "object",
             "properties": {"seq": {"type": "integer"},
                            "playerId": {"type": "integer"}},
             "required": ["seq", "playerId"]}
JS_MAPPING = (
    ".create table JsT ingestion json mapping 'js_mapping' '["
    "{\"column\":\"Seq\",\"Properties\":{\"Path\":\"$.seq\"}},"
    "{\"column\":\"PlayerID\",\"Properties\":{\"Path\":\"$.playerId\"}},"
    "{\"column\":\"KafkaOffset\",\"Properties\":{\"Path\":\"$.ko\"}}]'")


def setup_tables(emu):
    emu.mgmt(".create table AvroT (%s)" % COLS)
    emu.mgmt(AVRO_MAPPING)
    emu.mgmt(".create table JsonT (%s, Tags: dynamic, KafkaPartition: int, "
             "KafkaOffset: long, BatchId: string)" % COLS)
    emu.mgmt(JSON_MAPPING)
    emu.mgmt(".create table JsT (Seq: long, PlayerID: int, KafkaOffset: long)")
    emu.mgmt(JS_MAPPING)
    emu.mgmt(".alter database leaderboard policy streamingingestion enable")


def record(i, v2):
    r = {"seq": i, "playerId": i % 1000, "win": (i % 7) * 10,
         "eventTime": "2026-11-24T12:00:00.000Z", "tags": ["t%d" % (i % 3)]}
    if v2:
        r["bonus"] = i % 50
    return r


class AvroProducer:
    """confluent-kafka's Producer + AvroSerializer (auto-registration in
    the registry under the topic's value subject)."""

    def __init__(self, bootstrap, reg_url):
        from confluent_kafka import Producer
        from confluent_kafka.schema_registry import SchemaRegistryClient
        from confluent_kafka.schema_registry.avro import AvroSerializer
        self.src = SchemaRegistryClient({
            "url": reg_url, "basic.auth.user.info": "%s:%s" % (USER,
                                                               PASSWORD)})
        self.ser = {1: AvroSerializer(self.src, json.dumps(V1)),
                    2: AvroSerializer(self.src, json.dumps(V2))}
        self.p = Producer({"bootstrap.servers": bootstrap, "acks": "all",
                           "enable.idempotence": True, "linger.ms": 5,
                           "log_level": 3})
        self.failed = []

    def _dr(self, err, msg):
        if err is not None:
            self.failed.append(str(err))

    def value(self, i, version):
        from confluent_kafka.serialization import (MessageField,
                                                   SerializationContext)
        return self.ser[version](record(i, version == 2),
                                 SerializationContext(TOPIC,
                                                      MessageField.VALUE))

    def send_raw(self, value, partition):
        while True:
            try:
                self.p.produce(TOPIC, value, partition=partition,
                               on_delivery=self._dr)
                return
            except BufferError:
                self.p.poll(0.1)

    def send(self, start, n, version, parts):
        for i in range(start, start + n):
            self.send_raw(self.value(i, version), parts[i % len(parts)])
        self.flush()

    def flush(self):
        self.p.flush(120)
        assert not self.failed, self.failed[:3]


class AvroCase(tf.ForwarderBase):

    def setUp(self):
        super().setUp()
        self.reg = registry.Registry(USER, PASSWORD).start()
        self.addCleanup(self.reg.stop)

    def native_config(self, path, emu, group, journal, extra_routes=(),
                      reg_url=None):
        extra_routes = list(extra_routes)
        route = {"topic": TOPIC, "database": "leaderboard", "table": "JsonT",
                 "format": "json", "mapping": "json_mapping",
                 "value_converter": "avro",
                 "meta": {"partition": "kp", "offset": "ko",
                          "batch_id": "kb"},
                 "dedupe_column": "BatchId"}
        cfg = {"kafka": {"bootstrap.servers": self.bs, "group.id": group},
               "adx": {"ingest_url": emu.url, "request_timeout_ms": 5000,
                       "server_timeout_ms": 1000,
                       "auth": {"method": "none"}},
               "schema_registry": {"url": reg_url or self.reg.url,
                                   "basic_auth": "%s:%s" % (USER, PASSWORD),
                                   "timeout_ms": 2000},
               "routes": [route] + extra_routes, "journal": {"path": journal},
               "forwarder": {"linger_ms": 50, "batch_max_rows": 2000,
                             "retry_initial_ms": 100, "retry_max_ms": 1000,
                             "ambiguous_delay_ms": 200,
                             "ambiguous_window_ms": 6500},
               "admin": {"listen": "127.0.0.1:0"}}
        with open(path, "w") as f:
            json.dump(cfg, f)

    def connector_config(self, path, emu):
        cfg = {"name": "avro-sink",
               "connector.class": "com.microsoft.azure.kusto.kafka.connect."
                                  "sink.KustoSinkConnector",
               "topics": TOPIC,
               "kusto.ingestion.url": emu.url,
               "kusto.query.url": emu.url,
               "aad.auth.strategy": "az_dev_token",
               "aad.auth.accesstoken": "dev-token",
               "kusto.tables.topics.mapping": json.dumps([
                   {"topic": TOPIC, "db": "leaderboard", "table": "AvroT",
                    "format": "avro", "mapping": "avro_mapping",
                    "streaming": True}]).replace(
                        '"', "'"),
               "flush.interval.ms": "100",
               "consumer.override.bootstrap.servers": self.bs,
               "key.converter":
                   "org.apache.kafka.connect.storage.StringConverter",
               "value.converter": "io.confluent.connect.avro.AvroConverter",
               "value.converter.schema.registry.url": self.reg.url,
               "value.converter.basic.auth.credentials.source": "USER_INFO",
               "value.converter.basic.auth.user.info":
                   "%s:%s" % (USER, PASSWORD)}
        with open(path, "w") as f:
            json.dump({"name": "avro-sink", "config": cfg}, f)

    def wait_rows(self, emu, table, n, k, timeout=90):
        def done():
            if not k.alive():
                raise AssertionError("kadx exited\n" + k.tail())
            return emu.count(table) >= n
        wait_until(done, timeout=timeout, interval=0.25,
                   what="%d rows in %s" % (n, table))

    def audit_json(self, emu, total):
        rows = emu.query("JsonT | summarize c=count(), d=dcount(Seq), "
                         "o=dcount(strcat(KafkaPartition, '/', KafkaOffset))")
        self.assertEqual((rows[0]["c"], rows[0]["d"], rows[0]["o"]),
                         (total, total, total))

    def test_avro_and_json(self):
        n1, n2 = 5000, 5000  # 10k events, two schema versions
        emu = self.start_emulator()
        setup_tables(emu)
        prod = AvroProducer(self.bs, self.reg.url)
        prod.send(0, n1, 1, self.parts)
        prod.send(n1, n2, 2, self.parts)
        id1 = prod.value(0, 1)[1:5]
        v1_body = prod.value(0, 1)[5:]
        # the bad ones: no magic byte, unknown id 9999, a body cut short
        bad = [b'{"seq": 1}', b"\x00\x00\x00\x27\x0f" + v1_body,
               b"\x00" + id1 + v1_body[:3]]
        for b in bad:
            prod.send_raw(b, 1)
        prod.flush()
        ids = sorted(self.reg.schemas)
        self.assertEqual(len(ids), 2)

        conn = os.path.join(self.tmp, "connector.json")
        self.connector_config(conn, emu)
        # JSON Schema values (confluent-kafka's JSONSerializer) on a second
        # topic, a route of the native instance
        kafka.fresh_topic(self.kafka, JS_TOPIC, 1)
        from confluent_kafka.schema_registry.json_schema import JSONSerializer
        from confluent_kafka.serialization import (MessageField,
                                                   SerializationContext)
        js = JSONSerializer(json.dumps(JS_SCHEMA), prod.src)
        for i in range(200):
            v = js({"seq": i, "playerId": i * 2},
                   SerializationContext(JS_TOPIC, MessageField.VALUE))
            while True:
                try:
                    prod.p.produce(JS_TOPIC, v, partition=0)
                    break
                except BufferError:
                    prod.p.poll(0.1)
        prod.flush()
        native = os.path.join(self.tmp, "native.json")
        self.native_config(
            native, emu, "g-avro-json", os.path.join(self.tmp, "j2.db"),
            extra_routes=[{"topic": JS_TOPIC, "database": "leaderboard",
                           "table": "JsT", "format": "json",
                           "mapping": "js_mapping",
                           "value_converter": "json_schema",
                           "meta": {"offset": "ko"}}])
        # a connector config has no journal key: ./kadx-journal.db, so the
        # process runs in the test's directory
        ka = harness.Proc([harness.KADX, "run", "-c", conn, "--admin-listen",
                           "off", "--group-id", "g-avro-avro"],
                          cwd=self.tmp, name="kadx avro")
        kj = harness.kadx("run", "-c", native, name="kadx json")
        total = n1 + n2
        for k, table in ((ka, "AvroT"), (kj, "JsonT")):
            self.wait_rows(emu, table, total, k, timeout=120)
        # format avro: every seq once, the v2 field where it was written
        rows = emu.query("AvroT | summarize c=count(), d=dcount(Seq), "
                         "b=countif(isnotnull(Bonus)), lo=min(Seq), "
                         "hi=max(Seq)")
        self.assertEqual((rows[0]["c"], rows[0]["d"], rows[0]["b"],
                          rows[0]["lo"], rows[0]["hi"]),
                         (total, total, n2, 0, total - 1))
        # format json: the same, plus offsets once and the metadata
        self.audit_json(emu, total)
        # JSON Schema: the documents after the 5-byte header
        self.wait_rows(emu, "JsT", 200, kj, timeout=30)
        rows = emu.query("JsT | summarize c=count(), d=dcount(KafkaOffset), "
                         "s=sum(Seq), p=sum(PlayerID)")
        self.assertEqual((rows[0]["c"], rows[0]["d"], rows[0]["s"],
                          rows[0]["p"]), (200, 200, 19900, 39800))
        rows = emu.query("JsonT | where Seq == 7777 | project PlayerID, "
                         "Bonus, Tags, BatchId")
        self.assertEqual(rows[0]["PlayerID"], 777)
        self.assertEqual(rows[0]["Bonus"], 7777 % 50)
        self.assertEqual(json.loads(rows[0]["Tags"])
                         if isinstance(rows[0]["Tags"], str)
                         else rows[0]["Tags"], ["t1"])
        self.assertTrue(rows[0]["BatchId"])
        # only the three bad records dead-lettered, with their reasons
        reasons = ["no schema registry framing",
                   "unknown schema id 9999 (the registry answered 404)",
                   "does not decode with schema id %d"
                   % int.from_bytes(id1, "big")]
        wait_until(lambda: tf.admin_get(kj, "/dead-letters")[1]["total"] == 3,
                   timeout=30, what="3 dead letters")
        dl = tf.admin_get(kj, "/dead-letters")[1]["dead_letters"]
        got = sorted(d["reason"] for d in dl)
        for want in reasons:
            self.assertTrue(any(want in g for g in got), (want, got))
        self.assertEqual(sorted(d["partition"] for d in dl), [1, 1, 1])
        for want in reasons:
            ka.wait_for(lambda l, w=want: "dead-lettering" in l and w in l,
                        timeout=30, what="kadx avro: " + want)
        self.assertEqual(ka.stop(), 0, ka.tail())
        self.assertEqual(kj.stop(), 0, kj.tail())
        # each schema id fetched once per instance (404 included), with
        # the basic auth; the secret in no log line
        js_id = max(self.reg.schemas)
        self.assertEqual(self.reg.schemas[js_id][1], "JSON")
        self.assertEqual(self.reg.gets,
                         {ids[0]: 2, ids[1]: 2, 9999: 2, js_id: 1})
        for k in (ka, kj):
            self.assertFalse([l for l in k.lines() if PASSWORD in l])
        self.assertEqual(len([l for l in ka.lines()
                              if "dead-lettering" in l]), 3)

    def test_registry_down(self):
        n = 3000
        hold = 30.0
        emu = self.start_emulator()
        setup_tables(emu)
        prod = AvroProducer(self.bs, self.reg.url)
        prod.send(0, n, 1, self.parts)
        prod.value(0, 2)  # v2 registered now: the producer caches its id
        self.native_config(self.cfg, emu, "g-avro-down", self.journal)
        k = harness.kadx("run", "-c", self.cfg, name="kadx json")
        self.wait_rows(emu, "JsonT", n, k)
        self.assertEqual(tf.readyz(k)[0], 200)
        self.reg.down = True
        t0 = time.monotonic()
        prod.send(n, n, 2, self.parts)  # a schema id kadx has not seen

        def red():
            st, body = tf.readyz(k)
            return st == 503 and "schema registry" in json.dumps(body)
        wait_until(red, timeout=30, what="/readyz red on the registry")
        line = k.wait_for("sending paused", timeout=10,
                          what="the paused line")
        self.assertIn("503", line)
        self.assertEqual(emu.count("JsonT"), n)  # nothing of v2 went out
        # the outage lasts `hold` seconds: the stream waits, nothing lost
        remaining = hold - (time.monotonic() - t0)
        if remaining > 0:
            threading.Event().wait(remaining)
        self.assertEqual(tf.readyz(k)[0], 503)
        self.reg.down = False
        self.wait_rows(emu, "JsonT", 2 * n, k)
        wait_until(lambda: tf.readyz(k)[0] == 200, timeout=30,
                   what="/readyz green again")
        k.wait_for("sending resumed", timeout=10, what="the resumed line")
        self.assertEqual(k.stop(), 0, k.tail())
        self.audit_json(emu, 2 * n)
        # a restart with the registry down: the schemas come from the
        # journal (both ids), nothing is asked of the registry
        self.reg.down = True
        gets = dict(self.reg.gets)
        prod.send(2 * n, 500, 1, self.parts)
        prod.send(2 * n + 500, 500, 2, self.parts)
        k = harness.kadx("run", "-c", self.cfg, name="kadx json again")
        self.wait_rows(emu, "JsonT", 2 * n + 1000, k)
        self.assertEqual(tf.readyz(k)[0], 200)
        self.assertEqual(len([l for l in k.lines()
                              if "read from the journal" in l]), 2)
        self.assertEqual(self.reg.gets, gets)
        self.assertEqual(k.stop(), 0, k.tail())
        self.audit_json(emu, 2 * n + 1000)
        rows = emu.query("JsonT | summarize b=countif(isnotnull(Bonus))")
        self.assertEqual(rows[0]["b"], n + 500)


    def test_registry_tls_ca_file(self):
        """An https registry with a self-signed certificate: without
        schema_registry.ca_file kadx cannot verify it (/readyz red, nothing
        sent, nothing lost); with it, the same journal delivers."""
        import io
        import struct

        import fastavro
        from test_security import make_cert
        cert, key = make_cert(self.tmp)
        reg = registry.Registry(USER, PASSWORD, tls=(cert, key)).start()
        self.addCleanup(reg.stop)
        sid = reg.register("gameplay-value", json.dumps(V1))
        ps = fastavro.parse_schema(V1)
        prod = AvroProducer(self.bs, reg.url)  # raw sends only
        for i in range(300):
            b = io.BytesIO()
            fastavro.schemaless_writer(b, ps, record(i, False))
            prod.send_raw(b"\x00" + struct.pack(">i", sid) + b.getvalue(),
                          self.parts[i % len(self.parts)])
        prod.flush()
        emu = self.start_emulator()
        setup_tables(emu)
        self.native_config(self.cfg, emu, "g-avro-tls", self.journal,
                           reg_url=reg.url)
        k = harness.kadx("run", "-c", self.cfg, name="kadx no ca")

        def red():
            st, body = tf.readyz(k)
            return st == 503 and "schema registry unreachable" in \
                json.dumps(body)
        wait_until(red, timeout=30, what="/readyz red: TLS not verified")
        self.assertEqual(emu.count("JsonT"), 0)
        self.assertEqual(k.stop(), 0, k.tail())
        with open(self.cfg) as f:
            cfg = json.load(f)
        cfg["schema_registry"]["ca_file"] = cert
        with open(self.cfg, "w") as f:
            json.dump(cfg, f)
        k = harness.kadx("run", "-c", self.cfg, name="kadx with ca")
        self.wait_rows(emu, "JsonT", 300, k)
        self.assertEqual(k.stop(), 0, k.tail())
        self.audit_json(emu, 300)
        self.assertEqual(reg.gets[sid], 1)


if __name__ == "__main__":
    harness.main()
