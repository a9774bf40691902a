"""The invariants on real Apache Kafka (issue 11): what librdkafka's mock
cluster cannot show.

Each class runs in its own process (meson's --split) with its own broker
(tests/kafka). Every event is audited in the ADX emulator by
(KafkaPartition, KafkaOffset) against what Kafka itself holds (read back
with kcat or the partitions' high watermarks): 0 lost, 0 duplicated.

- TestGroup: two, then three kadx instances in one group, members joining,
  leaving (SIGTERM) and killed (SIGKILL) while a producer writes.
- TestFailover: a three-node cluster (RF 3, min.insync.replicas=2), two kadx
  instances, the leader of partition 0 killed with kill -9 during the
  stream and restarted; default 40k events, KADX_FULL=1 the issue's 200k.
- TestCompacted: a compacted topic with tombstones, compacted before kadx
  reads it (offset gaps): exactly the surviving non-null records arrive,
  and the group's committed offsets reach the end.
- TestTransactions: a transactional producer (confluent-kafka) commits and
  aborts transactions; kadx's default isolation.level=read_committed
  delivers the committed records only, and the control records (one per
  transaction end) are never events.

kill -9 of kadx itself (durable-before-commit, settled-before-sent) runs on
the real broker in test_kill.py and test_intake.py (tests/kafka/README.md).
"""
import json
import os
import re
import subprocess
import threading
import time
import urllib.request

import harness
import kafka
import test_forwarder as tf
from harness import wait_until

TOPIC = tf.TOPIC


def set_kafka(cfg_path, **props):
    """Adds librdkafka properties to a config tf.write_config wrote."""
    with open(cfg_path) as f:
        cfg = json.load(f)
    cfg["kafka"].update(props)
    with open(cfg_path, "w") as f:
        json.dump(cfg, f)


def table_offsets(emu):
    """{(partition, offset): rows} of the GamePlay table."""
    rows = emu.query("GamePlay | project KafkaPartition, KafkaOffset")
    got = {}
    for r in rows:
        k = (r["KafkaPartition"], r["KafkaOffset"])
        got[k] = got.get(k, 0) + 1
    return got


def audit_against_kafka(tc, emu, bootstrap, parts):
    """Every offset below each partition's high watermark in the table
    exactly once (a topic without gaps), checked with summarize."""
    hw = kafka.end_offsets(bootstrap, TOPIC, parts)
    rows = emu.query(
        "GamePlay | summarize c=count(), d=dcount(KafkaOffset), "
        "lo=min(KafkaOffset), hi=max(KafkaOffset) by KafkaPartition")
    got = {r["KafkaPartition"]: r for r in rows}
    for p in parts:
        r = got.get(p, {"c": 0, "d": 0, "lo": 0, "hi": -1})
        tc.assertEqual(r["c"], r["d"], "partition %d: %d rows, %d distinct "
                       "offsets (duplicates)" % (p, r["c"], r["d"]))
        tc.assertEqual(r["c"], hw[p], "partition %d: %d rows, Kafka has %d"
                       % (p, r["c"], hw[p]))
        if hw[p]:
            tc.assertEqual((r["lo"], r["hi"]), (0, hw[p] - 1))
    return sum(hw.values())


class CKProducer(threading.Thread):
    """confluent-kafka's idempotent producer (its own librdkafka, not the
    one kadx links) writing tf.event values round-robin over the
    partitions until `total` are acknowledged; rate-limited by `chunk` per
    flush so that the stream lasts a while. With `hold_at`, it stops once
    that many are acknowledged, sets `held` and goes on only after
    `resume` is set: a fault injected in between is during the stream,
    however fast the machine."""

    def __init__(self, bootstrap, parts, total, chunk=2000, hold_at=None):
        super().__init__(daemon=True)
        from confluent_kafka import Producer
        self.p = Producer({"bootstrap.servers": bootstrap,
                           "enable.idempotence": True, "acks": "all",
                           "linger.ms": 5, "log_level": 3})
        self.parts = parts
        self.total = total
        self.chunk = chunk
        self.acked = 0
        self.failed = []
        self.done = threading.Event()
        self.hold_at = hold_at
        self.held = threading.Event()
        self.resume = threading.Event()
        self.error = None

    def _dr(self, err, msg):
        if err is not None:
            self.failed.append(str(err))
        else:
            self.acked += 1

    def run(self):
        try:
            i = 0
            while i < self.total:
                for _ in range(min(self.chunk, self.total - i)):
                    p = self.parts[i % len(self.parts)]
                    while True:
                        try:
                            self.p.produce(TOPIC, tf.event(p, i).encode(),
                                           partition=p, on_delivery=self._dr)
                            break
                        except BufferError:
                            self.p.poll(0.1)
                    i += 1
                    if i == self.hold_at:
                        break
                self.p.flush(120)
                if i == self.hold_at:
                    self.held.set()
                    self.resume.wait()
        except Exception as e:  # reported by finish()
            self.error = e
        finally:
            self.done.set()

    def finish(self, timeout=300):
        if not self.done.wait(timeout):
            raise AssertionError("producer did not finish")
        self.p.flush(60)
        if self.error:
            raise self.error
        if self.failed:
            raise AssertionError("%d produce failures, first %s" % (
                len(self.failed), self.failed[0]))
        return self.acked


