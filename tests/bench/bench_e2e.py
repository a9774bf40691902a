#!/usr/bin/env python3
"""bench_e2e.py - kadx end to end (DESIGN.md "Performance", measure (d)):
Kafka mock cluster -> `kadx run` (journal fsync'd, synchronous=FULL) ->
ADX emulator, in one run on this machine, beside each stage's own limit:

  (a) librdkafka alone consuming the test topic   (bench_intake, raw part)
  (b) the journal alone appending                  (bench_journal, cycle)
  (c) the emulator alone accepting ingest          (bench_emulator)
  (d) kadx end to end, the emulator counting rows (--count-only, as in
      (c) count-only): events/s from the partition assignment to the
      last row in ADX, peak RSS of `kadx run` (VmHWM); (d) / min(stages)
      leaves out (c) storing, which (d) does not run;
  then latency from produce to ADX acknowledgement (ingestion_time() -
  EventTime, percentiles) at fixed offered rates, with `kadx produce
  --rate R` as the producer.

--broker real runs every Kafka-facing part against a real Apache Kafka
4.x broker (tests/kafka: one combined node, a fresh one for each part)
instead of librdkafka's mock cluster. Beside each kadx run the table gives
its peak RSS and its CPU seconds (user + sys) per million events.

usage: bench_e2e.py [--kadx PATH] [--bench-dir DIR] [--events N]
                    [--broker mock|real]
                    [--partitions P] [--rates R1,R2] [--seconds S]
                    [--linger MS] [--kafka K=V ...] [--batch-bytes B]
                    [--skip-stages] [--skip-backlog]
                    [--backlog [--prefetch default,0]]
Build without sanitizers: meson setup build-rel -Dbuildtype=release &&
ninja -C build-rel && python3 tests/bench/bench_e2e.py --kadx
build-rel/kadx --bench-dir build-rel/tests/bench. `ninja -C build-rel
bench_e2e` runs it with those paths.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import adx  # noqa: E402
import harness  # noqa: E402
import kafka  # noqa: E402

sys.path.insert(0, os.path.join(HERE, "..", "kafka"))
BROKER = ["mock"]  # --broker


class RealCluster:
    """A fresh single-node Apache Kafka 4.x with the topic TOPIC (imported
    only for --broker real: the launcher needs the jars of .ci/install-deps)."""

    def __init__(self, partitions):
        import kafka_cluster
        # C1 only, as in the tests: a C2 warm-up competes with kadx for the
        # two cores for about a minute (measured: p99 650 ms instead of 52 ms
        # at 1k events/s in the first 12 s)
        self.c = kafka_cluster.KafkaCluster(nodes=1, quick_jit=True,
                                            heap="1g").start()
        self.c.create_topic(TOPIC, partitions=partitions)
        self.bootstrap = self.c.bootstrap

    def stop(self):
        self.c.stop()


def new_cluster(partitions):
    if BROKER[0] == "real":
        return RealCluster(partitions)
    return kafka.MockCluster(topics=[(TOPIC, partitions)])


def cpu_seconds(pid):
    """user + sys CPU seconds of a live process (/proc/PID/stat)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / \
            os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return float("nan")

def thread_cpu(pid):
    """{thread group: CPU s} of a live kadx process: the loop (the main
    thread), the journal writer, librdkafka's threads (rdk:*) and the
    rest (libuv's pool: body building, file work; the watchdog)."""
    out = {}
    tck = os.sysconf("SC_CLK_TCK")
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                raw = f.read()
        except OSError:
            continue
        comm = raw[raw.index("(") + 1:raw.rindex(")")]
        fields = raw.rsplit(")", 1)[1].split()
        if int(tid) == pid:
            group = "loop"
        elif comm == "kadx-journal":
            group = "journal writer"
        elif comm.startswith("rdk:"):
            group = "librdkafka"
        else:
            group = "pool and other"
        out[group] = out.get(group, 0.0) + \
            (int(fields[11]) + int(fields[12])) / tck
    return out


def peer_pids(cluster):
    """The PIDs of the Kafka side of a run: the mock cluster's process or
    the real broker's JVMs."""
    if isinstance(cluster, RealCluster):
        return [n.proc.pid for n in cluster.c.nodes.values() if n.proc]
    return [cluster.proc.pid]


