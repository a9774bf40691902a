"""Forwarder acceptance (issue 6): `kadx run` between the Kafka mock cluster
and the ADX emulator, every event exactly once in the emulator's table.

The audit goes through metadata columns: each record carries its Kafka
partition and offset (routes[].meta) into KafkaPartition / KafkaOffset, and
its batch id into BatchId (the dedupe column, INV-5). Per partition the
table must hold count == dcount(offset) == the number produced, offsets
0..N-1: nothing lost, nothing twice.

Default sizes keep the suite short; KADX_FULL=1 (meson -Dfull_tests=true)
runs the issue's sizes. SIGKILL runs are in test_kill.py.
"""
import http.client
import json
import os
import re
import shutil
import signal
import threading
import time

import adx
import harness
import kafka
from harness import wait_until

TOPIC = "gameplay"
TABLE = "GamePlay"
MAPPING = "kadx_mapping"

CREATE_TABLE = (".create table GamePlay (PlayerID: int, GameID: int, "
                "Win: long, Stake: int, EventTime: datetime, "
                "KafkaTopic: string, KafkaPartition: int, KafkaOffset: long, "
                "BatchId: string)")
CREATE_MAPPING = (
    ".create table GamePlay ingestion json mapping 'kadx_mapping' '["
    "{\"column\":\"PlayerID\",\"Properties\":{\"Path\":\"$.playerId\"}},"
    "{\"column\":\"GameID\",\"Properties\":{\"Path\":\"$.gameId\"}},"
    "{\"column\":\"Win\",\"Properties\":{\"Path\":\"$.win\"}},"
    "{\"column\":\"Stake\",\"Properties\":{\"Path\":\"$.stake\"}},"
    "{\"column\":\"EventTime\",\"Properties\":{\"Path\":\"$.eventTime\"}},"
    "{\"column\":\"KafkaTopic\",\"Properties\":{\"Path\":\"$.kafka_topic\"}},"
    "{\"column\":\"KafkaPartition\",\"Properties\":{\"Path\":"
    "\"$.kafka_partition\"}},"
    "{\"column\":\"KafkaOffset\",\"Properties\":{\"Path\":\"$.kafka_offset\"}},"
    "{\"column\":\"BatchId\",\"Properties\":{\"Path\":\"$.kadx_batch\"}}]'")


def setup_table(emu):
    emu.mgmt(CREATE_TABLE)
    emu.mgmt(CREATE_MAPPING)
    emu.mgmt(".alter database leaderboard policy streamingingestion enable")


def event(p, i):
    return ('{"playerId":%d,"gameId":%d,"win":%d,"stake":%d,'
            '"eventTime":"2026-11-24T12:00:00.000Z"}' % (i, p, (i % 7) * 10,
                                                         i % 5 + 1))


def write_config(path, bootstrap, group, journal, adx_url, dedupe=True,
                 forwarder=None, auth=None, meta=True, admin=False,
                 adx_cfg=None):
    route = {"topic": TOPIC, "database": "leaderboard", "table": TABLE,
             "format": "json", "mapping": MAPPING}
    if meta:
        route["meta"] = {"topic": "kafka_topic",
                         "partition": "kafka_partition",
                         "offset": "kafka_offset", "batch_id": "kadx_batch"}
    if dedupe:
        route["dedupe_column"] = "BatchId"
    # server_timeout_ms / ambiguous_window_ms: a batch left SENT by a kill
    # waits the window before a resend (INV-5); the defaults (10 min) are
    # for real ADX, these keep the tests short (window >= 5000 + 1000)
    fw = {"linger_ms": 50, "batch_max_rows": 2000, "retry_initial_ms": 100,
          "retry_max_ms": 1000, "ambiguous_delay_ms": 200,
          "ambiguous_window_ms": 6500}
    fw.update(forwarder or {})
    adx_c = {"ingest_url": adx_url, "request_timeout_ms": 5000,
             "server_timeout_ms": 1000, "auth": auth or {"method": "none"}}
    adx_c.update(adx_cfg or {})
    cfg = {
        "kafka": {"bootstrap.servers": bootstrap, "group.id": group,
                  "session.timeout.ms": "6000",
                  "heartbeat.interval.ms": "500"},
        "adx": adx_c,
        "routes": [route],
        "journal": {"path": journal},
        "forwarder": fw,
        "admin": {"listen": "127.0.0.1:0" if admin else "off"},
    }
    with open(path, "w") as f:
        json.dump(cfg, f)
    return path


