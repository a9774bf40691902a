#!/usr/bin/env python3
"""chaos.py - kadx under everything at once (issue 12): a stream into a
three-node Apache Kafka cluster while kadx is killed with SIGKILL at random
moments, brokers are killed and restarted, the ADX emulator fails, throttles,
resets connections after applying, and answers past kadx's request timeout,
and (with --disk-mb) the journal lives on a filesystem too small for the
stream. At the end every (partition, offset) Kafka holds must be in the
emulator's table exactly once (the route has a dedupe column; audited
through the KafkaPartition / KafkaOffset metadata columns), and
`kadx recover JOURNAL check` must find no problem.

It prints a table (events, kills, broker restarts, faults fired, lost,
duplicated) and exits 1 on any loss, duplicate or recover finding.

usage: chaos.py [--events N] [--kills K] [--broker-restarts R]
                [--partitions P] [--disk-mb MB] [--faults LIST]
                [--seed S] [--timeout S]
  --faults: comma-separated phases cycled while kadx is killed:
            fail (500), throttle (429), reset (applied, then TCP RST),
            slow (50% applied 2.5-5 s late: after kadx's 2 s request
            timeout, some after the 4 s server timeout), token (the token
            endpoint answers 503 for 8.5-12 s; kadx's tokens live 10 s
            and are refreshed after 8 s, so a refresh or a restart meets
            it); default all, in a shuffled cycle (each fires in turn).
The meson test `chaos` runs a short version (tests/chaos/meson.build);
`KADX_FULL=1` or the flags give the long one: 1M events, 100 kills.
Needs root for --disk-mb (it mounts a tmpfs and unmounts it at the end).
"""
import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))
sys.path.insert(0, os.path.join(HERE, "..", "kafka"))

import adx  # noqa: E402
import harness  # noqa: E402
import kafka_cluster  # noqa: E402
import test_forwarder as tf  # noqa: E402

TOPIC = "chaos"
REQUEST_TIMEOUT_MS = 2000
SERVER_TIMEOUT_MS = 4000  # servertimeout sent with each ingest
WINDOW_MS = 7000          # forwarder.ambiguous_window_ms (>= the two)
CLIENT_ID = "kadx-chaos"
CLIENT_SECRET = "chaos-s3cret"
AUDIT_TOKEN = "chaos-audit-token"  # the test's own queries (static)
TOKEN_LIFETIME_S = 10


class Producer(threading.Thread):
    """Writes `events` GamePlay events round-robin over the partitions with
    an idempotent producer (acks=all), through broker restarts."""

    def __init__(self, bootstrap, partitions, events, seconds):
        super().__init__(daemon=True)
        self.seconds = seconds  # spread over this long
        from confluent_kafka import Producer as P
        self.p = P({"bootstrap.servers": bootstrap, "acks": "all",
                    "enable.idempotence": True, "linger.ms": 20,
                    "message.timeout.ms": 600000})
        self.parts = partitions
        self.events = events
        self.error = None
        self.failed = 0
        self.done = threading.Event()

    def _cb(self, err, msg):
        if err is not None:
            self.failed += 1

    def run(self):
        try:
            t0 = time.monotonic()
            for i in range(self.events):
                if i % 1000 == 0:
                    ahead = t0 + self.seconds * i / self.events - \
                        time.monotonic()
                    if ahead > 0:
                        time.sleep(ahead)  # pacing the stream, not a wait
                p = i % self.parts
                while True:
                    try:
                        self.p.produce(TOPIC, tf.event(p, i).encode(),
                                       partition=p, on_delivery=self._cb)
                        break
                    except BufferError:
                        self.p.poll(0.1)
                self.p.poll(0)
            left = self.p.flush(600)
            self.p = None  # closes the producer: no log lines after the run
            if left or self.failed:
                self.error = AssertionError(
                    "producer: %d undelivered, %d failed" % (left,
                                                             self.failed))
        except Exception as e:  # reported by the run
            self.error = e
        finally:
            self.done.set()


