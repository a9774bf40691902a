"""`kadx produce` (issue 8): GamePlay events against the Kafka mock cluster.

What is produced is read back with kcat (an independent consumer), so the
checks do not go through kadx's own consumer: counts, the events' JSON
schema, keys, believable numbers, -e, loop mode with pacing and Ctrl-C,
the single-mode prompt driven through a pseudo-terminal, usage and
delivery errors.
"""
import json
import os
import pty
import re
import select
import signal
import subprocess
import time
import unittest

import harness
import kafka
from harness import run

TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
SUMMARY_RE = re.compile(r"^produced (\d+) events to (\S+)$")


def read_topic(bootstrap, topic, timeout=30.0):
    """Every message of topic as (partition, offset, key, value) via kcat."""
    p = subprocess.run([kafka.KCAT, "-b", bootstrap, "-C", "-t", topic, "-e",
                        "-q", "-f", "%p\t%o\t%k\t%s\n"],
                       capture_output=True, timeout=timeout)
    if p.returncode != 0:
        raise AssertionError("kcat -C failed: %s" % p.stderr.decode(
            errors="replace"))
    rows = []
    for line in p.stdout.decode().splitlines():
        part, off, key, val = line.split("\t", 3)
        rows.append((int(part), int(off), key, val))
    return rows


def check_event(test, key, value):
    """Asserts that value is one GamePlay event keyed by its playerId."""
    ev = json.loads(value)
    test.assertEqual(sorted(ev), ["eventTime", "gameId", "playerId", "stake",
                                  "win"])
    for k in ("playerId", "gameId", "win", "stake"):
        test.assertIsInstance(ev[k], int, k)
    test.assertRegex(ev["eventTime"], TIME_RE)
    test.assertEqual(key, str(ev["playerId"]))
    test.assertGreater(ev["stake"], 0)
    test.assertGreaterEqual(ev["win"], 0)
    test.assertEqual(ev["win"] % ev["stake"], 0)
    return ev


def summary(out):
    lines = out.strip().splitlines()
    m = SUMMARY_RE.match(lines[-1]) if lines else None
    if not m:
        raise AssertionError("no summary line in:\n" + out)
    return int(m.group(1)), m.group(2)