def admin_get(proc, path):
    """(status, parsed body) of GET path on the admin port kadx logged."""
    line = proc.wait_for("admin: listening on", timeout=30,
                         what="the admin listening line")
    port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        r = conn.getresponse()
        return r.status, json.loads(r.read() or b"null")
    finally:
        conn.close()


def readyz(proc):
    return admin_get(proc, "/readyz")


def produce(bootstrap, partitions, start, n, bad=None):
    """Produces n events to each partition (offsets start..start+n-1 when
    the topic was empty). bad: {(partition, index): raw value}."""
    for p in partitions:
        vals = []
        for i in range(start, start + n):
            if bad and (p, i) in bad:
                vals.append(bad[(p, i)])
            else:
                vals.append(event(p, i))
        kafka.produce(bootstrap, TOPIC, p, vals)


def audit(emu, partitions, n, missing=()):
    """Asserts every (partition, offset < n) is in the table exactly once,
    except the (partition, offset) pairs in missing."""
    rows = emu.query(
        "GamePlay | summarize c=count(), d=dcount(KafkaOffset), "
        "lo=min(KafkaOffset), hi=max(KafkaOffset) by KafkaPartition")
    got = {r["KafkaPartition"]: r for r in rows}
    for p in partitions:
        want = n - len([m for m in missing if m[0] == p])
        r = got.get(p)
        assert r is not None, "partition %d: nothing delivered" % p
        assert r["c"] == r["d"], "partition %d: %d rows, %d distinct " \
            "offsets (duplicates)" % (p, r["c"], r["d"])
        assert r["c"] == want, "partition %d: %d rows, want %d" % (
            p, r["c"], want)
        assert r["lo"] >= 0 and r["hi"] <= n - 1, r
    assert set(got) <= set(partitions), got


class Producer(threading.Thread):
    """Produces per_part events to each partition in the background, in
    rounds of `chunk` per partition (the mock cluster keeps only ~5 MiB per
    partition: big runs must be consumed while they are produced)."""

    def __init__(self, bootstrap, partitions, per_part, chunk):
        super().__init__(daemon=True)
        self.bs = bootstrap
        self.parts = partitions
        self.per_part = per_part
        self.chunk = chunk
        self.error = None
        self.done = threading.Event()

    def run(self):
        try:
            i = 0
            while i < self.per_part:
                n = min(self.chunk, self.per_part - i)
                produce(self.bs, self.parts, i, n)
                i += n
        except Exception as e:  # reported by the test
            self.error = e
        finally:
            self.done.set()

    def finish(self, timeout=600):
        if not self.done.wait(timeout):
            raise AssertionError("producer did not finish")
        if self.error:
            raise self.error


class FaultInjector(threading.Thread):
    """Keeps about `ratio` of ingest requests failing with `status`, by
    arming one failure at a time through the emulator's control endpoint."""

    def __init__(self, emu, ratio=0.3, status=500):
        super().__init__(daemon=True)
        self.emu = emu
        self.ratio = ratio
        self.status = status
        self.stop_ev = threading.Event()
        self.error = None

    def run(self):
        try:
            while not self.stop_ev.wait(0.02):
                st = self.emu.stats()
                fired = st["faults_fired"]["fail"]
                if fired < self.ratio * (st["ingest_requests"] + 1) and \
                        st["faults"]["fail_count"] == 0:
                    self.emu.faults(fail_count=1, fail_status=self.status,
                                    fail_permanent=False)
        except Exception as e:  # reported by the test
            self.error = e

    def finish(self):
        self.stop_ev.set()
        self.join(10)
        self.emu.faults(fail_count=0)
        if self.error:
            raise self.error


