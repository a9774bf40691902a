"""Offline recovery tool (issue 7): `kadx recover JOURNAL CMD` against the
journals of real `kadx run` processes (Kafka mock cluster -> kadx -> ADX
emulator).

- SIGKILL kadx with batches pending and in flight; `recover ... replay`
  (the gateway stopped) delivers everything journaled exactly once; a second
  replay sends nothing; `kadx run` afterwards sends nothing twice.
- A running gateway's journal is refused (the message names its PID);
  --read-only status and export work anyway.
- A journal with overwritten bytes: `check` exits 1 with a report; `salvage`
  copies every readable event into a new journal, which checks clean and
  whose replay puts exactly those events into ADX.
- requeue, purge, salvage and replay are each run twice.
Exactly-once is audited through the KafkaPartition / KafkaOffset metadata
columns (see test_forwarder.py).
"""
import json
import os
import re
import sqlite3
import urllib.request

import harness
import test_forwarder as tf
from harness import wait_until

TOKEN = "recover-test-admin-token"


def admin_config(path):
    """Turns the admin API on (ephemeral port) in a config tf wrote."""
    with open(path) as f:
        cfg = json.load(f)
    cfg["admin"] = {"listen": "127.0.0.1:0", "token": TOKEN}
    with open(path, "w") as f:
        json.dump(cfg, f)


def admin_port(proc):
    line = proc.wait_for("admin: listening on", timeout=30,
                         what="the admin listening line")
    return int(re.search(r":(\d+)", line.split("listening on", 1)[1])
               .group(1))


def get_json(port, path):
    with urllib.request.urlopen("http://127.0.0.1:%d%s" % (port, path),
                                timeout=10) as r:
        return json.loads(r.read().decode())


def recover(*args, timeout=120):
    return harness.run("recover", *[str(a) for a in args], timeout=timeout)


def status(journal, *extra):
    rc, out, err = recover(journal, "status", "--json", *extra)
    assert rc == 0, (rc, out, err)
    return json.loads(out)


def totals(st):
    t = {"pending": 0, "inflight": 0, "delivered": 0, "dead": 0}
    for p in st["partitions"]:
        for k in t:
            t[k] += p[k + "_count"]
    return t


