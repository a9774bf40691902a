"""Offset continuity (issue 19, hole 2): partitions that go backwards, and
retention gaps, between the Kafka mock cluster and the ADX emulator.

- A "rebuilt cluster": kadx delivers the first life of a partition, then
  runs against a fresh mock cluster with the same topic, group and journal
  holding fewer events. Before the fix every new event was at or below the
  journal's mark and dropped as a duplicate, with /readyz green. Now the
  partition is paused with an error, /readyz is red and nothing of the new
  life is delivered or dropped until the operator starts a new epoch
  (POST /partitions/epoch); then every new event is delivered once, the old
  life's rows stay, and a restart keeps the epoch. OffsetsCase runs it on
  the mock (a fresh cluster), OffsetsRealBroker on a real Apache Kafka 4.x
  node (tests/kafka) whose topic is deleted and created again.
- A retention gap: the mock keeps ~5 MiB per partition; events produced
  while kadx is stopped push the log start past kadx's position. The
  skipped range is counted and reported (/status, /metrics, log) and the
  rest is delivered once.

The audit goes by (KafkaPartition, KafkaOffset) metadata columns, and the
two lives of a partition are told apart by PlayerID (the new life's values
have PlayerID >= 100000).
"""
import http.client
import json
import os
import re

import sys

import adx
import harness
import kafka
from harness import wait_until
from test_forwarder import ForwarderBase, setup_table, write_config

sys.path.insert(0, os.path.join(harness.SRC, "tests", "kafka"))
import kafka_cluster  # noqa: E402

TOPIC = "gameplay"
NEW = 100000  # PlayerID offset of the second life's events


def ev(i, pad=0):
    return ('{"playerId":%d,"gameId":0,"win":1,"stake":1,'
            '"eventTime":"2026-11-24T12:00:00.000Z"%s}'
            % (i, ',"pad":"%s"' % ("x" * pad) if pad else ""))


class Admin:
    """The admin port kadx logged; GET/POST with JSON."""

    def __init__(self, proc):
        line = proc.wait_for("admin: listening on", timeout=30,
                             what="the admin listening line")
        self.port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))

    def call(self, method, path, body=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            data = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=data,
                         headers={"Content-Type": "application/json"})
            r = conn.getresponse()
            raw = r.read()
            try:
                return r.status, json.loads(raw or b"null")
            except ValueError:
                return r.status, raw.decode()
        finally:
            conn.close()

    def part(self, partition):
        """/status of the current (unsealed) epoch of TOPIC[partition]."""
        _, st = self.call("GET", "/status")
        for r in st["routes"]:
            for p in r["partitions"]:
                if p["partition"] == partition and not p["sealed"]:
                    return p
        return None


def metric(text, name):
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def rows(emu, where):
    r = emu.query(
        "GamePlay | where %s | summarize c=count(), "
        "d=dcount(KafkaOffset), lo=min(KafkaOffset), "
        "hi=max(KafkaOffset)" % where)
    return r[0] if r else {"c": 0}