class ForwarderBase(harness.TmpDirCase):
    """Mock cluster + paths + helpers; no tests (test_kill.py reuses it)."""
    partitions = 8 if harness.FULL else 4

    def setUp(self):
        super().setUp()
        # the real broker (tests/kafka), one per test process; TOPIC fresh
        self.kafka = kafka.cluster(topics=[(TOPIC, self.partitions)])
        self.addCleanup(self.kafka.stop)
        self.bs = self.kafka.bootstrap
        self.parts = list(range(self.partitions))
        self.journal = os.path.join(self.tmp, "journal.db")
        self.cfg = os.path.join(self.tmp, "kadx.json")

    def start_emulator(self, **kw):
        emu = adx.Emulator(**kw).start()
        self.addCleanup(emu.stop)
        return emu

    def start_kadx(self, name="kadx run"):
        p = harness.kadx("run", "-c", self.cfg, name=name)
        p.wait_for("running (group", timeout=30, what="the running line")
        return p

    def wait_count(self, emu, n, timeout, kadx_proc=None):
        def done():
            if kadx_proc is not None and not kadx_proc.alive():
                raise AssertionError("kadx exited\n" + kadx_proc.tail())
            return emu.count(TABLE) >= n
        try:
            wait_until(done, timeout=timeout, interval=0.25,
                       what="%d rows in the table" % n)
        except AssertionError:
            if kadx_proc is not None:
                print(kadx_proc.tail(60))
            raise


