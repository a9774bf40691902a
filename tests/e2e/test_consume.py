"""`kadx consume` (issue 8): a topic's messages as JSON lines.

Messages are written with kcat (independent of kadx) or with `kadx
produce`; the tests check the line shape, counts, -n, --timeout-ms,
--from-beginning versus the default (new messages only), keys, headers and
non-JSON values, a consumer group that commits and resumes, and errors.
"""
import json
import re
import subprocess
import time
import unittest

import harness
import kafka
from harness import run

FIELDS = ["key", "offset", "partition", "timestamp", "topic", "value"]


def kcat_produce(bootstrap, topic, value, key=None, headers=(), partition=0):
    """One message with kcat; value is bytes."""
    args = [kafka.KCAT, "-P", "-b", bootstrap, "-t", topic, "-p",
            str(partition)]
    if key is not None:
        args += ["-K", "\x01"]
        value = key.encode() + b"\x01" + value
    for h in headers:
        args += ["-H", h]
    p = subprocess.run(args, input=value, capture_output=True, timeout=30)
    if p.returncode != 0:
        raise AssertionError("kcat -P: %s" % p.stderr.decode(errors="replace"))


def parse_lines(out):
    return [json.loads(l) for l in out.splitlines() if l.strip()]


class TestConsume(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.kafka = kafka.cluster()  # the real broker (tests/kafka)
        cls.bs = cls.kafka.bootstrap
        # 300 JSON messages over partitions 0 and 1 of topic "c-json"
        cls.kafka.command("create-topic c-json 2")
        kafka.produce(cls.bs, "c-json", 0,
                      ('{"i":%d}' % i for i in range(0, 200)))
        kafka.produce(cls.bs, "c-json", 1,
                      ('{"i":%d}' % i for i in range(200, 300)))

    @classmethod
    def tearDownClass(cls):
        cls.kafka.stop()

    def topic(self, name, parts=1):
        self.kafka.command("create-topic %s %d" % (name, parts))
        return name

    def check_shape(self, rows, topic):
        for r in rows:
            self.assertEqual(sorted(r), FIELDS, r)
            self.assertEqual(r["topic"], topic)
            self.assertIsInstance(r["partition"], int)
            self.assertIsInstance(r["offset"], int)
            self.assertIsInstance(r["timestamp"], int)
            # a Kafka create time: within a day of now, in ms
            self.assertLess(abs(r["timestamp"] / 1000 - time.time()), 86400)

    def test_from_beginning_with_max(self):
        rc, out, err = run("consume", "-t", "c-json", "-b", self.bs,
                           "--from-beginning", "-n", "300", timeout=60)
        self.assertEqual(rc, 0, err)
        rows = parse_lines(out)
        self.assertEqual(len(rows), 300)
        self.check_shape(rows, "c-json")
        self.assertEqual(sorted(r["value"]["i"] for r in rows),
                         list(range(300)))
        for part, n in ((0, 200), (1, 100)):
            offs = [r["offset"] for r in rows if r["partition"] == part]
            self.assertEqual(offs, list(range(n)))
        self.assertTrue(all(r["key"] is None for r in rows))
        self.assertIn("consumed 300 messages from c-json", err)

    def test_n_stops_early(self):
        rc, out, err = run("consume", "-t", "c-json", "-b", self.bs,
                           "--from-beginning", "-n", "7", timeout=60)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(parse_lines(out)), 7)

    def test_idle_timeout_ends_after_the_last_message(self):
        start = time.monotonic()
        rc, out, err = run("consume", "-t", "c-json", "-b", self.bs,
                           "--from-beginning", "--timeout-ms", "800",
                           timeout=60)
        took = time.monotonic() - start
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(parse_lines(out)), 300)
        self.assertGreaterEqual(took, 0.8)
        self.assertLess(took, 20)

    def test_default_reads_only_new_messages(self):
        t = self.topic("c-new")
        kcat_produce(self.bs, t, b'{"old":1}')
        p = harness.kadx("consume", "-t", t, "-b", self.bs, "-n", "1")
        # the consumer starts at the end: keep producing new messages until
        # one is printed (it cannot know which offset was the end)
        deadline = time.monotonic() + 30
        while p.alive() and time.monotonic() < deadline:
            kcat_produce(self.bs, t, b'{"new":1}')
            try:
                p.wait_for(lambda l: l.startswith("{"), timeout=0.5,
                           what="a message")
                break
            except AssertionError:
                continue
        self.assertEqual(p.wait(20), 0, p.tail())
        rows = parse_lines("\n".join(p.out))
        self.assertEqual(len(rows), 1)
        self.assertEqual(rows[0]["value"], {"new": 1})
        self.assertGreaterEqual(rows[0]["offset"], 1)

    def test_keys_headers_and_non_json_values(self):
        t = self.topic("c-kinds")
        kcat_produce(self.bs, t, b"plain text", key="k1",
                     headers=("h1=v1", "h2"))
        kcat_produce(self.bs, t, b"bin\xff\x00x")
        kcat_produce(self.bs, t, b" [1, 2] ", key="\u00e9t\u00e9")
        kcat_produce(self.bs, t, b'{"a": broken')
        rc, out, err = run("consume", "-t", t, "-b", self.bs,
                           "--from-beginning", "-n", "4", timeout=60)
        self.assertEqual(rc, 0, err)
        rows = parse_lines(out)
        self.assertEqual(len(rows), 4)
        self.assertEqual(rows[0]["key"], "k1")
        self.assertEqual(rows[0]["value"], "plain text")
        self.assertEqual(rows[0]["headers"], [["h1", "v1"], ["h2", None]])
        self.assertNotIn("value", rows[1])
        self.assertEqual(rows[1]["value_base64"], "Ymlu/wB4")
        self.assertIsNone(rows[1]["key"])
        self.assertNotIn("headers", rows[1])
        self.assertEqual(rows[2]["value"], [1, 2])
        self.assertEqual(rows[2]["key"], "\u00e9t\u00e9")
        self.assertEqual(rows[3]["value"], '{"a": broken')

    def test_reads_what_kadx_produce_wrote(self):
        t = self.topic("c-gameplay", 3)
        rc, out, err = run("produce", "-t", t, "-b", self.bs, "-l", "-e",
                           "50")
        self.assertEqual(rc, 0, err)
        rc, out, err = run("consume", "-t", t, "--from-beginning", "-n",
                           "50", env={"KADX_BOOTSTRAP_SERVERS": self.bs},
                           timeout=60)
        self.assertEqual(rc, 0, err)
        rows = parse_lines(out)
        self.assertEqual(len(rows), 50)
        self.check_shape(rows, t)
        for r in rows:
            self.assertEqual(sorted(r["value"]), ["eventTime", "gameId",
                                                  "playerId", "stake", "win"])
            self.assertEqual(r["key"], str(r["value"]["playerId"]))

    def test_group_commits_and_resumes(self):
        group = "c-group-%d" % time.monotonic_ns()
        # --from-beginning applies only where the group has no offset yet
        # (a partition the first run never read): the second run needs it
        common = ("-t", "c-json", "-b", self.bs, "-g", group,
                  "--from-beginning", "-X", "session.timeout.ms=6000",
                  "-X", "heartbeat.interval.ms=500")
        rc, out, err = run("consume", *common, "-n", "120", timeout=90)
        self.assertEqual(rc, 0, err)
        first = parse_lines(out)
        self.assertEqual(len(first), 120)
        committed = kafka.committed_offsets(self.bs, group, "c-json", [0, 1])
        # offsets are committed at close: exactly what was printed
        self.assertEqual(sum(max(o, 0) for o in committed.values()), 120)
        # -n, not an idle timeout: the mock cluster may hand out the second
        # partition only after the first member's session expires
        rc, out, err = run("consume", *common, "-n", "180", timeout=90)
        self.assertEqual(rc, 0, err)
        second = parse_lines(out)
        seen = sorted(r["value"]["i"] for r in first + second)
        self.assertEqual(seen, list(range(300)))

    def test_unreachable_broker_exits_1(self):
        dead = "127.0.0.1:%d" % harness.free_port()
        rc, out, err = run("consume", "-t", "x", "-b", dead, "--timeout-ms",
                           "1000", timeout=60)
        self.assertEqual(rc, 1, err)
        self.assertIn("cannot find topic 'x' on " + dead, err)

    def test_usage_errors_exit_2(self):
        cases = [
            ((), "-t TOPIC is required"),
            (("-t", "x", "-n", "0"), "bad message count '0'"),
            (("-t", "x", "--timeout-ms", "soon"), "bad --timeout-ms 'soon'"),
            (("-t", "x", "-g", ""), "empty group name"),
            (("-t", "x", "--frob"), "unknown option '--frob'"),
            (("-t", "x", "-X", "=1"), "-X needs KEY=VALUE"),
        ]
        for args, msg in cases:
            rc, out, err = run("consume", *args)
            self.assertEqual(rc, 2, "%s: %s" % (args, err))
            self.assertIn(msg, err, args)

    def test_help_gives_the_line_shape(self):
        rc, out, _ = run("consume", "--help")
        self.assertEqual(rc, 0)
        for s in ("usage: kadx consume", '"partition"', '"offset"',
                  '"timestamp"', '"key"', "value_base64", "--from-beginning"):
            self.assertIn(s, out)
        self.assertTrue(re.search(r"-g, --group", out))


if __name__ == "__main__":
    harness.main()
