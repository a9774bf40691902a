"""intake.prefetch_bytes (gateway/INTAKE.md "Memory", issue 14): a small
budget over a backlog that is larger than it, on the mock cluster.

The budget turns into librdkafka's limits (the plan is logged), intake's
appends are cut to a quarter of it, and when intake drained the consumer
queue dry after a blocked drain it pauses and resumes the assignment to
wake librdkafka's fetchers (prefetch_kick). That pause/resume must not
lose or repeat an event: every offset of every partition is journaled
exactly once and committed. Peak RSS is measured by the benchmark
(tests/bench/bench_e2e.py --backlog), not here: this build has ASan.
"""
import os
import shutil
import tempfile
import unittest

import harness
import kafka
from harness import wait_until
from test_intake import journal_events, write_config

TOPIC = "t"  # test_intake.write_config's route
PARTS = 8
PER = 6000


class PrefetchBudget(unittest.TestCase):
    def test_small_budget_backlog_exactly_once(self):
        mock = kafka.MockCluster(topics=[(TOPIC, PARTS)])
        self.addCleanup(mock.stop)
        tmp = tempfile.mkdtemp(prefix="kadx-prefetch-")
        self.addCleanup(shutil.rmtree, tmp, True)
        pad = "x" * 200
        for p in range(PARTS):
            kafka.produce(mock.bootstrap, TOPIC, p,
                          ['{"p":%d,"i":%d,"pad":"%s"}' % (p, i, pad)
                           for i in range(PER)])
        j = os.path.join(tmp, "j.db")
        cfg = write_config(os.path.join(tmp, "c.json"), mock.bootstrap,
                           "gpf", j, intake={"prefetch_bytes": "4MiB"})
        k = harness.kadx("--log-level", "debug", "run", "-c", cfg,
                         name="kadx run")
        plan = k.wait_for("prefetch budget", timeout=30,
                          what="the prefetch plan")
        self.assertIn("prefetch budget 4194304 bytes: "
                      "queued.max.messages.kbytes 2048, "
                      "queued.min.messages 8192, fetch.max.bytes 1048576",
                      plan)
        want = PARTS * PER
        wait_until(lambda: len(journal_events(j)) >= want, timeout=120,
                   interval=0.5, what="%d events journaled" % want)
        wait_until(lambda: kafka.committed_offsets(
            mock.bootstrap, "gpf", TOPIC, list(range(PARTS))) ==
            {p: PER for p in range(PARTS)}, timeout=60, interval=0.5,
            what="every partition committed at its end")
        # The backlog (~1.9 MB) is larger than the queue's limits: the queue
        # reached them (or intake's drain blocked on a full append buffer),
        # and once drained intake woke the fetchers.
        k.wait_for("waking librdkafka's fetchers", timeout=5,
                   what="a prefetch kick")
        self.assertEqual(k.stop(), 0, k.tail())
        ev = journal_events(j)
        self.assertEqual(len(ev), want)
        self.assertEqual(sorted(ev), sorted(
            (TOPIC, p, o) for p in range(PARTS) for o in range(PER)))


if __name__ == "__main__":
    harness.main()