TOPIC = "bench"
BATCH_BYTES = [1024 * 1024]  # --batch-bytes (the config default)


def gameplay_lines(n, size_hint=150):
    """n GamePlay events (~150 bytes each, the seed's shape)."""
    pad = "x" * max(0, size_hint - 110)
    for i in range(n):
        yield ('{"playerId":%d,"gameId":%d,"win":%d,"stake":%d,'
               '"eventTime":"2026-11-24T12:00:00.000Z","note":"%s"}'
               % (i % 100000, i % 977, (i % 7) * 10, i % 5 + 1, pad))


def kcat_produce(bootstrap, n, partitions):
    """Produces n events, n/partitions to each partition, one kcat per
    partition, all at once (acks=all). Returns the seconds it took."""
    paths = []
    per = n // partitions
    it = gameplay_lines(n)
    for p in range(partitions):
        with tempfile.NamedTemporaryFile("w", prefix="kadx-bench-",
                                         delete=False) as f:
            for _ in range(per if p < partitions - 1 else
                           n - per * (partitions - 1)):
                f.write(next(it))
                f.write("\n")
            paths.append(f.name)
    try:
        t0 = time.monotonic()
        procs = [subprocess.Popen(
            [kafka.KCAT, "-P", "-b", bootstrap, "-t", TOPIC, "-p", str(p),
             "-X", "acks=all", "-X", "linger.ms=20", "-l", path],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            for p, path in enumerate(paths)]
        for pr in procs:
            _, err = pr.communicate(timeout=600)
            if pr.returncode != 0:
                raise SystemExit("kcat -P failed: %s" % err.decode())
        return time.monotonic() - t0
    finally:
        for path in paths:
            os.unlink(path)


def rss_peak_kib(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1


def write_config(path, bootstrap, group, journal, url, extra_fw=None,
                 extra_kafka=None, extra_intake=None, admin="off"):
    kprops = {"bootstrap.servers": bootstrap, "group.id": group,
              "session.timeout.ms": "6000", "heartbeat.interval.ms": "500"}
    kprops.update(extra_kafka or {})
    cfg = {
        "kafka": kprops,
        "adx": {"ingest_url": url, "auth": {"method": "none"}},
        "routes": [{"topic": TOPIC, "database": "leaderboard",
                    "table": "GamePlay", "format": "json",
                    "mapping": "gameplay_json_mapping"}],
        "journal": {"path": journal},
        "forwarder": dict({"batch_max_bytes": BATCH_BYTES[0],
                           "batch_max_rows": 100000, "linger_ms": 20,
                           "max_inflight": 4}, **(extra_fw or {})),
        "admin": {"listen": admin},
    }
    if extra_intake:
        cfg["intake"] = extra_intake
    with open(path, "w") as f:
        json.dump(cfg, f)


def run_stage(cmd, pattern, what):
    """Runs a stage benchmark; returns (the first float matched by
    pattern in its output, the whole output)."""
    try:
        p = subprocess.run(cmd, capture_output=True, timeout=600, text=True)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, "%s: %s" % (what, e)
    out = p.stdout + p.stderr
    m = re.search(pattern, out, re.M)
    return (float(m.group(1)) if m and m.group(1) else None), out


def e2e_throughput(args, tmp):
    mock = new_cluster(args.partitions)
    emu = adx.Emulator(count_only=True).start()
    try:
        emu.setup_gameplay()
        t_prod = kcat_produce(mock.bootstrap, args.events, args.partitions)
        cfg = os.path.join(tmp, "tp.json")
        port = harness.free_port()
        write_config(cfg, mock.bootstrap, "bench-tp",
                     os.path.join(tmp, "tp.db"), emu.url, None, args.kprops,
                     admin="127.0.0.1:%d" % port)
        peers = {"emulator": [emu.proc.pid], "Kafka": peer_pids(mock)}
        peer_cpu0 = {n: sum(cpu_seconds(p) for p in ps)
                     for n, ps in peers.items()}
        k = harness.kadx("run", "-c", cfg, name="kadx run")
        t_start = time.monotonic()
        k.wait_for("assigned", timeout=60, what="partitions assigned")
        t_assigned = time.monotonic()
        ph0 = scrape_phases(port)
        # CPU at the assignment: "cores busy" counts from here (start-up
        # and the group join are mostly waiting)
        busy0 = cpu_seconds(k.pid) + sum(cpu_seconds(p) for ps in
                                         peers.values() for p in ps)
        t_first = None
        peak = 0
        while True:
            rows = emu.stats()["rows_accepted"]
            now = time.monotonic()
            peak = max(peak, rss_peak_kib(k.pid))
            if rows > 0 and t_first is None:
                t_first = now
            if rows >= args.events:
                break
            if not k.alive():
                raise SystemExit("kadx exited:\n" + k.tail())
            if now - t_start > 600:
                raise SystemExit("timed out at %d rows" % rows)
            time.sleep(0.05)  # sampling interval of the measurement
        t_end = time.monotonic()
        peak = max(peak, rss_peak_kib(k.pid))
        cpu = cpu_seconds(k.pid)
        threads = thread_cpu(k.pid)
        peer_cpu = {n: sum(cpu_seconds(p) for p in ps) - peer_cpu0[n]
                    for n, ps in peers.items()}
        busy = (cpu + sum(cpu_seconds(p) for ps in peers.values()
                          for p in ps) - busy0) / (t_end - t_assigned)
        phases = phase_table(ph0, scrape_phases(port))
        k.stop()
        return {"events": args.events, "produce_s": t_prod, "busy": busy,
                "threads": threads, "peers": peer_cpu,
                "cpu_per_m": cpu * 1e6 / args.events,
                "first_row_s": t_first - t_start,
                "assigned_first_s": t_first - t_assigned,
                "rate": args.events / max(t_end - t_first, 1e-9),
                "rate_assigned": args.events / (t_end - t_assigned),
                "rate_incl_start": args.events / (t_end - t_start),
                "rss_kib": peak, "phases": phases}
    finally:
        emu.stop()
        mock.stop()


def run_until_delivered(k, emu, base, want, t_start, what):
    """Samples kadx run k until the emulator holds base + want rows;
    returns (t_first_row, t_end, peak RSS KiB, CPU s)."""
    t_first = None
    peak = 0
    while True:
        rows = emu.stats()["rows_accepted"] - base
        now = time.monotonic()
        peak = max(peak, rss_peak_kib(k.pid))
        if rows > 0 and t_first is None:
            t_first = now
        if rows >= want:
            break
        if not k.alive():
            raise SystemExit("%s: kadx exited:\n%s" % (what, k.tail()))
        if now - t_start > 600:
            raise SystemExit("%s: timed out at %d rows" % (what, rows))
        time.sleep(0.05)  # sampling interval of the measurement
    peak = max(peak, rss_peak_kib(k.pid))
    return t_first, time.monotonic(), peak, cpu_seconds(k.pid)


def backlog_catchup(args, tmp):
    """--backlog: the topic is produced first (a backlog of --events over
    --partitions), then `kadx run` catches up from the start, once with
    intake.prefetch_bytes at its default and once with prefetch unbounded
    (0: librdkafka's per-partition limits, what kadx did before), each in
    its own group, one after the other on the same cluster and emulator:
    peak RSS, events/s from assignment to the last row in ADX, CPU s/1M."""
    cluster = new_cluster(args.partitions)
    emu = adx.Emulator(count_only=True).start()
    out = []
    try:
        emu.setup_gameplay()
        kcat_produce(cluster.bootstrap, args.events, args.partitions)
        for i, pb in enumerate(args.prefetch.split(",")):
            if pb == "default":
                label, intake = "prefetch_bytes default", None
            else:
                label = "prefetch_bytes %s%s" % (
                    pb, " (unbounded)" if int(pb) == 0 else "")
                intake = {"prefetch_bytes": int(pb)}
            tag = "run%d" % i
            cfg = os.path.join(tmp, "backlog-%s.json" % tag)
            write_config(cfg, cluster.bootstrap, "bench-backlog-" + tag,
                         os.path.join(tmp, "backlog-%s.db" % tag), emu.url,
                         None, args.kprops, intake)
            base = emu.stats()["rows_accepted"]
            k = harness.kadx("run", "-c", cfg, name="kadx run " + tag)
            t_start = time.monotonic()
            k.wait_for("assigned", timeout=60, what="partitions assigned")
            t_assigned = time.monotonic()
            _, t_end, peak, cpu = run_until_delivered(
                k, emu, base, args.events, t_start, tag)
            plan = [l for l in k.lines() if "prefetch budget" in l]
            k.stop()
            out.append({"label": label, "rss_kib": peak,
                        "rate": args.events / (t_end - t_assigned),
                        "cpu_per_m": cpu * 1e6 / args.events,
                        "plan": plan[0] if plan else ""})
        return out
    finally:
        emu.stop()
        cluster.stop()


def print_backlog(args, rows):
    print()
    print("backlog catch-up: %d events already in %d partitions (Kafka %s)"
          % (args.events, args.partitions,
             "4.x broker" if args.broker == "real" else "mock cluster"))
    print("%-36s %14s %14s %12s" % ("kadx run", "events/s", "peak RSS MiB",
                                    "CPU s/1M"))
    for r in rows:
        print("%-36s %14.0f %14.1f %12.2f" % (r["label"], r["rate"],
                                              r["rss_kib"] / 1024.0,
                                              r["cpu_per_m"]))
    if len(rows) >= 2 and rows[-1]["rate"] > 0:
        for r in rows[:-1]:
            print("%-36s %14.2f" % ("throughput / last row's",
                                    r["rate"] / rows[-1]["rate"]))
    if rows and rows[0]["plan"]:
        print("  " + rows[0]["plan"].split("intake: ", 1)[-1])


def forward_backlog(args, tmp):
    """(e) the forwarder alone: kadx journals the topic while ADX refuses
    everything (503), is killed with SIGKILL, and restarted against a
    healthy ADX with nothing new in Kafka: time to the first row after the
    restart, and the journal -> ADX rate, and the RSS of that process."""
    mock = new_cluster(args.partitions)
    emu = adx.Emulator(count_only=True).start()
    try:
        emu.setup_gameplay()
        emu.faults(fail_count=1000000000, fail_status=503,
                   fail_permanent=False)
        kcat_produce(mock.bootstrap, args.events, args.partitions)
        cfg = os.path.join(tmp, "bl.json")
        write_config(cfg, mock.bootstrap, "bench-bl",
                     os.path.join(tmp, "bl.db"), emu.url,
                     {"retry_initial_ms": 200, "retry_max_ms": 1000},
                     args.kprops)
        k = harness.kadx("run", "-c", cfg, name="kadx run 1")
        # journaled and committed: the settled file names every partition
        # at its end offset
        want = args.events

        def settled():
            try:
                with open(os.path.join(tmp, "bl.db.settled")) as f:
                    return sum(int(l.split("\t")[2]) + 1 for l in f
                               if l.strip()) >= want
            except (OSError, ValueError, IndexError):
                return False
        harness.wait_until(settled, timeout=600, interval=0.2,
                           what="the topic journaled and settled")
        k.kill()
        emu.faults(fail_count=0)
        k = harness.kadx("run", "-c", cfg, name="kadx run 2")
        t0 = time.monotonic()
        t_first = None
        peak = 0
        while True:
            rows = emu.stats()["rows_accepted"]
            now = time.monotonic()
            peak = max(peak, rss_peak_kib(k.pid))
            if rows > 0 and t_first is None:
                t_first = now
            if rows >= args.events:
                break
            if now - t0 > 600 or not k.alive():
                raise SystemExit("backlog: %d rows\n%s" % (rows, k.tail()))
            time.sleep(0.02)  # sampling interval of the measurement
        t_end = time.monotonic()
        peak = max(peak, rss_peak_kib(k.pid))
        cpu = cpu_seconds(k.pid)
        k.stop()
        return {"first_s": t_first - t0, "cpu_per_m": cpu * 1e6 / want,
                "rate": args.events / (t_end - t0), "rss_kib": peak}
    finally:
        emu.stop()
        mock.stop()


PHASES = ("fetch", "queue", "append", "commit", "settle", "linger", "cut",
          "build", "mark_sent", "ingest", "mark_done")


def scrape_phases(port):
    """kadx_phase_seconds from /metrics: {phase: ([(le, cumulative)], sum,
    count)} (gateway/phases.h; FORWARDER.md "Phases")."""
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=10) as r:
        text = r.read().decode()
    out = {}
    for line in text.splitlines():
        m = re.match(r'kadx_phase_seconds_(bucket|sum|count)\{phase="(\w+)"'
                     r'(?:,le="([^"]+)")?\} (\S+)$', line)
        if not m:
            continue
        kind, ph, le, v = m.groups()
        b, sm, n = out.get(ph, ([], 0.0, 0))
        if kind == "bucket":
            b.append((float(le), float(v)))
        elif kind == "sum":
            sm = float(v)
        else:
            n = int(float(v))
        out[ph] = (b, sm, n)
    return out


def hist_quantile(buckets, q):
    """Prometheus' histogram_quantile: linear within the bucket."""
    total = buckets[-1][1] if buckets else 0
    if total <= 0:
        return None
    want = q * total
    lo, prev = 0.0, 0.0
    for le, cum in buckets:
        if cum >= want:
            if le == float("inf"):
                return lo
            if cum == prev:
                return le
            return lo + (le - lo) * (want - prev) / (cum - prev)
        lo, prev = le, cum
    return lo


def phase_table(before, after):
    """Per phase, over the window between two scrapes: count, mean, p50,
    p99 (ms)."""
    rows = []
    for ph in PHASES:
        b0, s0, n0 = before.get(ph, ([], 0.0, 0))
        b1, s1, n1 = after.get(ph, ([], 0.0, 0))
        n = n1 - n0
        d0 = dict(b0)
        buckets = [(le, c - d0.get(le, 0.0)) for le, c in b1]
        if n <= 0:
            rows.append((ph, 0, None, None, None))
            continue
        rows.append((ph, n, (s1 - s0) * 1000.0 / n,
                     hist_quantile(buckets, 0.5) * 1000.0,
                     hist_quantile(buckets, 0.99) * 1000.0))
    return rows


def e2e_latency(args, tmp, rate):
    mock = new_cluster(args.partitions)
    emu = adx.Emulator().start()
    try:
        emu.setup_gameplay()
        cfg = os.path.join(tmp, "lat%d.json" % rate)
        port = harness.free_port()
        write_config(cfg, mock.bootstrap, "bench-lat%d" % rate,
                     os.path.join(tmp, "lat%d.db" % rate), emu.url,
                     {"linger_ms": args.linger}, args.kprops,
                     admin="127.0.0.1:%d" % port)
        k = harness.kadx("run", "-c", cfg, name="kadx run")
        k.wait_for("assigned", timeout=30, what="partitions assigned")
        # the first --warmup seconds are produced and delivered but left out
        # of the percentiles: a fresh broker (a JVM compiling its code, new
        # partition leaders) answers slowly at first
        n = rate * (args.seconds + args.warmup)
        t_prod = time.time()
        prod = harness.kadx("produce", "-t", TOPIC, "-b", mock.bootstrap,
                            "-l", "-e", n, "--rate", rate, name="produce")
        # the phases over the same window as the percentiles: from the
        # warm-up's rows in ADX to the last row
        harness.wait_until(
            lambda: emu.count("GamePlay") >= rate * args.warmup,
            timeout=args.warmup * 3 + 60, what="the warm-up's rows")
        ph0 = scrape_phases(port)
        if prod.wait((args.seconds + args.warmup) * 3 + 60) != 0:
            raise SystemExit("kadx produce failed:\n" + prod.tail())
        harness.wait_until(lambda: emu.count("GamePlay") >= n,
                           timeout=120, what="%d rows" % n)
        peak = rss_peak_kib(k.pid)
        cpu = cpu_seconds(k.pid)
        phases = phase_table(ph0, scrape_phases(port))
        k.stop()
        since = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(
            t_prod + args.warmup)) + ".%03dZ" % (
            int((t_prod + args.warmup) * 1000) % 1000)
        rows = emu.query(
            "GamePlay | where EventTime >= datetime(%s) "
            "| extend l = (ingestion_time() - EventTime) / 1ms "
            "| summarize p50=percentile(l, 50), p90=percentile(l, 90), "
            "p99=percentile(l, 99), mx=max(l), n=count()" % since)
        r = rows[0]
        return {"rate": rate, "events": r["n"], "p50": r["p50"],
                "p90": r["p90"],
                "p99": r["p99"], "max": r["mx"], "rss_kib": peak,
                "cpu_per_m": cpu * 1e6 / n, "phases": phases}
    finally:
        emu.stop()
        mock.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kadx", default=os.environ.get("KADX_BIN", "kadx"))
    ap.add_argument("--bench-dir", default=None)
    ap.add_argument("--events", type=int, default=1000000)
    ap.add_argument("--partitions", type=int, default=32)
    ap.add_argument("--rates", default="10000,100000")
    ap.add_argument("--seconds", type=int, default=10)
    ap.add_argument("--linger", type=int, default=20)
    ap.add_argument("--warmup", type=int, default=2,
                    help="latency runs: seconds produced before measuring")
    ap.add_argument("--broker", choices=("mock", "real"), default="mock",
                    help="librdkafka's mock cluster, or Apache Kafka 4.x")
    ap.add_argument("--skip-stages", action="store_true")
    ap.add_argument("--skip-backlog", action="store_true")
    ap.add_argument("--backlog", action="store_true",
                    help="only the backlog catch-up, with the prefetch "
                    "budget and unbounded (peak RSS, events/s, CPU)")
    ap.add_argument("--prefetch", default="default,0",
                    help="--backlog: intake.prefetch_bytes of each run, "
                    "'default' or bytes (0: unbounded); the last one is "
                    "the reference of the ratios")
    ap.add_argument("--batch-bytes", type=int, default=BATCH_BYTES[0],
                    help="forwarder.batch_max_bytes for kadx run")
    ap.add_argument("--kafka", action="append", default=[],
                    help="extra librdkafka property K=V for kadx run")
    args = ap.parse_args()
    args.kprops = dict(kv.split("=", 1) for kv in args.kafka)
    BATCH_BYTES[0] = args.batch_bytes
    BROKER[0] = args.broker
    harness.KADX = os.path.abspath(args.kadx)
    bench_dir = args.bench_dir or os.path.dirname(harness.KADX) + \
        "/tests/bench"
    if args.backlog:
        with tempfile.TemporaryDirectory(prefix="kadx-bench-") as tmp:
            print_backlog(args, backlog_catchup(args, tmp))
        return
    with tempfile.TemporaryDirectory(prefix="kadx-bench-") as tmp:
        stages = []
        if not args.skip_stages:
            cmd = [os.path.join(bench_dir, "bench_intake"),
                   "--messages", str(args.events),
                   "--partitions", str(args.partitions), "--dir", tmp]
            real = new_cluster(args.partitions) \
                if args.broker == "real" else None
            try:
                if real is not None:
                    cmd += ["--bootstrap", real.bootstrap]
                _, out = run_stage(cmd, r"()", "intake")
            finally:
                if real is not None:
                    real.stop()
            m = re.search(r"\(a\) librdkafka consume \(raw\)\s+[\d.]+\s+(\d+)",
                          out)
            stages.append(("(a) librdkafka consume alone",
                           float(m.group(1)) if m else None))
            m = re.search(r"\(b\) kadx intake: consumed -> commit acked"
                          r"\s+[\d.]+\s+(\d+)", out)
            stages.append(("(b) intake alone: Kafka -> journal, committed",
                           float(m.group(1)) if m else None))
            v, _ = run_stage([os.path.join(bench_dir, "bench_journal"), tmp,
                              "2", "cycle"],
                             r"^\s*(\d+) events/s appended", "journal")
            stages.append(("(b) journal alone: append+cut+deliver cycle", v))
            _, out = run_stage([os.path.join(bench_dir, "bench_emulator"),
                                "--kadx", harness.KADX, "--seconds", "3"],
                               r"()", "emulator")
            for mode in ("count-only", "storing"):
                m = re.search(r"\|\s*%s\s*\|\s*\d+\s*\|\s*\d+\s*\|"
                              r"\s*\d+\s*\|\s*(\d+)" % mode, out)
                # (d) runs the emulator counting rows: storing is shown,
                # but it is not a stage of (d)
                stages.append(("(c) emulator ingest alone (count-only)"
                               if mode == "count-only" else
                               "(c) emulator alone, storing (not in (d))",
                               float(m.group(1)) if m else None))
        tp = e2e_throughput(args, tmp)
        bl = forward_backlog(args, tmp) if not args.skip_backlog else None
        lat = [e2e_latency(args, tmp, int(r))
               for r in args.rates.split(",") if r]
    print()
    print("kadx end to end (Kafka %s -> kadx run, journal FULL -> ADX "
          "emulator), %d events, %d partitions, batches <= %d bytes"
          % ("4.x broker" if args.broker == "real" else "mock cluster",
             tp["events"], args.partitions, args.batch_bytes))
    print("%-44s %14s" % ("stage", "events/s"))
    for name, v in stages:
        print("%-44s %14s" % (name, "%.0f" % v if v else "n/a"))
    print("%-44s %14.0f" % ("(d) kadx end to end (assignment -> last row)",
                            tp["rate_assigned"]))
    print("%-44s %14.0f" % ("    ... first row in ADX -> last row",
                            tp["rate"]))
    print("%-44s %14.3f" % ("    assignment -> first row in ADX (s)",
                            tp["assigned_first_s"]))
    print("%-44s %14.0f" % ("    ... including start-up and group join",
                            tp["rate_incl_start"]))
    print("%-44s %14.1f" % ("    peak RSS of kadx run (MiB)",
                            tp["rss_kib"] / 1024.0))
    print("%-44s %14.2f" % ("    CPU s (user+sys) per 1M events",
                            tp["cpu_per_m"]))
    per_m = 1e6 / tp["events"]
    for name, v in sorted(tp["threads"].items()):
        print("%-44s %14.2f" % ("      of which %s" % name, v * per_m))
    for name, v in tp["peers"].items():
        print("%-44s %14.2f" % ("    CPU s per 1M events of the %s" % name,
                                v * per_m))
    print("%-44s %14.2f" % ("    cores busy (kadx + peers, from assignment)",
                            tp["busy"]))
    known = [v for name, v in stages if v and "not in (d)" not in name]
    if known:
        print("%-44s %14.2f" % ("    (d) / min(stages of (d))",
                                tp["rate_assigned"] / min(known)))
    print_phases("phases of run (d), per batch, from the assignment to "
                 "the last row", tp["phases"])
    if bl:
        print("%-44s %14.0f" % ("(e) forwarder alone: journal -> ADX after "
                                "kill -9", bl["rate"]))
        print("%-44s %14.2f" % ("    first row in ADX after the restart (s)",
                                bl["first_s"]))
        print("%-44s %14.1f" % ("    peak RSS of that kadx run (MiB)",
                                bl["rss_kib"] / 1024.0))
        print("%-44s %14.2f" % ("    CPU s (user+sys) per 1M events",
                                bl["cpu_per_m"]))
    print()
    print("latency produce -> ADX ack (ingestion_time() - EventTime), "
          "linger %d ms, after %d s of warm-up at the same rate"
          % (args.linger, args.warmup))
    print("%12s %10s %10s %10s %10s %10s %10s %10s" % (
        "offered/s", "events", "p50 ms", "p90 ms", "p99 ms", "max ms",
        "RSS MiB", "CPU s/1M"))
    for r in lat:
        print("%12d %10d %10.1f %10.1f %10.1f %10.1f %10.1f %10.2f" % (
            r["rate"], r["events"], r["p50"], r["p90"], r["p99"], r["max"],
            r["rss_kib"] / 1024.0, r["cpu_per_m"]))
    for r in lat:
        print_phases("phases at %d events/s, per batch, over the same "
                     "window" % r["rate"], r["phases"])


def print_phases(title, rows):
    print()
    print("%s (kadx_phase_seconds on /metrics; p50/p99 interpolated in its "
          "buckets)" % title)
    print("%-10s %8s %9s %9s %9s" % ("phase", "batches", "mean ms",
                                     "p50 ms", "p99 ms"))
    for ph, n, mean, p50, p99 in rows:
        if n == 0:
            print("%-10s %8d %9s %9s %9s" % (ph, 0, "-", "-", "-"))
        else:
            print("%-10s %8d %9.2f %9.2f %9.2f" % (ph, n, mean, p50, p99))


if __name__ == "__main__":
    main()
