"""SIGKILL at random moments while kadx forwards under faults (issue 6):
0 lost, 0 duplicated.

The ADX emulator fails about 30% of ingest requests with 500 and, now and
then, applies a request and resets the connection (the ambiguous case); the
route has a dedupe column, so a batch found SENT after a restart is looked
up in ADX before any resend (INV-5). kadx is killed with SIGKILL at random
moments while a producer writes in the background; at the end every
(partition, offset) must be in the table exactly once (audited through the
KafkaPartition / KafkaOffset metadata columns).

Default: 4 x 5000 events, 3 kills. KADX_FULL=1: 8 x 25000 events (200k),
30 kills.
"""
import os
import random
import subprocess
import threading

import harness
import test_forwarder as tf


class Resetter(threading.Thread):
    """Arms one apply-then-reset fault every `every` seconds."""

    def __init__(self, emu, every=0.7):
        super().__init__(daemon=True)
        self.emu = emu
        self.every = every
        self.stop_ev = threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.stop_ev.wait(self.every):
                if self.emu.stats()["faults"]["reset_count"] == 0:
                    self.emu.faults(reset_count=1)
        except Exception as e:
            self.error = e

    def finish(self):
        self.stop_ev.set()
        self.join(10)
        self.emu.faults(reset_count=0)
        if self.error:
            raise self.error


class KillCase(tf.ForwarderBase):

    def test_sigkill_under_faults(self):
        per_part = 25000 if harness.FULL else 5000
        kills = 30 if harness.FULL else 3
        rnd = random.Random(int(os.environ.get("KADX_SEED", "0")) or None)
        emu = self.start_emulator()
        tf.setup_table(emu)
        tf.write_config(self.cfg, self.bs, "g-kill", self.journal, emu.url,
                        forwarder={"batch_max_rows": 1000})
        prod = tf.Producer(self.bs, self.parts, per_part,
                        5000 if harness.FULL else 1000)
        prod.start()
        inj = tf.FaultInjector(emu, 0.3, 500)
        inj.start()
        resets = Resetter(emu)
        resets.start()
        for n in range(kills):
            k = self.start_kadx("kadx run %d" % n)
            # a random moment: somewhere while it consumes and forwards
            try:
                k.p.wait(rnd.uniform(1.0, 6.0))
                self.fail("kadx exited before its kill\n" + k.tail())
            except subprocess.TimeoutExpired:
                pass
            k.kill()
        prod.finish()
        k = self.start_kadx("kadx run final")
        self.wait_count(emu, per_part * self.partitions,
                        900 if harness.FULL else 180, k)
        inj.finish()
        resets.finish()
        # anything ambiguous left must settle without a second copy
        self.assertEqual(k.stop(), 0)
        tf.audit(emu, self.parts, per_part)
        st = emu.stats()
        self.assertGreater(st["faults_fired"]["fail"], 0)
        self.assertGreater(st["faults_fired"]["reset"], 0)


if __name__ == "__main__":
    harness.main()
