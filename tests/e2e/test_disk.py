"""A full disk (issue 20): kadx stays able to drain, says so, and never
stalls while ADX is healthy.

Each test mounts its own small tmpfs (root only: `mount -t tmpfs -o
size=24m`) under its temporary directory, puts the journal (and the
settled-offsets file beside it) there, and unmounts it at the end, also on
failure. journal.max_bytes stays at its 1 GiB default: the disk, not the
configured cap, is the limit, so kadx must find that out itself
(journal.reserve_bytes, journal.h "disk space").

- FullDisk: ADX refuses every request while 200k events arrive. The journal
  fills what the disk grants minus the reserve, intake pauses, /readyz says
  503 "disk full" and the settled offsets are still saved. Then ADX comes
  back: everything is delivered with the filesystem unchanged (same size),
  audited per (partition, offset): 0 lost, 0 duplicated.
- SmallDiskSteady: a healthy run whose traffic is larger than the
  filesystem (a day of it would be far larger): delivered events are
  retired early, oldest first (journal.retention_ms is 24 h), /status
  reports the replay window actually kept, and everything is delivered
  exactly once.
"""
import atexit
import http.client
import json
import re
import os
import subprocess
import threading
import time

import harness
import kafka
import test_forwarder as tf
from harness import wait_until

MIB = 1 << 20


def mount_tmpfs(case, size_mib):
    """Mounts a size_mib tmpfs under case.tmp; unmounted at cleanup (after
    every process the test started is gone, so nothing holds it)."""
    mnt = os.path.join(case.tmp, "fs")
    os.mkdir(mnt)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=%dm" % size_mib,
                    "tmpfs", mnt], check=True, capture_output=True)

    def umount():
        if not os.path.ismount(mnt):
            return
        harness._kill_all()
        r = subprocess.run(["umount", mnt], capture_output=True)
        if r.returncode != 0:  # still busy: detach it now, freed when idle
            subprocess.run(["umount", "-l", mnt], capture_output=True)
    case.addCleanup(umount)
    atexit.register(umount)  # also when SIGTERM (meson's timeout) ends us
    return mnt


def fs_bytes(path):
    st = os.statvfs(path)
    return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize


def padded_event(p, i, pad):
    return ('{"playerId":%d,"gameId":%d,"win":%d,"stake":%d,'
            '"eventTime":"2026-11-24T12:00:00.000Z","pad":"%s"}' % (
                i, p, (i % 7) * 10, i % 5 + 1, "x" * pad))


class DiskBase(tf.ForwarderBase):
    partitions = 8

    def setUp(self):
        super().setUp()
        self.mnt = mount_tmpfs(self, self.fs_mib)
        self.journal = os.path.join(self.mnt, "journal.db")

    def config(self, emu, journal=None):
        tf.write_config(self.cfg, self.bs, "g-" + self.id().split(".")[-1],
                        self.journal, emu.url, admin=True,
                        forwarder={"batch_max_rows": 5000})
        with open(self.cfg) as f:
            cfg = json.load(f)
        cfg["journal"].update(journal or {})
        with open(self.cfg, "w") as f:
            json.dump(cfg, f)

    def start_kadx(self, name="kadx run"):
        k = super().start_kadx(name)
        dump = os.environ.get("KADX_DISK_LOG")
        if dump:
            def write():
                with open(dump, "w") as f:
                    f.write("\n".join(k.lines()) + "\n")
            self.addCleanup(write)
        return k

    def get(self, k, path):
        return tf.admin_get(k, path)

    def metrics(self, k):
        line = k.wait_for("admin: listening on", timeout=30)
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", "/metrics")
            return conn.getresponse().read().decode()
        finally:
            conn.close()

    def journal_check(self, k):
        st, body = self.get(k, "/readyz")
        return st, [c for c in body["checks"] if c["name"] == "journal"][0]