class RealBase(tf.ForwarderBase):
    """ForwarderBase on the shared real broker, with helpers to run several
    kadx instances (each its own journal) in one group."""
    partitions = 6

    def instance(self, name, emu, group, **kafka_props):
        cfg = os.path.join(self.tmp, name + ".json")
        tf.write_config(cfg, self.bs, group, os.path.join(
            self.tmp, name + ".db"), emu.url, admin=True,
            forwarder={"batch_max_rows": 2000})
        if kafka_props:
            set_kafka(cfg, **kafka_props)
        return cfg

    def run_instance(self, cfg, name):
        p = harness.kadx("run", "-c", cfg, name=name)
        p.wait_for("running (group", timeout=30, what=name + " running")
        return p

    def assigned_count(self, proc):
        """Rebalance lines so far (cooperative: a member that keeps some
        partitions logs only what it gives up)."""
        return sum(1 for l in proc.lines()
                   if "intake: assigned" in l or "intake: revoked" in l)

    def wait_new_assignment(self, procs, before, what):
        wait_until(lambda: all(
            self.assigned_count(p) > before.get(p.name, 0)
            for p in procs if p.alive()), timeout=60, what=what)


class TestGroup(RealBase):

    def members(self, n, strategy):
        emu = self.start_emulator()
        tf.setup_table(emu)
        group = "g-real-%d" % n
        cfgs = [self.instance("k%d" % i, emu, group,
                              **{"partition.assignment.strategy": strategy})
                for i in range(n)]
        total = 60000
        prod = CKProducer(self.bs, self.parts, total, chunk=3000)
        procs = {}
        procs[0] = self.run_instance(cfgs[0], "kadx 0")
        procs[0].wait_for("intake: assigned", timeout=60, what="assignment")
        prod.start()
        # members join one by one while the stream runs
        for i in range(1, n):
            before = {p.name: self.assigned_count(p) for p in procs.values()}
            procs[i] = self.run_instance(cfgs[i], "kadx %d" % i)
            self.wait_new_assignment(procs.values(), before,
                                     "the group to take in kadx %d" % i)
        # one leaves cleanly, one is killed; both come back
        wait_until(lambda: emu.count(tf.TABLE) > 0, timeout=60,
                   what="first rows delivered")
        self.assertEqual(procs[1].stop(), 0, procs[1].tail())
        gone = n - 1 if n > 2 else 0
        procs[gone].kill()
        # the killed one restarts on its journal: what it had settled but
        # not sent goes out from there (INV-3), the rest from Kafka again
        procs[1] = self.run_instance(cfgs[1], "kadx 1 again")
        procs[gone] = self.run_instance(cfgs[gone], "kadx %d again" % gone)
        acked = prod.finish()
        self.assertEqual(acked, total)
        self.wait_count(emu, total, 180, procs[0])
        for p in procs.values():
            self.assertEqual(p.stop(), 0, p.tail())
        self.assertEqual(audit_against_kafka(self, emu, self.bs, self.parts),
                         total)

    def test_two_instances_join_leave_killed(self):
        self.members(2, "range")

    def test_three_instances_join_leave_killed(self):
        self.members(3, "cooperative-sticky")