class Faults(threading.Thread):
    """Cycles the emulator through fault phases of a few seconds each, with
    a healthy phase between two."""

    def __init__(self, emu, phases, rnd):
        super().__init__(daemon=True)
        self.emu = emu
        self.phases = phases
        self.rnd = rnd
        self.stop_ev = threading.Event()
        self.error = None
        self.ran = {}
        self.late_from = None  # late faults fired when a slow phase began

    def phase(self, name):
        e = self.emu
        if name == "fail":
            e.faults(fail_count=self.rnd.randint(3, 20), fail_status=500,
                     fail_permanent=False)
        elif name == "throttle":
            e.faults(throttle_rps=self.rnd.randint(1, 3), retry_after_s=1)
        elif name == "reset":
            e.faults(reset_count=self.rnd.randint(1, 4))
        elif name == "token":
            # longer than the 8 s between two refreshes: one falls inside
            e.faults(token_down_ms=self.rnd.randint(8500, 12000))
        elif name == "slow":
            # applied 2.5-5 s late: after kadx's request timeout, some
            # after the server timeout too (then not applied: 504)
            if self.late_from is None:
                self.late_from = e.stats()["faults_fired"]["late"]
            e.faults(late_share=0.5, late_min_ms=2500, late_max_ms=5000)
        self.ran[name] = self.ran.get(name, 0) + 1

    def healthy(self, all_off=False):
        """Ends the timed faults; armed counts (fail, reset) stay until
        requests consume them, unless all_off."""
        if all_off:
            self.emu.faults(fail_count=0, throttle_rps=0, reset_count=0,
                            late_share=0, token_down_ms=0)
            return
        self.emu.faults(throttle_rps=0)
        # a slow phase lasts until a request was late (kadx may have been
        # waiting for its group while it ran)
        if self.late_from is not None and \
                self.emu.stats()["faults_fired"]["late"] > self.late_from:
            self.emu.faults(late_share=0)
            self.late_from = None

    def run(self):
        try:
            cycle = []
            while not self.stop_ev.is_set():
                if not cycle:
                    cycle = list(self.phases)
                    self.rnd.shuffle(cycle)
                self.phase(cycle.pop())
                if self.stop_ev.wait(self.rnd.uniform(1.0, 4.0)):
                    break
                self.healthy()
                if self.stop_ev.wait(self.rnd.uniform(1.0, 3.0)):
                    break
        except Exception as e:  # reported by the run
            self.error = e

    def finish(self):
        self.stop_ev.set()
        self.join(30)
        self.healthy(all_off=True)
        if self.error:
            raise self.error


def write_config(path, bootstrap, journal, url):
    cfg = {
        "kafka": {"bootstrap.servers": bootstrap, "group.id": "chaos",
                  "session.timeout.ms": "6000",
                  "heartbeat.interval.ms": "500"},
        "adx": {"ingest_url": url, "request_timeout_ms": REQUEST_TIMEOUT_MS,
                "server_timeout_ms": SERVER_TIMEOUT_MS,
                # tokens from the emulator's AAD-shaped endpoint (10 s
                # lives, emulator flag): refreshes meet the token fault
                "auth": {"method": "client_secret", "tenant_id": "chaos",
                         "client_id": CLIENT_ID,
                         "client_secret": CLIENT_SECRET,
                         "authority_host": url}},
        "routes": [{"topic": TOPIC, "database": "leaderboard",
                    "table": tf.TABLE, "format": "json",
                    "mapping": tf.MAPPING,
                    "meta": {"topic": "kafka_topic",
                             "partition": "kafka_partition",
                             "offset": "kafka_offset",
                             "batch_id": "kadx_batch"},
                    "dedupe_column": "BatchId"}],
        "journal": {"path": journal},
        "forwarder": {"linger_ms": 50, "batch_max_rows": 2000,
                      "retry_initial_ms": 100, "retry_max_ms": 1000,
                      "ambiguous_delay_ms": 200,
                      "ambiguous_window_ms": WINDOW_MS},
        "admin": {"listen": "off"},
    }
    with open(path, "w") as f:
        json.dump(cfg, f)


def end_offsets(cluster, partitions):
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": cluster.bootstrap,
                  "group.id": "chaos-audit"})
    try:
        return {p: c.get_watermark_offsets(TopicPartition(TOPIC, p),
                                           timeout=30)[1]
                for p in range(partitions)}
    finally:
        c.close()


def audit(emu, ends):
    """(lost, duplicated, problems) against Kafka's end offsets."""
    rows = emu.query(
        "GamePlay | summarize c=count(), d=dcount(KafkaOffset), "
        "lo=min(KafkaOffset), hi=max(KafkaOffset) by KafkaPartition")
    got = {r["KafkaPartition"]: r for r in rows}
    lost = dup = 0
    problems = []
    for p, end in ends.items():
        r = got.get(p, {"c": 0, "d": 0, "lo": 0, "hi": -1})
        dup += r["c"] - r["d"]
        lost += end - r["d"]
        if r["d"] and (r["lo"] < 0 or r["hi"] > end - 1):
            problems.append("partition %d: offsets %s..%s outside 0..%d"
                            % (p, r["lo"], r["hi"], end - 1))
    return lost, dup, problems