def rewind_scenario(self, recreate):
    """self: a test with emu, bs, config(), start_kadx(), wait_count().
    300 events delivered; recreate() leaves the same topic name with an
    empty log (same group, same journal); 100 new events: paused, red,
    nothing delivered nor dropped; bad answers refused; a new epoch from
    the log start; then every new event once, beside the old ones, and the
    epoch kept over a restart."""
    n_old, n_new, n_more = 300, 100, 50
    self.config("g-rewind")
    kafka.produce(self.bs, TOPIC, 0, [ev(i) for i in range(n_old)])
    k = self.start_kadx()
    self.wait_count(self.emu, n_old, 60, k)
    self.assertEqual(k.stop(), 0)
    recreate()
    kafka.produce(self.bs, TOPIC, 0,
                  [ev(NEW + i) for i in range(n_new)])
    self.config("g-rewind")
    k = self.start_kadx("kadx run (rebuilt)")
    a = Admin(k)
    line = k.wait_for("went backwards", timeout=60,
                      what="the backwards error")
    self.assertIn("gameplay[0]", line)
    self.assertIn("journal mark 299", line)
    self.assertIn("log starts at 0 and ends at %d" % n_new, line)
    st, body = a.call("GET", "/readyz")
    self.assertEqual(st, 503, body)
    chk = [c for c in body["checks"] if c["name"] == "kafka_offsets"]
    self.assertEqual(len(chk), 1, body)
    self.assertFalse(chk[0]["ok"])
    self.assertIn("'gameplay'[0] went backwards", chk[0]["detail"])
    p = a.part(0)
    self.assertTrue(p["rewound"], p)
    self.assertEqual(p["rewind_offset"], n_old)
    self.assertEqual(p["log_end_offset"], n_new)
    self.assertEqual(p["epoch"], 0)
    _, m = a.call("GET", "/metrics")
    self.assertEqual(metric(m, "kadx_partitions_rewound"), 1)
    self.assertEqual(metric(m, "kadx_offset_rewinds_total"), 1)
    # nothing silent: no new row, nothing journaled as a duplicate
    _, s = a.call("GET", "/status")
    self.assertEqual(s["intake"]["duplicates"], 0, s["intake"])
    self.assertEqual(rows(self.emu, "PlayerID >= %d" % NEW)["c"], 0)

    # bad answers first: a wrong partition, an offset past the log
    st, body = a.call("POST", "/partitions/epoch",
                      {"topic": TOPIC, "partition": 7})
    self.assertEqual(st, 404, body)
    st, body = a.call("POST", "/partitions/epoch",
                      {"topic": TOPIC, "partition": 0, "from": 5000})
    self.assertEqual(st, 400, body)
    self.assertIn("outside the log", body["error"]["message"])
    # the operator's choice: a new epoch from the log start
    st, body = a.call("POST", "/partitions/epoch",
                      {"topic": TOPIC, "partition": 0})
    self.assertEqual(st, 202, body)
    self.assertEqual(body["from"], 0)
    self.wait_count(self.emu, n_old + n_new, 60, k)
    kafka.produce(self.bs, TOPIC, 0,
                  [ev(NEW + i) for i in range(n_new, n_new + n_more)])
    self.wait_count(self.emu, n_old + n_new + n_more, 60, k)
    wait_until(lambda: a.call("GET", "/readyz")[0] == 200, timeout=30,
               what="/readyz green again")
    p = a.part(0)
    self.assertEqual(p["epoch"], 1, p)
    self.assertEqual(p["epoch_start"], 0, p)
    self.assertFalse(p["rewound"], p)
    self.assertEqual(k.stop(), 0)

    # a restart against the same cluster: the epoch and its settled
    # offset hold, nothing is delivered again
    k = self.start_kadx("kadx run (restart)")
    a = Admin(k)
    k.wait_for("assigned gameplay[0]", timeout=60, what="assignment")
    kafka.produce(self.bs, TOPIC, 0, [ev(NEW + n_new + n_more)])
    self.wait_count(self.emu, n_old + n_new + n_more + 1, 60, k)
    self.assertEqual(a.part(0)["epoch"], 1)
    self.assertEqual(k.stop(), 0)

    old = rows(self.emu, "PlayerID < %d" % NEW)
    self.assertEqual((old["c"], old["d"], old["lo"], old["hi"]),
                     (n_old, n_old, 0, n_old - 1), old)
    new = rows(self.emu, "PlayerID >= %d" % NEW)
    total = n_new + n_more + 1
    self.assertEqual((new["c"], new["d"], new["lo"], new["hi"]),
                     (total, total, 0, total - 1), new)
    self.assertEqual(self.emu.count("GamePlay"), n_old + total)