class TestFailover(RealBase):
    partitions = 4

    def setUp(self):
        harness.TmpDirCase.setUp(self)
        # a cluster of its own: three nodes, RF 3, min.insync.replicas=2
        self.kafka = kafka.cluster(topics=[(TOPIC, self.partitions)],
                                   nodes=3, shared=False)
        self.addCleanup(self.kafka.stop)
        self.bs = self.kafka.bootstrap
        self.parts = list(range(self.partitions))

    def test_leader_killed_and_restarted_during_the_stream(self):
        kc = self.kafka.kc
        total = 200000 if harness.FULL else 40000
        emu = self.start_emulator()
        tf.setup_table(emu)
        group = "g-failover"
        cfgs = [self.instance("k%d" % i, emu, group) for i in range(2)]
        procs = [self.run_instance(c, "kadx %d" % i)
                 for i, c in enumerate(cfgs)]
        for p in procs:
            p.wait_for("intake: assigned", timeout=60, what="assignment")
        # the producer holds at half the stream until the leader is killed
        prod = CKProducer(self.bs, self.parts, total, chunk=5000,
                          hold_at=total // 2)
        prod.start()
        wait_until(lambda: emu.count(tf.TABLE) > 0, timeout=60,
                   what="first rows delivered")
        self.assertTrue(prod.held.wait(120), "the producer never reached "
                        "half the stream")
        victim = kafka.leader(self.bs, TOPIC, 0)
        kc.kill(victim)
        # the second half is produced while the partition changes leader
        prod.resume.set()
        # the partition moves to another replica of the ISR
        wait_until(lambda: kafka.leader(
            ",".join("127.0.0.1:%d" % n.ports["PLAINTEXT"]
                     for n in kc.nodes.values() if n.id != victim),
            TOPIC, 0) not in (victim, -1),
                   timeout=60, what="a new leader for partition 0")
        kc.start_node(victim)
        acked = prod.finish(timeout=600)
        self.assertEqual(acked, total)
        try:
            self.wait_count(emu, total, 900 if harness.FULL else 120,
                            procs[0])
        finally:
            for p in procs:
                print("--- %s: rebalances and errors" % p.name)
                print("\n".join(l for l in p.lines() if any(
                    w in l for w in ("assigned", "revoked", "lost", "drop",
                                     "commit", "error", "warn"))))
        for p in procs:
            self.assertEqual(p.stop(), 0, p.tail())
        self.assertEqual(audit_against_kafka(self, emu, self.bs, self.parts),
                         total)


def kcat_offsets(bootstrap, topic, partition):
    """[(offset, value is null)] of what the partition holds now."""
    out = subprocess.run(
        [kafka.KCAT, "-C", "-b", bootstrap, "-t", topic, "-p",
         str(partition), "-o", "beginning", "-e", "-q", "-f", "%o %S\\n"],
        capture_output=True, timeout=60)
    if out.returncode != 0:
        raise AssertionError("kcat -C: " + out.stderr.decode(errors="replace"))
    res = []
    for line in out.stdout.decode().splitlines():
        o, size = line.split()
        res.append((int(o), int(size) < 0))
    return res


class TestCompacted(RealBase):
    partitions = 1

    def setUp(self):
        harness.TmpDirCase.setUp(self)
        self.kafka = kafka.cluster()
        kafka.fresh_topic(self.kafka, TOPIC, 1, config={
            "cleanup.policy": "compact", "segment.ms": "200",
            "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0",
            "delete.retention.ms": "86400000"})
        self.bs = self.kafka.bootstrap
        self.parts = [0]

    def test_compacted_with_tombstones(self):
        # 200 keys; the first 100 updated; 50 of the rest deleted
        kafka.produce(self.bs, TOPIC, 0, ("k%d\t%s" % (i, tf.event(0, i))
                                          for i in range(200)),
                      key_delim="\t")
        kafka.produce(self.bs, TOPIC, 0, ("k%d\t%s" % (i, tf.event(0, i))
                                          for i in range(100)),
                      key_delim="\t")
        kafka.produce(self.bs, TOPIC, 0, ("k%d\t" % i
                                          for i in range(100, 150)),
                      key_delim="\t", null_empty=True)
        # the active segment is never cleaned: roll it with later records
        # (segment.ms=200) until the cleaner has removed the old values
        state = {"n": 0}

        def compacted():
            kafka.produce(self.bs, TOPIC, 0, ["roll%d\t%s" % (
                state["n"], tf.event(0, 1000 + state["n"]))], key_delim="\t")
            state["n"] += 1
            held = kcat_offsets(self.bs, TOPIC, 0)
            offs = {o for o, _ in held}
            return held if not (offs & set(range(150))) else None

        held = wait_until(compacted, timeout=90, interval=0.3,
                          what="the log cleaner to compact the topic")
        hw = kafka.end_offsets(self.bs, TOPIC, [0])[0]
        want = {o for o, null in held if not null}
        tombstones = [o for o, null in held if null]
        self.assertEqual(len(tombstones), 50, held)  # kept a day
        self.assertLess(len(held), hw)  # gaps in the offsets
        emu = self.start_emulator()
        tf.setup_table(emu)
        cfg = self.instance("k", emu, "g-compact")
        k = self.run_instance(cfg, "kadx")
        self.wait_count(emu, len(want), 120, k)
        # the committed offset passes the gaps and the trailing tombstones
        wait_until(lambda: kafka.committed_offsets(
            self.bs, "g-compact", TOPIC, [0])[0] == hw, timeout=60,
                   what="the committed offset at the end (%d)" % hw)
        self.assertEqual(k.stop(), 0, k.tail())
        got = table_offsets(emu)
        self.assertEqual(sorted(o for (_, o) in got), sorted(want))
        self.assertEqual(set(got.values()), {1})
        # the log did not change under the test
        self.assertEqual(kcat_offsets(self.bs, TOPIC, 0), held)


def metric_sum(proc, name):
    line = proc.wait_for("admin: listening on", timeout=30,
                         what="the admin listening line")
    port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=10) as r:
        text = r.read().decode()
    return sum(float(l.rsplit(" ", 1)[1]) for l in text.splitlines()
               if l.startswith(name + "{") or l.startswith(name + " "))


