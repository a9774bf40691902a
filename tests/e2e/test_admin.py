"""Admin HTTP API (issue 7) on a real `kadx run` (Kafka mock cluster ->
kadx -> ADX emulator).

- Every endpoint, and every POST with and without the bearer token.
- /metrics checked by the strict exposition-format parser (promparse.py).
- Garbage bytes, a 1 MB header, a request that stops half way (408 after
  the read timeout), 404 and 405: JSON errors, and the server keeps serving.
- Pause/resume of a route and of the whole gateway; a dead letter listed,
  requeued and dead again.
- Replay: deliver 10k events, clear the table, POST /replay by range -> all
  back exactly once; clear again, replay half by range, then POST /replay
  with "mode": "missing" -> only the missing half is sent.
Exactly-once is audited through the KafkaPartition / KafkaOffset metadata
columns (see test_forwarder.py).
"""
import http.client
import json
import re
import socket
import time
import unittest

import harness
import kafka
import promparse
import test_forwarder as tf
from harness import wait_until

TOKEN = "admin-e2e-token-5678"


class AdminBase(tf.ForwarderBase):
    partitions = 4

    def start_all(self, n, forwarder=None):
        self.emu = self.start_emulator()
        tf.setup_table(self.emu)
        tf.write_config(self.cfg, self.bs, "g-admin-%d" % id(self),
                        self.journal, self.emu.url, forwarder=forwarder)
        with open(self.cfg) as f:
            cfg = json.load(f)
        cfg["admin"] = {"listen": "127.0.0.1:0", "token": TOKEN}
        with open(self.cfg, "w") as f:
            json.dump(cfg, f)
        tf.produce(self.bs, self.parts, 0, n)
        self.k = self.start_kadx()
        line = self.k.wait_for("admin: listening on", timeout=30,
                               what="the admin listening line")
        self.port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))

    def call(self, method, path, body=None, token=None, headers=None):
        """Returns (status, headers dict lower-cased, parsed JSON or text)."""
        c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=20)
        h = dict(headers or {})
        if token is not None:
            h["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            data = body if isinstance(body, (bytes, str)) else \
                json.dumps(body)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read().decode()
        hdrs = {k.lower(): v for k, v in r.getheaders()}
        c.close()
        if hdrs.get("content-type", "").startswith("application/json"):
            return r.status, hdrs, json.loads(raw)
        return r.status, hdrs, raw

    def get(self, path):
        st, _, body = self.call("GET", path)
        self.assertEqual(st, 200, body)
        return body

    def post(self, path, body=None, status=200):
        st, _, resp = self.call("POST", path, body if body is not None
                                else {}, token=TOKEN)
        self.assertEqual(st, status, resp)
        return resp

    def route_parts(self):
        return self.get("/status")["routes"][0]["partitions"]


class AdminCase(AdminBase):

    def test_endpoints_token_and_bad_requests(self):
        n = 1000
        self.start_all(n)
        self.wait_count(self.emu, n * self.partitions, 60, self.k)

        h = self.get("/healthz")
        self.assertEqual(h["status"], "ok")
        wait_until(lambda: self.call("GET", "/readyz")[0] == 200,
                   timeout=20, what="/readyz green")
        ready = self.get("/readyz")
        self.assertTrue(ready["ready"])
        self.assertTrue(all(c["ok"] for c in ready["checks"]))
        # delivered and committed offsets settle just after the rows land
        wait_until(lambda: all(p["delivered_offset"] == n - 1 and
                               p["committed_offset"] == n - 1
                               for p in self.route_parts()),
                   timeout=20, what="offsets at %d" % (n - 1))
        st = self.get("/status")
        r = st["routes"][0]
        self.assertEqual(r["name"], "gameplay")
        self.assertEqual(len(r["partitions"]), self.partitions)
        for p in r["partitions"]:
            self.assertEqual(p["journaled_offset"], n - 1)
            self.assertEqual(p["consumed_offset"], n - 1)
            self.assertEqual(p["journal_delivered"], n)
            self.assertEqual(p["dead_letters"], 0)
        self.assertEqual(r["forwarder"]["events_delivered"],
                         n * self.partitions)
        self.assertIn("uptime_s", st)
        self.assertIn("expires_in_s", st["token"])

        # /metrics: strict parser, and the numbers agree with /status
        st_code, hdrs, text = self.call("GET", "/metrics")
        self.assertEqual(st_code, 200)
        self.assertTrue(hdrs["content-type"].startswith(
            "text/plain; version=0.0.4"))
        fams = promparse.parse(text)
        self.assertEqual(fams["kadx_delivered_events_total"].type, "counter")
        self.assertEqual(
            fams["kadx_delivered_events_total"].get(route="gameplay"),
            n * self.partitions)
        for p in self.parts:
            self.assertEqual(fams["kadx_consumed_events_total"].get(
                topic=tf.TOPIC, partition=str(p)), n)
            self.assertEqual(fams["kadx_journal_events"].get(
                route="gameplay", topic=tf.TOPIC, partition=str(p),
                state="delivered"), n)
            self.assertIn(("kadx_consumer_lag", {"topic": tf.TOPIC,
                                                 "partition": str(p)}),
                          [(s[0], s[1]) for s in
                           fams["kadx_consumer_lag"].samples])
        # the batch latency histogram: one observation per delivered batch
        lat = fams["kadx_batch_latency_seconds"]
        self.assertEqual(lat.type, "histogram")
        batches = fams["kadx_delivered_batches_total"].get(route="gameplay")
        self.assertGreater(batches, 0)
        self.assertEqual(lat.get("kadx_batch_latency_seconds_count",
                                 route="gameplay"), batches)
        self.assertEqual(lat.get("kadx_batch_latency_seconds_bucket",
                                 route="gameplay", le="+Inf"), batches)
        self.assertGreater(lat.get("kadx_batch_latency_seconds_sum",
                                   route="gameplay"), 0)
        # the phases of the path (FORWARDER.md "Phases"): each step ran,
        # one mark_done per delivered batch
        ph = fams["kadx_phase_seconds"]
        self.assertEqual(ph.type, "histogram")
        for phase in ("fetch", "queue", "append", "commit", "settle", "cut",
                      "build", "mark_sent", "ingest", "mark_done"):
            cnt = ph.get("kadx_phase_seconds_count", phase=phase)
            self.assertGreater(cnt, 0, phase)
            self.assertEqual(ph.get("kadx_phase_seconds_bucket",
                                    phase=phase, le="+Inf"), cnt, phase)
        self.assertEqual(ph.get("kadx_phase_seconds_count",
                                phase="mark_done"), batches)
        for name in ("kadx_journal_file_bytes", "kadx_retries_total",
                     "kadx_dead_events_total",
                     "kadx_possible_duplicates_total",
                     "kadx_delivered_bytes_total", "kadx_commits_total"):
            self.assertIn(name, fams)

        # every POST: 401 without the token or with a wrong one
        for path in ("/dead-letters/requeue", "/pause", "/resume",
                     "/replay"):
            for tok in (None, "wrong-token-0000", TOKEN + "x"):
                code, hdrs, body = self.call("POST", path, {}, token=tok)
                self.assertEqual(code, 401, (path, tok, body))
                self.assertIn("error", body)
                self.assertIn("bearer", hdrs["www-authenticate"].lower())
        # ... and with it
        self.assertEqual(self.post("/dead-letters/requeue")["requeued"], 0)
        self.assertEqual(self.get("/dead-letters")["total"], 0)

        # 404, 405 with Allow
        code, _, body = self.call("GET", "/nope")
        self.assertEqual(code, 404)
        self.assertIn("error", body)
        code, hdrs, _ = self.call("GET", "/replay")
        self.assertEqual((code, hdrs["allow"]), (405, "POST"))
        code, hdrs, _ = self.call("POST", "/status", {}, token=TOKEN)
        self.assertEqual((code, hdrs["allow"]), (405, "GET"))
        # bad JSON and bad fields
        code, _, body = self.call("POST", "/replay", "{nope", token=TOKEN)
        self.assertEqual(code, 400)
        code, _, body = self.call("POST", "/replay", {"rout": 0},
                                  token=TOKEN)
        self.assertEqual(code, 400)
        self.assertIn("unknown field 'rout'", body["error"]["message"])

        # garbage bytes -> 400 JSON, the server keeps serving
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        s.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage"
                  b"\r\n\r\n")
        got = s.recv(65536)
        s.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 400"), got[:80])
        self.assertEqual(self.get("/healthz")["status"], "ok")
        # a 1 MB header -> 431
        s = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        try:
            s.sendall(b"GET /status HTTP/1.1\r\nHost: x\r\nX-Big: " +
                      b"a" * (1 << 20) + b"\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before reading it all
        got = s.recv(65536)
        s.close()
        self.assertTrue(got.startswith(b"HTTP/1.1 431"), got[:80])
        self.assertEqual(self.get("/healthz")["status"], "ok")
        # a request that stops half way: answered 408 after the read
        # timeout (5 s), while other requests are served meanwhile
        s = socket.create_connection(("127.0.0.1", self.port), timeout=15)
        t0 = time.monotonic()
        s.sendall(b"POST /replay HTTP/1.1\r\nHost: x\r\nContent-Length: 50"
                  b"\r\n\r\n{\"route\":")
        self.assertEqual(self.get("/healthz")["status"], "ok")
        got = s.recv(65536)
        waited = time.monotonic() - t0
        s.close()
        self.assertTrue(got == b"" or got.startswith(b"HTTP/1.1 408"),
                        got[:80])
        self.assertGreater(waited, 3.0)
        self.assertEqual(self.get("/healthz")["status"], "ok")
        self.assertTrue(self.k.alive())

    def test_pause_resume_and_dead_letters(self):
        n = 500
        self.start_all(n, forwarder={"linger_ms": 20})
        total = n * self.partitions
        self.wait_count(self.emu, total, 60, self.k)

        # a paused route sends nothing, though its events settle
        r = self.post("/pause", {"route": "gameplay"})
        self.assertEqual((r["scope"], r["paused"]), ("route", True))
        self.assertEqual(self.get("/status")["routes"][0]["forwarder"]
                         ["state"], "paused-operator")
        self.assertTrue(self.get("/readyz")["ready"])
        tf.produce(self.bs, self.parts, n, 100)
        wait_until(lambda: all(p["settled_offset"] == n + 99
                               for p in self.route_parts()),
                   timeout=30, what="the new events settled")
        self.assertEqual(self.emu.count(tf.TABLE), total)
        fams = promparse.parse(self.call("GET", "/metrics")[2])
        self.assertEqual(fams["kadx_route_paused"].get(route="gameplay"), 1)
        self.post("/resume", {"route": 0})
        self.wait_count(self.emu, total + 100 * self.partitions, 30, self.k)

        # the whole gateway: intake paused too
        r = self.post("/pause")
        self.assertEqual((r["scope"], r["paused"]), ("gateway", True))
        st = self.get("/status")
        self.assertTrue(st["paused"])
        wait_until(lambda: self.get("/status")["intake"]["paused"],
                   timeout=10, what="intake paused")
        self.post("/resume")
        self.assertFalse(self.get("/status")["paused"])

        # a record that is not JSON: dead-lettered with the reason, listed,
        # requeued (and dead again: it is still not JSON)
        kafka.produce(self.bs, tf.TOPIC, 0, ["this is not json"])
        wait_until(lambda: self.get("/dead-letters")["total"] == 1,
                   timeout=30, what="one dead letter")
        d = self.get("/dead-letters")["dead_letters"][0]
        self.assertEqual((d["partition"], d["offset"]), (0, n + 100))
        self.assertEqual(d["route_name"], "gameplay")
        self.assertTrue(d["reason"])
        self.assertEqual(self.get("/dead-letters?route=gameplay&limit=1")
                         ["count"], 1)
        r = self.post("/dead-letters/requeue", {"id": d["id"]})
        self.assertEqual(r["requeued"], 1)
        # dead again, in the requeue batch (dead-letter ids may be reused)
        wait_until(lambda: (self.get("/dead-letters")["total"] == 1 and
                            self.get("/dead-letters")["dead_letters"][0]
                            ["batch_id"] != d["batch_id"]),
                   timeout=30, what="the record dead again")
        self.assertEqual(self.k.stop(), 0)
        # offsets 0..n+99 exactly once; the bad record (n+100) not at all
        tf.audit(self.emu, self.parts, n + 100)


class ReplayCase(AdminBase):

    def test_replay_range_and_missing(self):
        n = 25000 if harness.FULL else 2500
        total = n * self.partitions
        self.start_all(n, forwarder={"batch_max_rows": 500})
        self.wait_count(self.emu, total, 120, self.k)
        wait_until(lambda: all(p["delivered_offset"] == n - 1
                               for p in self.route_parts()),
                   timeout=20, what="everything delivered")
        tf.audit(self.emu, self.parts, n)

        # clear the table; replay every partition by offset range
        self.emu.mgmt(".clear table GamePlay data")
        self.assertEqual(self.emu.count(tf.TABLE), 0)
        for p in self.parts:
            r = self.post("/replay", {"route": "gameplay", "partition": p,
                                      "from_offset": 0, "to_offset": n - 1})
            self.assertEqual((r["mode"], r["events"]), ("all", n))
        self.wait_count(self.emu, total, 120, self.k)
        wait_until(lambda: self.get("/status")["journal"]
                   ["batches_unfinished"] == 0, timeout=30,
                   what="the replays finished")
        tf.audit(self.emu, self.parts, n)

        # half-cleared: clear, put partitions 0 and 1 back by range, then
        # ask for what is missing: only partitions 2 and 3 are sent
        self.emu.mgmt(".clear table GamePlay data")
        for p in (0, 1):
            r = self.post("/replay", {"route": 0, "partition": p,
                                      "from_offset": 0, "to_offset": n - 1})
            self.assertEqual(r["events"], n)
        self.wait_count(self.emu, total // 2, 120, self.k)
        wait_until(lambda: self.get("/status")["journal"]
                   ["batches_unfinished"] == 0, timeout=30,
                   what="the replays finished")
        rows_before = self.emu.stats()["rows_accepted"]
        r = self.post("/replay", {"route": "gameplay", "mode": "missing"})
        self.assertEqual(r["mode"], "missing")
        self.assertEqual(r["events"], total // 2, r)
        self.assertGreater(r["present_batches"], 0, r)
        self.assertGreater(r["missing_batches"], 0, r)
        self.wait_count(self.emu, total, 120, self.k)
        wait_until(lambda: self.get("/status")["journal"]
                   ["batches_unfinished"] == 0, timeout=30,
                   what="the reconcile's replays finished")
        self.assertEqual(self.emu.stats()["rows_accepted"] - rows_before,
                         total // 2)
        tf.audit(self.emu, self.parts, n)
        # nothing missing any more
        r = self.post("/replay", {"route": "gameplay", "mode": "missing"})
        self.assertEqual(r["events"], 0, r)
        self.assertEqual(self.k.stop(), 0)
        tf.audit(self.emu, self.parts, n)


class PromParseCase(unittest.TestCase):
    """The strict parser must itself refuse what is wrong, or the /metrics
    checks above could not fail."""

    GOOD = ('# HELP a_total Things.\n# TYPE a_total counter\n'
            'a_total{x="1"} 3\na_total{x="2\\"q\\\\"} 4\n'
            '# HELP h Latency.\n# TYPE h histogram\n'
            'h_bucket{le="0.1"} 1\nh_bucket{le="+Inf"} 2\n'
            'h_sum 0.3\nh_count 2\n')

    def test_good(self):
        f = promparse.parse(self.GOOD)
        self.assertEqual(f["a_total"].get(x="1"), 3)
        self.assertEqual(f["a_total"].get(x='2"q\\'), 4)
        self.assertEqual(f["h"].get("h_count"), 2)

    def test_refused(self):
        bad = [
            "a 1\n",                                      # no HELP/TYPE
            "# TYPE a counter\na 1\n",                    # no HELP
            "# HELP a x\n# TYPE a counter\na -1\n",       # negative counter
            "# HELP a x\n# TYPE a counter\na 1",           # no final newline
            "# HELP a x\n# TYPE a counter\na 1\na 2\n",   # duplicate series
            "# HELP a x\n# TYPE a kounter\na 1\n",        # bad type
            "# HELP a x\n# TYPE a gauge\na{b=\"c} 1\n",   # open label
            "# HELP a x\n# TYPE a gauge\na{b=\"\\t\"} 1\n",  # bad escape
            "# HELP a x\n# TYPE a gauge\na  1\n",         # two spaces
            "# HELP a x\n# TYPE a gauge\na one\n",        # not a number
            "# HELP a x\n# TYPE a gauge\na 1\r\n",        # CR
            self.GOOD.replace("h_count 2", "h_count 3"),  # +Inf != count
            self.GOOD.replace('le="+Inf"} 2', 'le="+Inf"} 0'),  # not cumul.
            self.GOOD + 'a_total{x="3"} 1\n',            # not contiguous
            self.GOOD.replace("h_sum 0.3\n", ""),         # no _sum
        ]
        for text in bad:
            with self.assertRaises(promparse.PromParseError, msg=text):
                promparse.parse(text)


if __name__ == "__main__":
    harness.main()