class ForwarderCase(ForwarderBase):

    def test_valgrind_clean_delivery(self):
        """The main path (consume, journal, commit, cut, send, mark) under
        valgrind on the plain build (KADX_PLAIN_BIN, set by tests/run-all):
        every event delivered, SIGTERM exits 0, no memory error and no
        definite, indirect or possible leak. Without a plain build the
        sanitized binary runs the same path under LeakSanitizer (the
        harness sets detect_leaks=1: a leak makes the exit code 23)."""
        n = 200
        emu = self.start_emulator()
        setup_table(emu)
        write_config(self.cfg, self.bs, "g-valgrind", self.journal, emu.url)
        plain = os.environ.get("KADX_PLAIN_BIN")
        args = [harness.KADX, "run", "-c", self.cfg]
        if plain and shutil.which("valgrind"):
            args = ["valgrind", "--leak-check=full", "--error-exitcode=99",
                    "--errors-for-leak-kinds=definite,indirect,possible",
                    "--show-leak-kinds=definite,indirect,possible",
                    plain, "run", "-c", self.cfg]
        k = harness.Proc(args, name="kadx run (valgrind)")
        k.wait_for("running (group", timeout=120, what="the running line")
        k.wait_for("assigned", timeout=120, what="partitions assigned")
        produce(self.bs, self.parts, 0, n)
        self.wait_count(emu, n * self.partitions, 120, k)
        self.assertEqual(k.stop(timeout=60), 0, k.tail(40))
        audit(emu, self.parts, n)
        if args[0] == "valgrind":
            self.assertIn("ERROR SUMMARY: 0 errors", "\n".join(k.err))

    def test_exactly_once_with_metadata(self):
        # FULL: the 1M events (8 x 125k), consumed while produced
        n = 125000 if harness.FULL else 5000
        emu = self.start_emulator()
        setup_table(emu)
        write_config(self.cfg, self.bs, "g-basic", self.journal, emu.url,
                     forwarder={"batch_max_rows": 10000})
        k = self.start_kadx()
        # the mock keeps ~5 MiB per partition: produce once kadx consumes
        k.wait_for("assigned", timeout=60, what="partitions assigned")
        prod = Producer(self.bs, self.parts, n, 10000 if harness.FULL
                        else 2500)
        prod.start()
        prod.finish()
        self.wait_count(emu, n * self.partitions, 120 if not harness.FULL
                        else 900, k)
        self.assertEqual(k.stop(), 0)
        audit(emu, self.parts, n)
        # the metadata went where the mapping said
        rows = emu.query("GamePlay | where KafkaTopic == 'gameplay' | count")
        self.assertEqual(rows[0]["Count"], n * self.partitions)
        st = emu.stats()
        self.assertGreater(st["ingest_ok"], 0)

    def test_faults_500_429_and_resets(self):
        n = 25000 if harness.FULL else 2500
        emu = self.start_emulator()
        setup_table(emu)
        write_config(self.cfg, self.bs, "g-faults", self.journal, emu.url,
                     forwarder={"batch_max_rows": 100})
        produce(self.bs, self.parts, 0, n // 2)
        inj = FaultInjector(emu, 0.3, 500)
        inj.start()
        k = self.start_kadx()
        # a burst of 429 with Retry-After ...
        emu.faults(throttle_rps=2, retry_after_s=1)
        wait_until(lambda: emu.stats()["faults_fired"]["throttle"] >= 5,
                   timeout=60, what="429 answers")
        emu.faults(throttle_rps=0)
        # ... then 20 apply-then-reset faults (INV-5: dedupe column)
        emu.faults(reset_count=20)
        produce(self.bs, self.parts, n // 2, n - n // 2)
        self.wait_count(emu, n * self.partitions, 180, k)
        inj.finish()
        self.assertEqual(k.stop(), 0)
        audit(emu, self.parts, n)
        st = emu.stats()
        self.assertGreaterEqual(st["faults_fired"]["fail"], 5)
        self.assertGreaterEqual(st["faults_fired"]["throttle"], 5)
        self.assertEqual(st["faults_fired"]["reset"], 20)
        log = "\n".join(k.lines())
        self.assertIn("ambiguous send resolved: delivered", log)

    def test_bad_record_only_it_dead_lettered(self):
        n = 2500 if harness.FULL else 500  # x4 partitions = 10k in FULL
        emu = self.start_emulator()
        setup_table(emu)
        write_config(self.cfg, self.bs, "g-bad", self.journal, emu.url)
        # invalid JSON, and a Latin-1 byte in a string (ADX would drop a
        # malformed json record without an error: it must be dead-lettered)
        bad = {(2, 137): '{"playerId": 1, "gameId": oops}',
               (1, 42): '{"playerId": 2, "gameId": 3, "x": "caf\udce9"}'}
        produce(self.bs, self.parts, 0, n, bad=bad)
        k = self.start_kadx()
        self.wait_count(emu, n * self.partitions - 2, 120, k)
        line = k.wait_for("dead-lettering gameplay[2]@137", timeout=10,
                          what="the dead-letter line")
        self.assertIn("not valid JSON", line)
        line = k.wait_for("dead-lettering gameplay[1]@42", timeout=10,
                          what="the dead-letter line")
        self.assertIn("invalid UTF-8 in string", line)
        self.assertEqual(k.stop(), 0)
        audit(emu, self.parts, n, missing=[(2, 137), (1, 42)])
        dead = [l for l in k.lines() if "dead-lettering" in l]
        self.assertEqual(len(dead), 2, dead)

    def test_table_missing_pauses_then_resumes(self):
        n = 300
        emu = self.start_emulator()
        write_config(self.cfg, self.bs, "g-missing", self.journal, emu.url,
                     forwarder={"retry_max_ms": 1000}, admin=True)
        produce(self.bs, self.parts, 0, n)
        k = self.start_kadx()
        k.wait_for("paused-config", timeout=60, what="the route pausing")
        st, body = readyz(k)
        self.assertEqual(st, 503, body)
        self.assertIn("EntityNotFound", json.dumps(body))
        setup_table(emu)
        k.wait_for("resumed", timeout=60, what="the route resuming")
        wait_until(lambda: readyz(k)[0] == 200, timeout=30,
                   what="/readyz green again")
        self.wait_count(emu, n * self.partitions, 60, k)
        self.assertEqual(k.stop(), 0)
        audit(emu, self.parts, n)
        dead = [l for l in k.lines() if "dead-lettering" in l]
        self.assertEqual(dead, [])

    def test_short_lived_tokens(self):
        # FULL: the 30 s tokens over 3 minutes; default: 3 s
        # tokens over ~12 s (several refreshes either way)
        life = 30 if harness.FULL else 3
        duration = 180 if harness.FULL else 12
        emu = self.start_emulator(auth="token", client_id="kadx-app",
                                  client_secret="s3cret-app-key",
                                  token_lifetime=life)
        # the test's own calls need a token too (the control endpoint
        # does not): fetch one like any client
        emu.token = None
        tok = self._token(emu)
        emu.token = tok
        setup_table(emu)
        write_config(self.cfg, self.bs, "g-token", self.journal, emu.url,
                     auth={"method": "client_secret", "tenant_id": "t1",
                           "client_id": "kadx-app",
                           "client_secret": "s3cret-app-key",
                           "authority_host": emu.url})
        k = self.start_kadx()
        t0 = time.monotonic()
        i = 0
        per = 50
        while time.monotonic() - t0 < duration:
            produce(self.bs, self.parts, i, per)
            i += per
            emu.token = self._token(emu)
            time.sleep(0.5)  # pacing the producer, not a wait
        emu.token = self._token(emu)
        self.wait_count(emu, i * self.partitions, 60, k)
        emu.token = self._token(emu)
        self.assertEqual(k.stop(), 0)
        audit(emu, self.parts, i)
        log = "\n".join(k.lines())
        self.assertNotIn("http 401", log)
        self.assertNotIn("paused", log)
        self.assertNotIn("s3cret-app-key", log)

    def _token(self, emu):
        import urllib.parse
        body = urllib.parse.urlencode({
            "grant_type": "client_credentials", "client_id": "kadx-app",
            "client_secret": "s3cret-app-key",
            "scope": emu.url + "/.default"})
        saved = emu.token
        emu.token = None
        try:
            st, parsed, _ = emu.request(
                "POST", "/t1/oauth2/v2.0/token", body,
                {"Content-Type": "application/x-www-form-urlencoded"})
        finally:
            emu.token = saved
        assert st == 200, (st, parsed)
        return parsed["access_token"]

    def test_forwarder_md_upgrade_of_an_existing_table(self):
        """gateway/FORWARDER.md's how-to, run as written: the seed table,
        its KQL to add the Kafka metadata and dedupe columns and mapping,
        its route JSON, its audit query."""
        with open(os.path.join(harness.SRC, "gateway", "FORWARDER.md")) as f:
            md = f.read()
        blocks = re.findall(r"```(\w+)\n(.*?)```", md, re.S)
        kql = [b for lang, b in blocks if lang == "kql"]
        js = [b for lang, b in blocks if lang == "json"]
        upgrade = [c.strip() for c in kql[0].split("\n\n") if c.strip()]
        self.assertEqual(len(upgrade), 2, upgrade)
        route = json.loads("{" + js[0] + "}")["routes"][0]
        n = 300
        emu = self.start_emulator()
        emu.setup_gameplay()  # the seed: table, mapping, streaming policy
        emu.ingest("GamePlay", [adx.gameplay_event(
            1, 1, 0, 1, "2026-11-24T00:00:00.000Z")],
            mapping="gameplay_json_mapping")  # data from before
        for cmd in upgrade:
            emu.mgmt(cmd)
        route["topic"] = TOPIC
        write_config(self.cfg, self.bs, "g-md", self.journal, emu.url)
        with open(self.cfg) as f:
            cfg = json.load(f)
        cfg["routes"] = [route]
        with open(self.cfg, "w") as f:
            json.dump(cfg, f)
        produce(self.bs, self.parts, 0, n)
        emu.faults(reset_count=2)  # the dedupe column at work
        k = self.start_kadx()
        self.wait_count(emu, n * self.partitions + 1, 120, k)
        self.assertEqual(k.stop(), 0)
        rows = emu.query(kql[1].strip())
        got = {r["KafkaPartition"]: r for r in rows
               if r["KafkaTopic"] == TOPIC}
        for p in self.parts:
            r = got[p]
            self.assertEqual((r["rows"], r["offsets"], r["first"],
                              r["last"]), (n, n, 0, n - 1), r)
        old = emu.query("GamePlay | where isempty(KafkaTopic) | count")
        self.assertEqual(old[0]["Count"], 1)

    def test_retention_retires_delivered_events(self):
        """INV-8: delivered events leave the journal after retention_ms."""
        n = 500
        emu = self.start_emulator()
        setup_table(emu)
        write_config(self.cfg, self.bs, "g-ret", self.journal, emu.url,
                     admin=True)
        with open(self.cfg) as f:
            cfg = json.load(f)
        cfg["journal"]["retention_ms"] = 300
        with open(self.cfg, "w") as f:
            json.dump(cfg, f)
        produce(self.bs, self.parts, 0, n)
        k = self.start_kadx()
        self.wait_count(emu, n * self.partitions, 60, k)

        def retired():
            st, body = admin_get(k, "/status")
            parts = body["routes"][0]["partitions"]
            return st == 200 and len(parts) == self.partitions and all(
                p["journal_delivered"] == 0 and p["delivered_offset"] == n - 1
                for p in parts)
        wait_until(retired, timeout=30, interval=0.5,
                   what="delivered events retired from the journal")
        self.assertEqual(k.stop(), 0)
        audit(emu, self.parts, n)

    def test_no_dedupe_column_counts_possible_duplicates(self):
        n = 200
        emu = self.start_emulator()
        setup_table(emu)
        write_config(self.cfg, self.bs, "g-nodedupe", self.journal, emu.url,
                     dedupe=False)
        emu.faults(reset_count=1)
        produce(self.bs, self.parts, 0, n)
        k = self.start_kadx()
        k.wait_for("possible duplicate", timeout=60,
                   what="the possible-duplicate warning")
        # the reset batch was applied and resent: one batch twice
        wait_until(lambda: emu.count(TABLE) > n * self.partitions,
                   timeout=60, what="the resent batch")
        self.assertEqual(k.stop(), 0)

    def test_late_apply_no_duplicates(self):
        """Issue 19, hole 1: an ADX that applies a share of streaming
        requests 1-4 s late, after kadx's request timeout (800 ms) gave up.
        kadx bounds each request's life on the server (servertimeout 3 s:
        the emulator cuts off, unapplied, what runs longer) and resends an
        ambiguous batch only when a dedupe query issued after the window
        (request + server timeout) says absent. 20k events (4 x 5000):
        every (partition, offset) exactly once. Before the fix the dedupe
        query ran while the late request was still pending, found nothing,
        and the resend plus the late apply made duplicates."""
        n = 5000
        emu = self.start_emulator()
        setup_table(emu)
        write_config(self.cfg, self.bs, "g-late", self.journal, emu.url,
                     adx_cfg={"request_timeout_ms": 800,
                              "server_timeout_ms": 3000},
                     forwarder={"batch_max_rows": 1000, "max_inflight": 8,
                                "ambiguous_delay_ms": 300,
                                "ambiguous_window_ms": 4500})
        emu.faults(late_share=0.3, late_min_ms=1000, late_max_ms=4000)
        produce(self.bs, self.parts, 0, n)
        k = self.start_kadx()
        self.wait_count(emu, n * self.partitions, 120, k)
        # the late requests still pending must land (or be cut off) before
        # the audit: nothing of kadx's may be in flight at the emulator
        wait_until(lambda: emu.stats()["faults_fired"]["late"] ==
                   emu.stats()["late_applied"] + emu.stats()["late_expired"],
                   timeout=30, what="no late request pending")
        st = emu.stats()
        # the window that made duplicates was really opened: requests
        # applied after kadx had hung up
        self.assertGreater(st["late_client_gone"], 0, st)
        self.assertEqual(k.stop(), 0)
        audit(emu, self.parts, n)
        log = "\n".join(k.lines())
        self.assertIn("the request may still commit", log)
        print("late-apply: %d requests late, %d applied after kadx hung up, "
              "%d cut off by servertimeout, %d ingest requests" % (
                  st["faults_fired"]["late"], st["late_client_gone"],
                  st["late_expired"], st["ingest_requests"]))

    def test_sigterm_waits_for_inflight(self):
        n = 200
        emu = self.start_emulator()
        setup_table(emu)
        write_config(self.cfg, self.bs, "g-term", self.journal, emu.url)
        k = self.start_kadx()
        emu.faults(latency_ms=1500)
        produce(self.bs, self.parts, 0, n)
        wait_until(lambda: emu.stats()["faults_fired"]["latency"] >= 1,
                   timeout=60, what="a slow request in flight")
        k.signal(signal.SIGTERM)
        self.assertEqual(k.wait(30), 0)
        emu.faults(latency_ms=0)
        delivered = emu.count(TABLE)
        self.assertGreater(delivered, 0)  # the slow answer was waited for
        # a restart sends the rest, and nothing twice
        k2 = self.start_kadx("kadx run 2")
        self.wait_count(emu, n * self.partitions, 60, k2)
        self.assertEqual(k2.stop(), 0)
        audit(emu, self.parts, n)


if __name__ == "__main__":
    harness.main()