class TestTransactions(RealBase):
    partitions = 2

    def transactions(self, txns=20, per=50):
        """Alternately commits and aborts txns transactions of per records
        each, over both partitions; returns {(partition, offset)} of the
        committed records (from the delivery reports)."""
        from confluent_kafka import Producer
        p = Producer({"bootstrap.servers": self.bs,
                      "transactional.id": "kadx-e2e-tx", "log_level": 3})
        p.init_transactions(30)
        committed = set()
        aborted = set()
        for t in range(txns):
            got = []

            def dr(err, msg, got=got):
                self.assertIsNone(err)
                got.append((msg.partition(), msg.offset()))
            p.begin_transaction()
            for i in range(per):
                part = i % self.partitions
                p.produce(TOPIC, tf.event(part, t * per + i).encode(),
                          partition=part, on_delivery=dr)
            p.flush(30)
            if t % 2 == 0:
                p.commit_transaction(30)
                committed |= set(got)
            else:
                p.abort_transaction(30)
                aborted |= set(got)
        self.assertEqual(len(committed), txns // 2 * per)
        self.assertEqual(len(aborted), txns // 2 * per)
        return committed, aborted

    def test_aborted_transactions_never_reach_adx(self):
        committed, aborted = self.transactions()
        hw = kafka.end_offsets(self.bs, TOPIC, self.parts)
        # the log holds data and control records (one marker per partition
        # per transaction end)
        self.assertGreater(sum(hw.values()), len(committed) + len(aborted))
        emu = self.start_emulator()
        tf.setup_table(emu)
        cfg = self.instance("k", emu, "g-tx")  # isolation.level: default
        k = self.run_instance(cfg, "kadx")
        self.wait_count(emu, len(committed), 120, k)
        # committed past the last committed record of each partition (not
        # past a trailing abort marker: kadx commits what it consumed,
        # tests/kafka/README.md "Known differences")
        want = {p: max(o for (q, o) in committed if q == p) + 1
                for p in self.parts}
        wait_until(lambda: all(
            c >= want[p] for p, c in kafka.committed_offsets(
                self.bs, "g-tx", TOPIC, self.parts).items()), timeout=60,
                   what="committed offsets %r (end %r)" % (want, hw))
        self.assertEqual(metric_sum(k, "kadx_consumed_events_total"),
                         len(committed))
        self.assertEqual(k.stop(), 0, k.tail())
        got = table_offsets(emu)
        self.assertEqual(set(got), committed)
        self.assertEqual(set(got.values()), {1})
        self.assertEqual(set(got) & aborted, set())


if __name__ == "__main__":
    harness.main()