class TestProduce(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.kafka = kafka.cluster()  # the real broker (tests/kafka)
        cls.bs = cls.kafka.bootstrap

    @classmethod
    def tearDownClass(cls):
        cls.kafka.stop()

    def topic(self, name, parts=3):
        self.kafka.command("create-topic %s %d" % (name, parts))
        return name

    def test_loop_default_is_10_events(self):
        t = self.topic("p-default")
        rc, out, err = run("produce", "-t", t, "-b", self.bs, "-l")
        self.assertEqual(rc, 0, err)
        self.assertEqual(summary(out), (10, t))
        rows = read_topic(self.bs, t)
        self.assertEqual(len(rows), 10)
        for _, _, key, val in rows:
            check_event(self, key, val)
        self.assertIn("10/10 sent, 10 delivered, 0 failed", err)

    def test_loop_e_n_counts_and_schema(self):
        t = self.topic("p-count", 4)
        rc, out, err = run("produce", "-t", t, "-b", self.bs, "-l", "-e",
                           "3000", "--players", "20", "--games", "3")
        self.assertEqual(rc, 0, err)
        self.assertEqual(summary(out), (3000, t))
        rows = read_topic(self.bs, t)
        self.assertEqual(len(rows), 3000)
        # (partition, offset) unique: nothing sent twice
        self.assertEqual(len({(p, o) for p, o, _, _ in rows}), 3000)
        evs = [check_event(self, k, v) for _, _, k, v in rows]
        self.assertTrue(all(1 <= e["playerId"] <= 20 for e in evs))
        self.assertTrue(all(1 <= e["gameId"] <= 3 for e in evs))
        self.assertEqual({e["gameId"] for e in evs}, {1, 2, 3})
        losses = sum(1 for e in evs if e["win"] == 0)
        self.assertTrue(0.55 * 3000 <= losses <= 0.85 * 3000, losses)
        self.assertTrue(any(e["win"] > e["stake"] for e in evs))
        # keyed by playerId: one player's events all land in one partition
        part_of = {}
        for p, _, k, _ in rows:
            self.assertEqual(part_of.setdefault(k, p), p, "key " + k)

    def test_rate_paces_the_loop(self):
        t = self.topic("p-rate")
        start = time.monotonic()
        rc, out, err = run("produce", "-t", t, "-b", self.bs, "-l", "-e",
                           "60", "--rate", "100")
        took = time.monotonic() - start
        self.assertEqual(rc, 0, err)
        self.assertEqual(summary(out), (60, t))
        # 60 events at 100/s: the last is due at 0.59 s
        self.assertGreaterEqual(took, 0.55)
        self.assertLess(took, 10)
        self.assertEqual(len(read_topic(self.bs, t)), 60)

    def test_seed_reproduces_events_and_print_matches_topic(self):
        t = self.topic("p-seed", 1)
        outs = []
        for _ in range(2):
            rc, out, err = run("produce", "-t", t, "-b", self.bs, "-l", "-e",
                               "25", "--seed", "99", "--print")
            self.assertEqual(rc, 0, err)
            printed = [json.loads(l) for l in out.splitlines()[:-1]]
            self.assertEqual(len(printed), 25)
            for e in printed:
                del e["eventTime"]
            outs.append(printed)
        self.assertEqual(outs[0], outs[1])
        rows = read_topic(self.bs, t)
        self.assertEqual(len(rows), 50)
        got = [json.loads(v) for _, _, _, v in rows[:25]]
        for e in got:
            del e["eventTime"]
        self.assertEqual(got, outs[0])

    def test_env_supplies_brokers(self):
        t = self.topic("p-env")
        rc, out, err = run("produce", "-t", t, "-l", "-e", "5",
                           env={"KADX_BOOTSTRAP_SERVERS": self.bs})
        self.assertEqual(rc, 0, err)
        self.assertEqual(summary(out), (5, t))
        self.assertEqual(len(read_topic(self.bs, t)), 5)

    def test_loop_until_ctrl_c(self):
        t = self.topic("p-sigint")
        p = harness.kadx("produce", "-t", t, "-b", self.bs, "-l", "-e", "0",
                         "--rate", "200")
        p.wait_for(lambda l: re.search(r"produce: \d+ sent, \d+ delivered",
                                       l) is not None,
                   timeout=20, what="a progress line")
        p.signal(signal.SIGINT)
        self.assertEqual(p.wait(20), 0, p.tail())
        n, topic = summary("\n".join(p.out))
        self.assertEqual(topic, t)
        self.assertGreater(n, 0)
        self.assertEqual(len(read_topic(self.bs, t)), n)

    def test_delivery_failure_exits_1_with_reason(self):
        dead = "127.0.0.1:%d" % harness.free_port()
        rc, out, err = run("produce", "-t", "nowhere", "-b", dead, "-l",
                           "-e", "3", "-X", "message.timeout.ms=1500",
                           timeout=60)
        self.assertEqual(rc, 1, out + err)
        self.assertIn("3 of 3 events were not delivered", err)
        self.assertIn("timed out", err)
        self.assertEqual(summary(out), (0, "nowhere"))

    def test_usage_errors_exit_2(self):
        cases = [
            ((), "-t TOPIC is required"),
            (("-t", "x", "-e", "ten"), "bad event count 'ten'"),
            (("-t", "x", "-e", "-1"), "bad event count '-1'"),
            (("-t", "x", "--rate", "5"), "--rate needs loop mode"),
            (("-t", "x", "-l", "--rate", "fast"), "bad --rate 'fast'"),
            (("-t", "bad topic"), "bad topic name 'bad topic'"),
            (("-t", "x", "--players", "0"), "bad --players '0'"),
            (("-t", "x", "--games", "x"), "bad --games 'x'"),
            (("-t", "x", "-X", "novalue"), "-X needs KEY=VALUE"),
            (("-t", "x", "--frob"), "unknown option '--frob'"),
            (("-t", "x", "extra"), "unexpected argument 'extra'"),
            (("-t",), "option '-t' needs a value"),
        ]
        for args, msg in cases:
            rc, out, err = run("produce", *args)
            self.assertEqual(rc, 2, "%s: %s" % (args, err))
            self.assertIn(msg, err, args)
        rc, out, err = run("produce", "-t", "x", "-b", self.bs, "-l", "-e",
                           "1", "-X", "no.such.property=1")
        self.assertEqual(rc, 1, err)
        self.assertIn("no.such.property", err)

    def test_help_describes_the_event(self):
        rc, out, _ = run("produce", "--help")
        self.assertEqual(rc, 0)
        for s in ("usage: kadx produce", "playerId", "eventTime",
                  "publish? [Y/n]", "produced N events to TOPIC"):
            self.assertIn(s, out)

    def test_single_mode_reads_answers_from_a_pipe(self):
        t = self.topic("p-pipe", 1)
        rc, out, err = run("produce", "-t", t, "-b", self.bs,
                           input_bytes=b"y\nn\n\nY\n")
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.count("publish? [Y/n]"), 5)
        self.assertEqual(out.count("skipped"), 1)
        self.assertEqual(summary(out), (3, t))
        self.assertEqual(len(read_topic(self.bs, t)), 3)

    def test_single_mode_prompt_on_a_terminal(self):
        t = self.topic("p-tty", 1)
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(harness.KADX, [harness.KADX, "produce", "-t", t, "-b",
                                    self.bs])
        buf = b""

        def expect(needle, timeout=20.0):
            nonlocal buf
            deadline = time.monotonic() + timeout
            while needle not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError("no %r in %r" % (needle, buf))
                r, _, _ = select.select([fd], [], [], left)
                if r:
                    try:
                        chunk = os.read(fd, 4096)
                    except OSError:
                        chunk = b""
                    if not chunk:
                        raise AssertionError("eof before %r in %r" % (
                            needle, buf))
                    buf += chunk
            i = buf.index(needle) + len(needle)
            seen, buf = buf[:i], buf[i:]
            return seen.decode()

        def shown_event(text):
            lines = [l for l in text.splitlines() if l.startswith("{")]
            return json.loads(lines[-1])

        try:
            published = []
            text = expect(b"publish? [Y/n] ")
            published.append(shown_event(text))
            os.write(fd, b"\n")  # Enter means yes
            self.assertIn("published to %s [0] at offset 0" % t,
                          expect(b"at offset 0"))
            text = expect(b"publish? [Y/n] ")
            os.write(fd, b"n\n")
            self.assertIn("skipped", expect(b"skipped"))
            text = expect(b"publish? [Y/n] ")
            published.append(shown_event(text))
            os.write(fd, b"maybe\n")
            expect(b"please answer")
            expect(b"publish? [Y/n] ")
            os.write(fd, b"y\n")
            self.assertIn("published to %s [0] at offset 1" % t,
                          expect(b"at offset 1"))
            expect(b"publish? [Y/n] ")
            os.write(fd, b"\x04")  # Ctrl-D: end of input
            tail = expect(b"events to " + t.encode())
            self.assertIn("produced 2 events to " + t, tail)
            _, status = os.waitpid(pid, 0)
            pid = 0
            self.assertEqual(os.waitstatus_to_exitcode(status), 0)
        finally:
            if pid:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            os.close(fd)
        rows = read_topic(self.bs, t)
        self.assertEqual([json.loads(v) for _, _, _, v in rows], published)
        for _, _, k, v in rows:
            check_event(self, k, v)


if __name__ == "__main__":
    harness.main()
