"""Kafka intake acceptance (issue 4): `kadx run` against the mock cluster.

INV-1 (durable before commit), INV-2 (idempotent intake), INV-3 (settled
before sent; unsettled events of a lost partition are dropped). kcat is the
producer; committed offsets are read over the Kafka protocol (kafka.py);
the journal is read with sqlite3, the settled watermarks from the
"<journal>.settled" file the intake keeps beside it.

Every kadx here uses session.timeout.ms=6000: the mock cluster makes every
rebalance after the first wait session.timeout.ms - 1 s.
"""
import json
import os
import random
import signal
import sqlite3
import threading
import time

import harness
import kafka
from harness import wait_until

TOPIC = "t"


def write_config(path, bootstrap, group, journal, extra_kafka=None,
                 intake=None, journal_max_bytes=None):
    k = {"bootstrap.servers": bootstrap, "group.id": group,
         "session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}
    k.update(extra_kafka or {})
    cfg = {
        "kafka": k,
        # The forwarder is not what these tests look at; nothing listens.
        "adx": {"ingest_url": "http://127.0.0.1:9", "auth": {"method": "none"}},
        "routes": [{"topic": TOPIC, "database": "db", "table": "T",
                    "format": "json"}],
        "journal": {"path": journal},
        "admin": {"listen": "off"},
    }
    if intake:
        cfg["intake"] = intake
    if journal_max_bytes:
        cfg["journal"]["max_bytes"] = journal_max_bytes
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def _varint(buf, pos):
    v = shift = 0
    while True:
        b = buf[pos]
        pos += 1
        v |= (b & 0x7f) << shift
        if b < 0x80:
            return v, pos
        shift += 7


def journal_records(path):
    """Every event stored in the journal (any state), decoded from its
    chunks (storage/journal.c, storage/chunk.h): dicts with topic,
    partition, offset, timestamp, key, value, headers (bytes or None)."""
    if not os.path.exists(path):
        return []
    # Not mode=ro: a read-only connection may not map the WAL index and
    # then reads the database file without the WAL (stale). SELECT only.
    db = sqlite3.connect(path, timeout=10)
    try:
        rows = db.execute(
            "SELECT p.topic, p.partition, c.first_offset, d.data "
            "FROM chunks c JOIN partitions p ON p.id = c.part_id "
            "JOIN chunk_data d ON d.id = c.id").fetchall()
    finally:
        db.close()
    out = []
    for topic, part, first, data in rows:
        pos, off, ts = 0, first, 0
        while pos < len(data):
            d, pos = _varint(data, pos)
            zz, pos = _varint(data, pos)
            klen, pos = _varint(data, pos)
            vlen, pos = _varint(data, pos)
            hlen, pos = _varint(data, pos)
            off += d
            ts += (zz >> 1) ^ -(zz & 1)
            key = None
            if klen:
                key = data[pos:pos + klen - 1]
                pos += klen - 1
            value = data[pos:pos + vlen]
            pos += vlen
            headers = data[pos:pos + hlen]
            pos += hlen
            out.append({"topic": topic, "partition": part, "offset": off,
                        "timestamp": ts, "key": key, "value": value,
                        "headers": headers})
    return out


def journal_events(path):
    """[(topic, partition, offset)] of every event in the journal."""
    return [(r["topic"], r["partition"], r["offset"])
            for r in journal_records(path)]


def decode_headers(h):
    """kadx's header format (gateway/INTAKE.md) -> [(name, value|None)]."""
    out, pos = [], 0
    while pos < len(h):
        n = int.from_bytes(h[pos:pos + 2], "big")
        name = h[pos + 2:pos + 2 + n].decode()
        pos += 2 + n
        vl = int.from_bytes(h[pos:pos + 4], "big")
        pos += 4
        if vl == 0xffffffff:
            out.append((name, None))
        else:
            out.append((name, h[pos:pos + vl]))
            pos += vl
    return out


def read_settled(journal):
    """{(topic, partition): highest settled offset} from <journal>.settled."""
    res = {}
    try:
        with open(journal + ".settled") as f:
            for line in f:
                t, p, o = line.rstrip("\n").split("\t")
                res[(t, int(p))] = int(o)
    except FileNotFoundError:
        pass
    return res


def highs(events):
    h = {}
    for t, p, o in events:
        h[(t, p)] = max(h.get((t, p), -1), o)
    return h


class Producer(threading.Thread):
    """Produces `per_part` messages to each partition in chunks with kcat,
    in the background, values {"p":P,"i":I} (I = the message's offset when
    the topic was empty)."""

    def __init__(self, bootstrap, partitions, per_part, chunk=2000,
                 start=0):
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.partitions = partitions
        self.per_part = per_part
        self.chunk = chunk
        self.start_at = start
        self.error = None
        self.done = threading.Event()

    def run(self):
        try:
            i = self.start_at
            end = self.start_at + self.per_part
            while i < end:
                n = min(self.chunk, end - i)
                for p in self.partitions:
                    kafka.produce(self.bootstrap, TOPIC, p,
                                  ('{"p":%d,"i":%d}' % (p, j)
                                   for j in range(i, i + n)))
                i += n
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            self.done.set()

    def finish(self, timeout=60):
        if not self.done.wait(timeout):
            raise AssertionError("producer did not finish")
        if self.error:
            raise self.error


class IntakeCase(harness.TmpDirCase):
    partitions = 4
    mock = False  # True: librdkafka's mock cluster, for its fault commands

    def setUp(self):
        super().setUp()
        if self.mock:
            self.kafka = kafka.MockCluster(topics=[(TOPIC, self.partitions)])
        else:  # the real broker (tests/kafka), one per test process
            self.kafka = kafka.cluster(topics=[(TOPIC, self.partitions)])
        self.addCleanup(self.kafka.stop)
        self.bs = self.kafka.bootstrap
        self.parts = list(range(self.partitions))

    def start_kadx(self, cfg, name="kadx run"):
        p = harness.kadx("run", "-c", cfg, name=name)
        p.wait_for("kadx: running", timeout=30, what="kadx running")
        return p

    def committed(self, group):
        return kafka.committed_offsets(self.bs, group, TOPIC, self.parts)

    def wait_committed(self, group, want, timeout=45):
        def ok():
            c = self.committed(group)
            return c if all(c.get(p, -1) >= want[p] for p in self.parts) \
                else None
        return wait_until(ok, timeout=timeout, interval=0.2,
                          what="committed offsets %r (group %s)" % (
                              want, group))

    def assert_exactly_once(self, events, per_part):
        seen = {}
        for t, p, o in events:
            self.assertEqual(t, TOPIC)
            seen[(p, o)] = seen.get((p, o), 0) + 1
        dups = [k for k, n in seen.items() if n > 1]
        self.assertEqual(dups, [], "events journaled twice: %r" % dups[:10])
        for p in self.parts:
            missing = [o for o in range(per_part) if (p, o) not in seen]
            self.assertEqual(missing, [], "partition %d misses %d events, "
                             "first %r" % (p, len(missing), missing[:10]))
        self.assertEqual(len(seen), per_part * len(self.parts))

    def assert_committed_not_ahead(self, group, journal):
        """INV-1: no committed offset is ahead of the journal."""
        # committed first: the journal only grows after it (drops remove
        # only events above what is committed)
        c = self.committed(group)
        h = highs(journal_events(journal))
        for p in self.parts:
            if c[p] >= 0:
                self.assertLessEqual(
                    c[p], h.get((TOPIC, p), -1) + 1,
                    "partition %d committed %d, journal high %d" % (
                        p, c[p], h.get((TOPIC, p), -1)))

    def watch_inv1(self, group, journal, seconds):
        """For `seconds`, checks again and again that no committed offset
        is ahead of the journal (INV-1) while kadx runs: committed offsets
        first, then the journal (which only grows, except for drops of
        events above what is committed)."""
        end = time.monotonic() + seconds
        checks = 0
        while True:
            self.assert_committed_not_ahead(group, journal)
            checks += 1
            if time.monotonic() >= end:
                return checks


class TestIntake(IntakeCase):
    def test_100k_over_4_partitions_journaled_once(self):
        per = 25000
        for p in self.parts:
            kafka.produce(self.bs, TOPIC, p,
                          ('{"p":%d,"i":%d}' % (p, i) for i in range(per)))
        self.assertEqual(kafka.end_offsets(self.bs, TOPIC, self.parts),
                         {p: per for p in self.parts})
        j = os.path.join(self.tmp, "j.db")
        cfg = write_config(os.path.join(self.tmp, "k.json"), self.bs, "g100k",
                           j)
        k = self.start_kadx(cfg)
        t0 = time.monotonic()
        self.wait_committed("g100k", {p: per for p in self.parts})
        took = time.monotonic() - t0
        self.assertEqual(k.stop(), 0, k.tail())
        k.wait_for("kadx: stopped", timeout=1)
        ev = journal_events(j)
        self.assert_exactly_once(ev, per)
        h = highs(ev)
        c = self.committed("g100k")
        for p in self.parts:  # committed = journal high + 1
            self.assertEqual(c[p], h[(TOPIC, p)] + 1)
        s = read_settled(j)
        for p in self.parts:
            self.assertEqual(s[(TOPIC, p)], per - 1)
        print("100k: committed within %.1f s of start (incl. ~3 s group "
              "join)" % took)

    def test_keys_headers_timestamps_tombstones(self):
        kafka.produce(self.bs, TOPIC, 0, ["k1:v1"], key_delim=":",
                      headers=[("h1", "a"), ("h2", "b")])
        kafka.produce(self.bs, TOPIC, 0, ["k2:"], key_delim=":",
                      null_empty=True)  # a tombstone
        kafka.produce(self.bs, TOPIC, 0, ["v3"])
        before = int(time.time() * 1000) - 60000
        j = os.path.join(self.tmp, "j.db")
        cfg = write_config(os.path.join(self.tmp, "k.json"), self.bs, "gf", j)
        k = self.start_kadx(cfg)
        # the tombstone's offset is committed too, once what precedes it is
        self.wait_committed("gf", {0: 3, 1: -1, 2: -1, 3: -1})
        self.assertEqual(k.stop(), 0, k.tail())
        recs = sorted(journal_records(j), key=lambda r: r["offset"])
        self.assertEqual([r["offset"] for r in recs], [0, 2])
        self.assertEqual(recs[0]["key"], b"k1")
        self.assertEqual(recs[0]["value"], b"v1")
        self.assertEqual(decode_headers(recs[0]["headers"]),
                         [("h1", b"a"), ("h2", b"b")])
        self.assertIsNone(recs[1]["key"])
        self.assertEqual(recs[1]["value"], b"v3")
        self.assertEqual(recs[1]["headers"], b"")
        for r in recs:
            self.assertGreater(r["timestamp"], before)
        self.assertEqual(read_settled(j)[(TOPIC, 0)], 2)

    def test_sigkill_at_random_moments(self):
        kills = 20 if harness.FULL else 3
        backlog = 20000
        per = backlog + (4000 * kills if harness.FULL else 12000)
        j = os.path.join(self.tmp, "j.db")
        # A short session: each restart waits for the killed member's
        # session to expire before the group rebalances.
        cfg = write_config(os.path.join(self.tmp, "k.json"), self.bs, "gkill",
                           j, {"session.timeout.ms": "2500",
                               "heartbeat.interval.ms": "300"})
        for p in self.parts:
            kafka.produce(self.bs, TOPIC, p, ('{"p":%d,"i":%d}' % (p, i)
                                              for i in range(backlog)))
        prod = Producer(self.bs, self.parts, per - backlog, chunk=400,
                        start=backlog)
        prod.start()
        rnd = random.Random(os.environ.get("KADX_SEED", "4"))
        for n in range(kills):
            k = self.start_kadx(cfg, name="kadx run #%d" % n)
            if n % 4 != 3:  # else: kill during the group join
                k.wait_for("intake: assigned", timeout=30,
                           what="an assignment")
            # A random moment while consuming; INV-1 is checked all along.
            self.watch_inv1("gkill", j, rnd.uniform(0.0, 1.0))
            k.kill()
            self.assert_committed_not_ahead("gkill", j)
        prod.finish(timeout=120)
        k = self.start_kadx(cfg, name="kadx run final")
        self.wait_committed("gkill", {p: per for p in self.parts}, timeout=60)
        self.assertEqual(k.stop(), 0, k.tail())
        self.assert_exactly_once(journal_events(j), per)
        self.assert_committed_not_ahead("gkill", j)


class TestJournalFull(IntakeCase):
    partitions = 8

    def test_journal_full_pauses_then_resumes_without_gaps(self):
        """INV-7: a full journal pauses the partitions (the member stays in
        the group); nothing is skipped when room comes back."""
        per = 3000  # 8 partitions x 3 MiB: more than the 16 MiB journal
        pad = "x" * 1000
        for p in self.parts:
            kafka.produce(self.bs, TOPIC, p, ('{"p":%d,"i":%d,"pad":"%s"}' % (
                p, i, pad) for i in range(per)))
        j = os.path.join(self.tmp, "j.db")
        mib = 1024 * 1024
        cfg = write_config(os.path.join(self.tmp, "k.json"), self.bs, "gfull",
                           j, journal_max_bytes=16 * mib,
                           intake={"high_water_bytes": 16 * mib,
                                   "low_water_bytes": 8 * mib})
        k = self.start_kadx(cfg)
        k.wait_for("pausing consumption", timeout=30, what="the pause")
        k.wait_for("intake: journal append of", timeout=10,
                   what="the -ENOSPC append failure")
        # The member stays in the group past a session timeout (6 s).
        self.watch_inv1("gfull", j, 7.0)
        self.assertTrue(k.alive(), k.tail())
        self.assertFalse([l for l in k.lines() if "intake: revoked" in l or
                          "intake: lost" in l], k.tail())
        c = self.committed("gfull")
        self.assertLess(sum(c.values()), per * len(self.parts))
        t0 = time.monotonic()
        self.assertEqual(k.stop(), 0, k.tail())
        self.assertLess(time.monotonic() - t0, 10)
        # Room again: everything arrives, once, without a gap.
        write_config(cfg, self.bs, "gfull", j, journal_max_bytes=256 * mib)
        k = self.start_kadx(cfg, name="kadx run (room)")
        self.wait_committed("gfull", {p: per for p in self.parts})
        self.assertEqual(k.stop(), 0, k.tail())
        self.assert_exactly_once(journal_events(j), per)


class TestCrashWindow(IntakeCase):
    def test_settled_file_behind_after_many_owner_changes(self):
        """The crash window between Kafka acknowledging A's commit and A
        saving it as settled (the settled file is left behind), then the
        partitions pass through three other instances before A starts
        again: A must still know, from the chain of committers in the
        commit metadata, that the events up to its commit were its own to
        deliver, and keep them (dropping them would lose them: the next
        owners started after A's commit)."""
        group, per = "gwin", 300
        paths = {}
        for name in ("a", "b", "c", "d"):
            j = os.path.join(self.tmp, name + ".db")
            paths[name] = (write_config(os.path.join(self.tmp, name + ".json"),
                                        self.bs, group, j), j)
        done = 0
        for name in ("a", "b", "c", "d"):
            k = self.start_kadx(paths[name][0], name="kadx " + name)
            k.wait_for("intake: assigned", timeout=30, what="an assignment")
            Producer(self.bs, self.parts, per, chunk=per, start=done).run()
            done += per
            self.wait_committed(group, {p: done for p in self.parts})
            self.assertEqual(k.stop(), 0, k.tail())
            if name == "a":
                # the crash window: acked up to `per`, file saved earlier
                with open(paths["a"][1] + ".settled", "w") as f:
                    for p in self.parts:
                        f.write("%s\t%d\t%d\n" % (TOPIC, p, per // 2 - 1))
        k = self.start_kadx(paths["a"][0], name="kadx a again")
        k.wait_for("intake: assigned", timeout=30, what="A's assignment")
        self.assertEqual(k.stop(), 0, k.tail())
        self.assertFalse([l for l in k.lines() if "dropped" in l], k.tail())
        settled = read_settled(paths["a"][1])
        for p in self.parts:
            self.assertEqual(settled[(TOPIC, p)], per - 1)
        union = []
        for name in ("a", "b", "c", "d"):
            j = paths[name][1]
            s = read_settled(j)
            union += [e for e in journal_events(j)
                      if e[2] <= s.get((e[0], e[1]), -1)]
        self.assert_exactly_once(union, done)


class TestTwoInstances(IntakeCase):
    def two_instances(self, strategy):
        per = 12000
        group = "g2-" + strategy
        extra = {"partition.assignment.strategy": strategy}
        ja = os.path.join(self.tmp, "a.db")
        jb = os.path.join(self.tmp, "b.db")
        ca = write_config(os.path.join(self.tmp, "a.json"), self.bs, group, ja,
                          extra)
        cb = write_config(os.path.join(self.tmp, "b.json"), self.bs, group, jb,
                          extra)
        a = self.start_kadx(ca, name="kadx A")
        a.wait_for("intake: assigned", timeout=30, what="A's assignment")
        b = self.start_kadx(cb, name="kadx B")
        # The group splits the partitions between A and B.
        b.wait_for("intake: assigned", timeout=30, what="B's assignment")
        a.wait_for("intake: revoked", timeout=30,
                   what="A giving partitions to B")
        prod = Producer(self.bs, self.parts, per, chunk=200)
        prod.start()
        wait_until(lambda: len(journal_events(jb)) > 0 and
                   len(journal_events(ja)) > 0, timeout=30,
                   what="both journals filling")
        self.assertFalse(prod.done.is_set(), "producer too fast for the test")
        a.kill()  # SIGKILL mid-stream: B takes A's partitions over
        prod.finish(timeout=90)
        self.wait_committed(group, {p: per for p in self.parts}, timeout=45)
        self.assertTrue(any("intake: assigned" in l and "start" in l
                            for l in b.lines()[-20:]))
        # A comes back: it learns what it settled before the kill and drops
        # what it never settled (INV-3).
        a = self.start_kadx(ca, name="kadx A again")
        a.wait_for("intake: assigned", timeout=30, what="A's new assignment")
        self.assertEqual(a.stop(), 0, a.tail())
        self.assertEqual(b.stop(), 0, b.tail())
        union = []
        for jpath in (ja, jb):
            s = read_settled(jpath)
            for t, p, o in journal_events(jpath):
                if o <= s.get((t, p), -1):
                    union.append((t, p, o))
        self.assert_exactly_once(union, per)
        # and nothing unsettled is left behind in either journal
        total = len(journal_events(ja)) + len(journal_events(jb))
        self.assertEqual(total, per * len(self.parts))

    def test_kill_one_other_takes_over_eager(self):
        self.two_instances("range")

    def test_kill_one_other_takes_over_cooperative(self):
        self.two_instances("cooperative-sticky")


class TestBrokerDown(IntakeCase):
    mock = True  # broker-down/up: a fault only the mock injects on cue

    def test_broker_down_5s_loses_nothing(self):
        per = 10000
        j = os.path.join(self.tmp, "j.db")
        cfg = write_config(os.path.join(self.tmp, "k.json"), self.bs, "gdown",
                           j)
        k = self.start_kadx(cfg)
        k.wait_for("assigned", timeout=30, what="an assignment")
        prod = Producer(self.bs, self.parts, per, chunk=500)
        prod.start()
        wait_until(lambda: len(journal_events(j)) > 0, timeout=30,
                   what="events journaled")
        # The leader of partition 0: kadx fetches from it, so it notices.
        broker = kafka.leader(self.bs, TOPIC, 0)
        self.kafka.command("broker-down %d" % broker)
        down_at = time.monotonic()
        k.wait_for(lambda l: "intake: kafka:" in l, timeout=20,
                   what="kadx reporting the broker outage")
        left = 5.0 - (time.monotonic() - down_at)
        if left > 0:
            time.sleep(left)  # the outage's length is the test's input
        self.kafka.command("broker-up %d" % broker)
        self.assertTrue(k.alive(), k.tail())
        prod.finish(timeout=90)
        self.wait_committed("gdown", {p: per for p in self.parts}, timeout=45)
        self.assertEqual(k.stop(), 0, k.tail())
        self.assert_exactly_once(journal_events(j), per)


if __name__ == "__main__":
    harness.main()