class FullDisk(DiskBase):
    fs_mib = 24

    def test_full_disk_adx_down_then_up(self):
        per = 25000  # x 8 partitions = 200k events, ~21 MB of values
        emu = self.start_emulator()
        tf.setup_table(emu)
        emu.faults(fail_count=10 ** 9, fail_status=503, fail_permanent=False)
        self.config(emu)
        size0, _ = fs_bytes(self.mnt)
        # --check says the configured cap cannot fit
        rc, out, err = harness.run("run", "-c", self.cfg, "--check")
        self.assertEqual(rc, 0, err)
        self.assertIn("journal.max_bytes 1073741824 cannot fit on the disk",
                      err)
        k = self.start_kadx()
        k.wait_for("assigned", timeout=60, what="partitions assigned")
        prod = tf.Producer(self.bs, self.parts, per, 2500)
        prod.start()

        # the disk fills up to the reserve: /readyz 503 with the reason
        def red():
            st, c = self.journal_check(k)
            return (st, c) if st == 503 and "disk full" in c["detail"] \
                else None
        st, chk = wait_until(red, timeout=120, interval=0.5,
                             what="/readyz 503 'disk full'")
        self.assertFalse(chk["ok"])
        prod.finish()

        # intake pauses on the failed append; an append retried into the
        # last room before the cap goes through and resumes it until the
        # next one fails (INV-7), so wait for a paused moment
        def paused():
            _, st = self.get(k, "/status")
            return st if st["intake"]["paused"] else None
        status = wait_until(paused, timeout=60, interval=0.2,
                            what="intake paused on the full disk")
        jn = status["journal"]
        self.assertEqual(jn["disk"]["full"], "disk", jn)
        self.assertTrue(jn["disk"]["limits_cap"], jn)
        self.assertEqual(jn["max_bytes"], 1024 * MIB)
        self.assertLess(jn["effective_max_bytes"], 24 * MIB)
        m = self.metrics(k)
        self.assertIn("\nkadx_journal_disk_full 1\n", m)
        self.assertIn("\nkadx_journal_reserve_bytes %d\n" % (8 * MIB), m)
        cap = re.search(r"\nkadx_journal_effective_max_bytes (\d+)\n", m)
        self.assertTrue(cap and 0 < int(cap.group(1)) < 24 * MIB, m)
        # the reserve stays free for draining (WAL, settled file, batches)
        _, free = fs_bytes(self.mnt)
        print("disk full: %d bytes free, journal %s, intake %s" % (
            free, json.dumps(jn), json.dumps(status["intake"])))
        self.assertGreater(free, 2 * MIB, jn)
        self.assertEqual(emu.count(tf.TABLE), 0)  # ADX refused everything
        # it stays so: ADX keeps refusing, kadx keeps retrying
        failed0 = emu.stats()["ingest_failed"]
        wait_until(lambda: emu.stats()["ingest_failed"] >= failed0 + 5,
                   timeout=30, what="more refused requests")
        self.assertEqual(self.journal_check(k)[0], 503)
        log = "\n".join(k.lines())
        self.assertNotIn("saving settled offsets", log)
        self.assertNotIn("cannot cut a batch", log)
        # intake's refused append says so at once; the forwarder's "disk
        # full" line comes with its next retention check
        self.assertRegex(log, r"disk full|journal full \(disk\)")

        # ADX back: everything delivered, the filesystem unchanged
        emu.faults(fail_count=0)
        self.wait_count(emu, per * self.partitions, 240, k)
        self.assertEqual(fs_bytes(self.mnt)[0], size0)
        wait_until(lambda: self.journal_check(k)[0] == 200, timeout=60,
                   what="/readyz green again")
        log = "\n".join(k.lines())
        self.assertNotIn("saving settled offsets", log)
        self.assertNotIn("cannot cut a batch", log)
        self.assertEqual(k.stop(timeout=60), 0, k.tail(40))
        tf.audit(emu, self.parts, per)


class SmallDiskSteady(DiskBase):
    fs_mib = 24

    def test_small_disk_keeps_delivering(self):
        per = 10000  # x 8 partitions x ~440 bytes = ~35 MB > 24 MiB
        pad = 330
        emu = self.start_emulator()
        tf.setup_table(emu)
        self.config(emu)  # retention_ms: the 24 h default
        k = self.start_kadx()
        k.wait_for("assigned", timeout=60, what="partitions assigned")
        t0 = time.monotonic()
        low_free = [None]
        progress = {"count": 0, "at": t0, "longest": 0.0}

        def prod_run():
            for start in range(0, per, 1000):
                for p in self.parts:
                    kafka.produce(self.bs, tf.TOPIC, p, [
                        padded_event(p, i, pad)
                        for i in range(start, start + 1000)])
        err = []

        def guarded():
            try:
                prod_run()
            except Exception as e:  # reported below
                err.append(e)
        th = threading.Thread(target=guarded, daemon=True)
        th.start()

        def done():
            if not k.alive():
                raise AssertionError("kadx exited\n" + k.tail())
            _, free = fs_bytes(self.mnt)
            if low_free[0] is None or free < low_free[0]:
                low_free[0] = free
            n, now = emu.count(tf.TABLE), time.monotonic()
            if n > progress["count"]:
                progress["longest"] = max(progress["longest"],
                                          now - progress["at"])
                progress["count"], progress["at"] = n, now
            return n >= per * self.partitions
        try:
            wait_until(done, timeout=240, interval=0.25,
                       what="every event delivered")
        except AssertionError as e:
            _, st = self.get(k, "/status")
            raise AssertionError("%s: %d of %d in ADX\nstatus %s\n%s" % (
                e, emu.count(tf.TABLE), per * self.partitions,
                json.dumps(st), k.tail(60))) from None
        th.join(60)
        self.assertFalse(err, err)
        took = time.monotonic() - t0
        _, status = self.get(k, "/status")
        ret = status["journal"]["retention"]
        self.assertEqual(ret["retention_ms"], 24 * 3600 * 1000)
        self.assertGreater(ret["early_retired_events"], 0, ret)
        self.assertTrue(ret["shortened"], ret)
        # the replay window actually kept: far below 24 h, at most the run
        if ret["replay_window_ms"] is not None:
            self.assertLess(ret["replay_window_ms"], (took + 5) * 1000, ret)
        log = "\n".join(k.lines())
        self.assertIn("space pressure", log)
        self.assertNotIn("saving settled offsets", log)
        self.assertNotIn("cannot cut a batch", log)
        # the reserve was never eaten into much
        self.assertGreater(low_free[0], 2 * MIB, status["journal"])
        # it kept delivering: no long stretch without a delivery (the
        # first one included: kadx joins the group within ~3 s)
        self.assertLess(progress["longest"], 10.0, progress)
        self.assertEqual(k.stop(timeout=60), 0, k.tail(40))
        tf.audit(emu, self.parts, per)
        print("small disk: %d events in %.1f s, early retired %d, lowest "
              "free %.1f MiB, longest wait for a delivery %.1f s, WAL "
              "truncated %d times" % (
                  per * self.partitions, took, ret["early_retired_events"],
                  low_free[0] / MIB, progress["longest"],
                  status["journal"]["wal_truncates"]))


if __name__ == "__main__":
    harness.main()