class OffsetsCase(ForwarderBase):
    """On librdkafka's mock cluster, whatever KADX_KAFKA says: the mock is
    the fault here (a cluster rebuilt in a moment; a log trimmed at ~5 MiB,
    which a real broker's retention does only on its own schedule)."""
    partitions = 1

    def setUp(self):
        harness.TmpDirCase.setUp(self)
        self.mock = kafka.MockCluster(topics=[(TOPIC, 1)])
        self.addCleanup(self.mock.stop)
        self.bs = self.mock.bootstrap
        self.parts = [0]
        self.journal = os.path.join(self.tmp, "journal.db")
        self.cfg = os.path.join(self.tmp, "kadx.json")

    def config(self, group, **kw):
        write_config(self.cfg, self.bs, group, self.journal, self.emu.url,
                     admin=True, **kw)

    def rows(self, where):
        return rows(self.emu, where)

    def test_recreated_topic_paused_until_new_epoch(self):
        self.emu = self.start_emulator()
        setup_table(self.emu)
        rewind_scenario(self, self.rebuild_mock)

    def rebuild_mock(self):
        """The cluster is rebuilt: a fresh mock, the same topic name (the
        old group offsets are gone with it)."""
        self.mock.stop()
        self.mock = kafka.MockCluster(topics=[(TOPIC, 1)])
        self.addCleanup(self.mock.stop)
        self.bs = self.mock.bootstrap

    def test_retention_gap_counted_rest_delivered(self):
        n_first = 100
        self.emu = self.start_emulator()
        setup_table(self.emu)
        self.config("g-gap", forwarder={"batch_max_rows": 500})
        kafka.produce(self.bs, TOPIC, 0, [ev(i) for i in range(n_first)])
        k = self.start_kadx()
        self.wait_count(self.emu, n_first, 60, k)
        self.assertEqual(k.stop(), 0)
        # ~12 MiB while kadx is away: the mock keeps ~5 MiB, so the log
        # start moves past kadx's position (100)
        n_big = 12000
        kafka.produce(self.bs, TOPIC, 0,
                      [ev(i, pad=1000) for i in range(n_first,
                                                      n_first + n_big)])
        end = n_first + n_big
        k = self.start_kadx("kadx run (after retention)")
        a = Admin(k)
        line = k.wait_for("deleted by retention", timeout=60,
                          what="the gap line")
        m = re.search(r"offsets 100\.\.(\d+) were deleted by retention.* "
                      r"(\d+) events skipped, consuming from (\d+)", line)
        self.assertIsNotNone(m, line)
        lo = int(m.group(1)) + 1
        self.assertGreater(lo, n_first)
        self.assertEqual(int(m.group(2)), lo - n_first)
        self.assertEqual(int(m.group(3)), lo)
        self.wait_count(self.emu, n_first + end - lo, 120, k)
        p = a.part(0)
        self.assertEqual((p["gaps"], p["gap_events"], p["gap_first_offset"],
                          p["gap_last_offset"]),
                         (1, lo - n_first, n_first, lo - 1), p)
        _, s = a.call("GET", "/status")
        self.assertEqual(s["intake"]["offset_gaps"], 1)
        self.assertEqual(s["intake"]["offset_gap_events"], lo - n_first)
        _, mt = a.call("GET", "/metrics")
        self.assertEqual(metric(mt, "kadx_offset_gaps_total"), 1)
        self.assertEqual(metric(mt, "kadx_offset_gap_events_total"),
                         lo - n_first)
        self.assertEqual(a.call("GET", "/readyz")[0], 200)
        self.assertEqual(k.stop(), 0)
        # delivered once: 0..99 and lo..end-1, nothing of the gap
        r = self.rows("true")
        self.assertEqual(r["c"], r["d"])
        self.assertEqual(r["c"], n_first + end - lo)
        self.assertEqual(self.rows("KafkaOffset >= %d and KafkaOffset < %d"
                                   % (n_first, lo))["c"], 0)


class OffsetsRealBroker(harness.TmpDirCase):
    """The same rewind on a real Apache Kafka 4.x node (tests/kafka): the
    topic is deleted and created again (Kafka drops the group's offsets of
    a deleted topic), kadx keeps its group and journal."""

    def setUp(self):
        super().setUp()
        self.cluster = kafka_cluster.KafkaCluster(nodes=1).start()
        self.addCleanup(self.cluster.stop)
        self.cluster.create_topic(TOPIC, partitions=1)
        self.bs = self.cluster.bootstrap
        self.journal = os.path.join(self.tmp, "journal.db")
        self.cfg = os.path.join(self.tmp, "kadx.json")
        self.emu = adx.Emulator().start()
        self.addCleanup(self.emu.stop)
        setup_table(self.emu)

    config = OffsetsCase.config
    start_kadx = ForwarderBase.start_kadx
    wait_count = ForwarderBase.wait_count

    def recreate_topic(self):
        self.cluster.delete_topic(TOPIC)
        self.cluster.create_topic(TOPIC, partitions=1)

    def test_deleted_and_recreated_topic(self):
        rewind_scenario(self, self.recreate_topic)


if __name__ == "__main__":
    harness.main()
