#!/usr/bin/env python3
"""bench_admin_flood.py - does a flood of admin requests slow delivery?
(issue 18). In one run, alternately, the same delivery of N events
(produced before kadx starts: Kafka mock cluster -> `kadx run` -> ADX
emulator), each time with a fresh mock, emulator and journal:

  quiet: nothing else talks to kadx;
  flood: `wrk -t2 -c C` hammers GET /status on the admin port the whole
         time (admin.max_connections and max_requests_per_s at their
         defaults, 64 and 20/s, unless --max-connections/--rate).

Prints events/s from kadx's start to the last row in ADX for each run, the
flood/quiet ratio of the medians, and what wrk got (answers, non-2xx).

usage: bench_admin_flood.py [--kadx PATH] [--events N] [--partitions P]
                            [--connections C] [--runs R]
                            [--max-connections M] [--rate R]
"""
import argparse
import json
import os
import re
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import adx  # noqa: E402
import harness  # noqa: E402
import kafka  # noqa: E402
import test_forwarder as tf  # noqa: E402


def one_run(args, flood, tmp):
    mock = kafka.MockCluster(topics=[(tf.TOPIC, args.partitions)])
    emu = adx.Emulator().start()
    k = w = None
    try:
        tf.setup_table(emu)
        parts = list(range(args.partitions))
        per = args.events // args.partitions
        journal = os.path.join(tmp, "j-%d.db" % time.monotonic_ns())
        cfg = os.path.join(tmp, "kadx.json")
        tf.write_config(cfg, mock.bootstrap, "g-flood-%d" % time.monotonic_ns(),
                        journal, emu.url,
                        forwarder={"batch_max_rows": 10000, "linger_ms": 20})
        with open(cfg) as f:
            c = json.load(f)
        c["admin"] = {"listen": "127.0.0.1:0"}
        if args.max_connections:
            c["admin"]["max_connections"] = args.max_connections
        if args.rate:
            c["admin"]["max_requests_per_s"] = args.rate
        with open(cfg, "w") as f:
            json.dump(c, f)
        tf.produce(mock.bootstrap, parts, 0, per)
        t0 = time.monotonic()
        k = harness.kadx("run", "-c", cfg, name="kadx run")
        line = k.wait_for("admin: listening on", timeout=60)
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
        if flood:
            w = harness.Proc(["wrk", "-t", "2", "-c", str(args.connections),
                              "-d", "600s", "--timeout", "5s",
                              "http://127.0.0.1:%d/status" % port],
                             name="wrk")
        harness.wait_until(lambda: emu.count(tf.TABLE) >= per * len(parts),
                           timeout=900, interval=0.1, what="all rows")
        took = time.monotonic() - t0
        wrk_out = ""
        if w is not None:
            w.signal(2)  # SIGINT: wrk prints its summary
            w.wait(30)
            wrk_out = "\n".join(w.out)
        k.stop()
        tf.audit(emu, parts, per)
        return per * len(parts) / took, wrk_out
    finally:
        if w is not None:
            w.kill()
        if k is not None:
            k.kill()
        emu.stop()
        mock.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kadx", default=os.environ.get("KADX_BIN", "kadx"))
    ap.add_argument("--events", type=int, default=200000)
    ap.add_argument("--partitions", type=int, default=8)
    ap.add_argument("--connections", type=int, default=128)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--max-connections", type=int, default=0)
    ap.add_argument("--rate", type=int, default=0)
    args = ap.parse_args()
    harness.KADX = os.path.abspath(args.kadx)
    os.environ["KADX_BIN"] = harness.KADX
    quiet, flood = [], []
    with tempfile.TemporaryDirectory(prefix="kadx-flood-") as tmp:
        for i in range(args.runs):
            r, _ = one_run(args, False, tmp)
            quiet.append(r)
            print("run %d quiet: %8.0f events/s" % (i + 1, r), flush=True)
            r, out = one_run(args, True, tmp)
            flood.append(r)
            m = re.search(r"(\d+) requests in ([\d.]+)s", out)
            n2 = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
            print("run %d flood: %8.0f events/s   wrk: %s answers in %ss, "
                  "%s non-2xx (503: over max_connections)" % (
                      i + 1, r, m.group(1) if m else "?",
                      m.group(2) if m else "?", n2.group(1) if n2 else 0),
                  flush=True)
    q, f = statistics.median(quiet), statistics.median(flood)
    print("median quiet %.0f events/s, flood %.0f events/s: flood/quiet = "
          "%.2f" % (q, f, f / q))


if __name__ == "__main__":
    main()