def main():
    full = os.environ.get("KADX_FULL", "0") == "1"
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=1000000 if full else 40000)
    ap.add_argument("--kills", type=int, default=100 if full else 6)
    ap.add_argument("--broker-restarts", type=int, default=10 if full else 2)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--disk-mb", type=int, default=0)
    ap.add_argument("--faults", default="fail,throttle,reset,slow,token")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=3600 if full else 300)
    args = ap.parse_args()
    seed = args.seed or random.randrange(1, 1 << 30)
    rnd = random.Random(seed)
    print("chaos: seed %d (--seed to repeat)" % seed, flush=True)
    phases = [f for f in args.faults.split(",") if f]
    t_begin = time.monotonic()

    tmp = tempfile.mkdtemp(prefix="kadx-chaos-")
    jdir = os.path.join(tmp, "journal")
    os.mkdir(jdir)
    mounted = False
    cluster = emu = None
    try:
        if args.disk_mb:
            subprocess.run(["mount", "-t", "tmpfs", "-o",
                            "size=%dm" % args.disk_mb, "tmpfs", jdir],
                           check=True)
            mounted = True
        cluster = kafka_cluster.KafkaCluster(nodes=3).start()
        cluster.create_topic(TOPIC, partitions=args.partitions)
        emu = adx.Emulator(auth="token", static_token=AUDIT_TOKEN,
                           client_id=CLIENT_ID, client_secret=CLIENT_SECRET,
                           token_lifetime=TOKEN_LIFETIME_S).start()
        tf.setup_table(emu)
        journal = os.path.join(jdir, "j.db")
        cfg = os.path.join(tmp, "kadx.json")
        write_config(cfg, cluster.bootstrap, journal, emu.url)

        # the stream spans the kills (each instance lives 3-10 s)
        prod = Producer(cluster.bootstrap, args.partitions, args.events,
                        args.kills * 6.5)
        prod.start()
        faults = Faults(emu, phases, rnd)
        faults.start()
        # kills spread over the time the producer needs, and beyond
        restarts_at = set(rnd.sample(range(args.kills),
                                     min(args.broker_restarts, args.kills)))
        broker_restarts = 0
        for n in range(args.kills):
            k = harness.kadx("run", "-c", cfg, name="kadx run %d" % n)
            try:
                # after a SIGKILL the group waits session.timeout.ms (6 s)
                # for the dead member: let each instance work a while
                k.p.wait(rnd.uniform(3.0, 10.0))
                raise SystemExit("kadx exited before its kill:\n" +
                                 k.tail())
            except subprocess.TimeoutExpired:
                pass
            k.kill()
            if n in restarts_at:
                node = rnd.choice(sorted(cluster.nodes))
                cluster.kill(node)
                cluster.start_node(node)
                broker_restarts += 1
        prod.done.wait(args.timeout)
        if prod.error:
            raise prod.error
        k = harness.kadx("run", "-c", cfg, name="kadx run final")
        t_final = time.monotonic()
        k.wait_for("running (group", timeout=120,
                   what="the final instance's running line")
        print("chaos: final instance running after %.1f s"
              % (time.monotonic() - t_final), flush=True)
        ends = end_offsets(cluster, args.partitions)
        want = sum(ends.values())
        # the faults go on while the final instance delivers most of it
        harness.wait_until(lambda: emu.count(tf.TABLE) >= want * 0.7,
                           timeout=args.timeout, interval=0.5,
                           what="70% of the rows under faults")
        faults.finish()

        def delivered():
            if not k.alive():
                raise SystemExit("kadx exited:\n" + k.tail())
            return emu.count(tf.TABLE) >= want
        deadline = max(60.0, args.timeout - (time.monotonic() - t_begin))
        try:
            harness.wait_until(delivered, timeout=deadline, interval=0.5,
                               what="%d rows" % want)
        except AssertionError:
            print(k.tail(40))
        rc_stop = k.stop(timeout=60)
        if rc_stop != 0:
            print("kadx run final exited %s:\n%s" % (rc_stop, k.tail(30)))
        lost, dup, problems = audit(emu, ends)
        chk = subprocess.run([harness.KADX, "recover", journal, "check"],
                             capture_output=True, text=True, timeout=600)
        st = emu.stats()
        fired = st["faults_fired"]
        print()
        print("chaos run: %d events over %d partitions of a 3-node Kafka "
              "4.x cluster, %.0f s" % (want, args.partitions,
                                       time.monotonic() - t_begin))
        for name, v in (
                ("kadx SIGKILLs", args.kills),
                ("broker kill -9 + restart", broker_restarts),
                ("ADX fault phases (%s)" % ",".join(
                    "%s %d" % kv for kv in sorted(faults.ran.items())), ""),
                ("  fired: fail / throttle / reset / late / token",
                 "%s / %s / %s / %s / %s" % (fired.get("fail"),
                                             fired.get("throttle"),
                                             fired.get("reset"),
                                             fired.get("late"),
                                             fired.get("token"))),
                ("journal filesystem", "%d MiB tmpfs" % args.disk_mb
                 if args.disk_mb else "the temp dir's"),
                ("events lost", lost),
                ("events duplicated", dup),
                ("kadx SIGTERM exit", rc_stop),
                ("kadx recover check", "ok" if chk.returncode == 0 else
                 "exit %d" % chk.returncode)):
            print("  %-44s %s" % (name, v))
        for p in problems:
            print("  problem:", p)
        if chk.returncode != 0:
            print(chk.stdout + chk.stderr)
        ok = lost == 0 and dup == 0 and not problems and \
            chk.returncode == 0 and rc_stop == 0
        print("chaos: %s" % ("passed" if ok else "FAILED"))
        return 0 if ok else 1
    finally:
        harness._kill_all()
        if emu is not None:
            emu.stop()
        if cluster is not None:
            cluster.stop()
        if mounted:
            subprocess.run(["umount", "-l", jdir])
        subprocess.run(["rm", "-rf", tmp])


if __name__ == "__main__":
    sys.exit(main())
