"""bench_queued.py - kadx's queued ingestion beside streaming, in one run
(issue 15): the same Kafka backlog forwarded by `kadx run` once per mode,
each into a fresh ADX emulator (queued: with Azurite beside it), and per
mode the throughput (events/s from start to the last row in the table) and
the batch latency from the cut to ADX's yes (for queued: enqueue -> the
Succeeded status report), read from kadx's kadx_batch_latency_seconds
histogram (p50 / p99 are bucket upper bounds). Not part of `meson test`.

    KADX_BIN=build-rel/kadx .venv/bin/python3 tests/bench/bench_queued.py \
        [--events 200000] [--partitions 8] [--inflight 4,16]

The emulator's DM worker polls its queue every 100 ms and applies each blob
at once; real ADX batches queued ingestion for up to 5 minutes (its
batching policy), so queued latency on a real cluster is minutes, not the
sub-second figures here. What this measures is kadx's own cost per queued
batch (four storage requests plus status polls) against one streaming
request.
"""
import argparse
import json
import os
import re
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import adx  # noqa: E402
import azurite  # noqa: E402
import harness  # noqa: E402
import kafka  # noqa: E402

TOPIC = "benchq"


def event(p, i):
    return ('{"playerId":%d,"gameId":%d,"win":%d,"stake":%d,'
            '"eventTime":"2026-11-24T12:00:00.000Z","pad":"%s"}'
            % (i, p, i % 70, i % 5 + 1, "x" * 40))


def metrics(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=10) as r:
        return r.read().decode()


def quantile(buckets, count, q):
    want = q * count
    for le, cum in buckets:
        if cum >= want:
            return le
    return float("inf")


def run_mode(args, tmp, bs, mode, inflight):
    az = None
    extra = []
    if mode != "streaming":
        az = azurite.Azurite().start()
        extra = az.emulator_args()
    emu = adx.Emulator(extra=extra).start()
    k = None
    try:
        emu.setup_gameplay()
        print("%s: emulator %s, %d rows before" % (mode, emu.url,
                                                   emu.count("GamePlay")),
              file=sys.stderr)
        cfg = os.path.join(tmp, "kadx-%s-%d.json" % (mode, inflight))
        with open(cfg, "w") as f:
            json.dump({
                "kafka": {"bootstrap.servers": bs,
                          "group.id": "bench-%s-%d-%d" % (mode, inflight,
                                                          os.getpid())},
                "adx": {"ingest_url": emu.url},
                "routes": [{"topic": TOPIC, "database": "leaderboard",
                            "table": "GamePlay", "format": "json",
                            "mapping": adx.GAMEPLAY_MAPPING,
                            "ingestion": mode}],
                "journal": {"path": os.path.join(
                    tmp, "j-%s-%d.db" % (mode, inflight))},
                "forwarder": {"linger_ms": args.linger,
                              "max_inflight": inflight},
                "admin": {"listen": "127.0.0.1:0"}}, f)
        k = harness.kadx("run", "-c", cfg, name="kadx %s" % mode)
        line = k.wait_for("admin: listening on", timeout=30,
                          what="the admin line")
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
        # from the partitions' assignment (the group join is not the mode's)
        k.wait_for("intake: assigned", timeout=60, what="an assignment")
        t0 = time.monotonic()

        def delivered():
            m = re.search(r"kadx_delivered_events_total\{[^}]*\} (\S+)",
                          metrics(port))
            return m is not None and float(m.group(1)) >= args.events
        harness.wait_until(delivered, timeout=args.timeout, interval=0.05,
                           what="%d events delivered (%s)" % (args.events,
                                                              mode))
        secs = time.monotonic() - t0
        got = emu.count("GamePlay")
        assert got == args.events, "%s: %d rows, want %d" % (mode, got,
                                                            args.events)
        text = metrics(port)
        buckets = []
        for m in re.finditer(r'kadx_batch_latency_seconds_bucket\{route="'
                             r'[^"]*",le="([^"]+)"\} (\d+)', text):
            buckets.append((float(m.group(1)), int(m.group(2))))
        s = float(re.search(r"kadx_batch_latency_seconds_sum\{[^}]*\} (\S+)",
                            text).group(1))
        n = int(re.search(r"kadx_batch_latency_seconds_count\{[^}]*\} (\S+)",
                          text).group(1))
        k.stop()
        k = None
        return {"mode": mode, "inflight": inflight, "secs": secs,
                "rate": args.events / secs, "batches": n,
                "mean_ms": 1000 * s / n if n else 0,
                "p50_ms": 1000 * quantile(buckets, n, 0.5),
                "p99_ms": 1000 * quantile(buckets, n, 0.99)}
    finally:
        if k is not None:
            k.kill()
        emu.stop()
        if az is not None:
            az.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--inflight", default="4,16")
    ap.add_argument("--linger", type=int, default=50)
    ap.add_argument("--modes", default="streaming,queued")
    ap.add_argument("--timeout", type=float, default=600)
    args = ap.parse_args()
    per = args.events // args.partitions
    args.events = per * args.partitions
    cl = kafka.cluster(topics=[(TOPIC, args.partitions)])
    tmp = tempfile.mkdtemp(prefix="kadx-bench-queued-")
    rows = []
    try:
        for p in range(args.partitions):
            kafka.produce(cl.bootstrap, TOPIC, p,
                          (event(p, i) for i in range(per)))
        for inflight in [int(x) for x in args.inflight.split(",")]:
            for mode in args.modes.split(","):
                rows.append(run_mode(args, tmp, cl.bootstrap, mode, inflight))
                print("done: %s" % rows[-1], file=sys.stderr)
    finally:
        cl.stop()
    print("| mode | max_inflight | events | seconds | events/s | batches | "
          "batch latency mean / p50 / p99 (ms) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print("| %s | %d | %d | %.1f | %.0f | %d | %.0f / %.0f / %.0f |" % (
            r["mode"], r["inflight"], args.events, r["secs"], r["rate"],
            r["batches"], r["mean_ms"], r["p50_ms"], r["p99_ms"]))


if __name__ == "__main__":
    main()