class RecoverCase(tf.ForwarderBase):
    partitions = 4

    def journaled(self, port):
        st = get_json(port, "/status")
        return sum(p["journaled_offset"] + 1
                   for r in st["routes"] for p in r["partitions"]
                   if p["journaled_offset"] is not None)

    def test_kill_then_replay_then_run(self):
        n = 25000 if harness.FULL else 2500
        total = n * self.partitions
        emu = self.start_emulator()
        tf.setup_table(emu)
        tf.write_config(self.cfg, self.bs, "g-recover", self.journal, emu.url,
                        forwarder={"batch_max_rows": 250, "max_inflight": 4,
                                   "linger_ms": 20})
        admin_config(self.cfg)
        # slow ingest: requests are in flight when the kill comes
        emu.faults(latency_ms=300)
        tf.produce(self.bs, self.parts, 0, n)
        k = self.start_kadx()
        port = admin_port(k)
        wait_until(lambda: self.journaled(port) >= total, timeout=60,
                   what="every event journaled")
        wait_until(lambda: emu.count(tf.TABLE) >= 500, timeout=60,
                   what="some rows delivered")

        # a running gateway's journal is refused, naming the process...
        rc, out, err = recover(self.journal, "status")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("in use by process %d" % k.pid, err)
        rc, out, err = recover(self.journal, "requeue")
        self.assertEqual(rc, 1)
        self.assertIn("stop the gateway first", err)
        # ... but --read-only reads a snapshot of it
        st = status(self.journal, "--read-only")
        self.assertEqual(len(st["partitions"]), self.partitions)
        rc, out, err = recover(self.journal, "export", "--read-only", "all",
                               "--partition", 0, "--from", 0, "--to", 9)
        self.assertEqual(rc, 0, err)
        self.assertEqual(len(out.splitlines()), 10)

        k.kill()  # SIGKILL: batches sent and unanswered, others pending
        emu.faults(latency_ms=0)
        st = status(self.journal)
        t = totals(st)
        self.assertGreater(t["pending"] + t["inflight"], 0, st)
        self.assertGreater(st["batches_unfinished"], 0, st)
        self.assertEqual(t["pending"] + t["inflight"] + t["delivered"],
                         total, st)
        rc, out, err = recover(self.journal, "check")
        self.assertEqual(rc, 0, out + err)
        self.assertIn("check: ok", out)

        # replay with the gateway stopped: everything, exactly once
        rc, out, err = recover(self.journal, "replay", "-c", self.cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("replayed:", out)
        self.assertIn("replay:", err)  # progress
        tf.audit(emu, self.parts, n)
        t = totals(status(self.journal))
        self.assertEqual((t["pending"], t["inflight"], t["delivered"]),
                         (0, 0, total))
        # safe twice: nothing left to send
        rc, out, err = recover(self.journal, "replay", "-c", self.cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("replayed: 0 events", out)
        self.assertEqual(emu.count(tf.TABLE), total)

        # kadx run afterwards sends nothing twice, and new events flow
        k = self.start_kadx(name="kadx run again")
        tf.produce(self.bs, self.parts, n, 10)
        self.wait_count(emu, total + 10 * self.partitions, 60, k)
        self.assertEqual(k.stop(), 0)
        tf.audit(emu, self.parts, n + 10)

        # requeue and purge, each twice
        for _ in range(2):
            rc, out, err = recover(self.journal, "requeue")
            self.assertEqual(rc, 0, err)
            self.assertIn("requeued 0 dead letters", out)
        rc, out, err = recover(self.journal, "purge", "--before", "0s")
        self.assertEqual(rc, 0, err)
        purged = int(re.search(r"purged (\d+)", out).group(1))
        self.assertGreater(purged, 0)
        self.assertLessEqual(purged, total + 10 * self.partitions)
        rc, out, err = recover(self.journal, "purge", "--before", "0s")
        self.assertEqual(rc, 0, err)
        self.assertIn("purged 0 delivered events", out)
        rc, out, err = recover(self.journal, "check")
        self.assertEqual(rc, 0, out + err)

    def test_damaged_journal_check_and_salvage(self):
        n = 2000
        total = n * self.partitions
        emu = self.start_emulator()
        tf.setup_table(emu)
        tf.write_config(self.cfg, self.bs, "g-salvage", self.journal,
                        emu.url, forwarder={"retry_initial_ms": 200,
                                            "retry_max_ms": 400})
        admin_config(self.cfg)
        # ADX refuses everything (transiently): all stays undelivered
        emu.faults(fail_count=1000000, fail_status=503, fail_permanent=False)
        tf.produce(self.bs, self.parts, 0, n)
        k = self.start_kadx()
        port = admin_port(k)
        wait_until(lambda: self.journaled(port) >= total, timeout=60,
                   what="every event journaled")
        self.assertEqual(k.stop(), 0)
        emu.faults(fail_count=0)
        self.assertEqual(emu.count(tf.TABLE), 0)

        # fold the WAL into the database file (the journal leaves it in
        # place at close), then overwrite the 4 KiB page holding one known
        # event
        db = sqlite3.connect(self.journal)
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        db.close()
        with open(self.journal, "rb") as f:
            data = f.read()
        at = data.find(b'"playerId":1500,"gameId":2,')
        self.assertGreater(at, 0)
        page = at // 4096 * 4096
        with open(self.journal, "r+b") as f:
            f.seek(page)
            f.write(bytes((0xa5 ^ (i * 31)) & 0xff for i in range(4096)))

        rc, out, err = recover(self.journal, "check")
        self.assertEqual(rc, 1, out + err)
        self.assertIn("problem:", out)
        self.assertIn("BROKEN", out)
        rc, out, err = recover(self.journal, "check", "--json")
        self.assertEqual(rc, 1)
        rep = json.loads(out)
        self.assertFalse(rep["ok"])
        self.assertGreater(rep["problems"], 0)

        salvaged = os.path.join(self.tmp, "salvaged.db")
        rc, out, err = recover(self.journal, "salvage", "-o", salvaged)
        self.assertEqual(rc, 0, out + err)
        print(out.strip())
        m = re.search(r"(\d+) events read, (\d+) copied", out)
        read, copied = int(m.group(1)), int(m.group(2))
        self.assertGreater(read, 0)
        self.assertLess(read, total)  # the damaged page cost some
        self.assertEqual(copied, read)
        self.assertIn("salvage:", err)  # progress
        # safe twice: nothing new
        rc, out, err = recover(self.journal, "salvage", "-o", salvaged)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("%d events read, 0 copied, %d already there" % (
            read, read), out)

        rc, out, err = recover(salvaged, "check")
        self.assertEqual(rc, 0, out + err)
        out_file = os.path.join(self.tmp, "all.jsonl")
        rc, out, err = recover(salvaged, "export", "all", "-o", out_file)
        self.assertEqual(rc, 0, err)
        with open(out_file) as f:
            rows = [json.loads(line) for line in f]
        self.assertEqual(len(rows), read)
        keys = {(r["partition"], r["offset"]) for r in rows}
        self.assertEqual(len(keys), read)

        # the salvaged journal replays exactly the events it holds
        rc, out, err = recover(salvaged, "replay", "-c", self.cfg)
        self.assertEqual(rc, 0, out + err)
        self.assertEqual(emu.count(tf.TABLE), read)
        got = emu.query("GamePlay | summarize c=count(), "
                        "d=dcount(KafkaOffset) by KafkaPartition")
        self.assertEqual(sum(r["c"] for r in got), read)
        for r in got:
            self.assertEqual(r["c"], r["d"], r)

    def test_usage_errors(self):
        rc, out, err = recover(os.path.join(self.tmp, "none.db"), "status")
        self.assertEqual(rc, 1)
        self.assertIn("no journal at", err)
        rc, out, err = recover(self.journal, "frobnicate")
        self.assertEqual(rc, 2)
        rc, out, err = recover(self.journal, "purge")
        self.assertEqual(rc, 2)
        self.assertIn("--before", err)
        rc, out, err = recover(self.journal, "requeue", "--read-only")
        self.assertEqual(rc, 2)
        rc, out, err = recover(self.journal, "export", "everything")
        self.assertEqual(rc, 2)
        rc, out, err = recover(self.journal, "purge", "--before", "yesterday")
        self.assertEqual(rc, 2)
        rc, out, err = harness.run("recover", "--help")
        self.assertEqual(rc, 0)
        self.assertIn("salvage", out)


if __name__ == "__main__":
    harness.main()
