"""Queued ingestion (issue 15): kadx -> Azure Storage (Azurite) -> the ADX
emulator's data-management worker, exactly once without a dedupe column.

The table is the seed's GamePlay with its JSON mapping and *no* streaming
policy: a streaming request would be refused (400
StreamingIngestionPolicyNotEnabled), so every row that arrives came through
a blob, a queue message and a status report. Each event is unique by
(GameID = partition, PlayerID = index), which is what the audit counts: no
metadata column, no dedupe column. Exactly once rests on ADX's own
ingest-by tags (ingestIfNotExists = the batch id).

Default: 5k events, 2 kills; KADX_FULL=1: 50k events, 5 kills.
test_50k_kill9_five_times_through_storage_faults (issue 15's acceptance
point) always runs 50k events, 5 kills, and Azure Storage faults from
storage_proxy.py between kadx and Azurite.
"""
import json
import os
import random
import re
import subprocess
import threading
import time

import adx
import azurite
import harness
import kafka
import storage_proxy
from harness import wait_until

TOPIC = "gameplay"
PARTS = 4


def event(p, i):
    return ('{"playerId":%d,"gameId":%d,"win":%d,"stake":%d,'
            '"eventTime":"2026-11-24T12:00:00.000Z"}' % (i, p, (i % 7) * 10,
                                                         i % 5 + 1))


def produce(bs, parts, start, n):
    for p in parts:
        kafka.produce(bs, TOPIC, p, [event(p, i) for i in range(start,
                                                                 start + n)])


def audit(emu, parts, per_part):
    rows = emu.query("GamePlay | summarize c=count(), d=dcount(PlayerID), "
                     "lo=min(PlayerID), hi=max(PlayerID) by GameID")
    got = {r["GameID"]: r for r in rows}
    for p in parts:
        r = got.get(p)
        assert r is not None, "partition %d: nothing delivered" % p
        assert r["c"] == r["d"], "partition %d: %d rows, %d distinct " \
            "(duplicates)" % (p, r["c"], r["d"])
        assert r["c"] == per_part, "partition %d: %d rows, want %d" % (
            p, r["c"], per_part)
        assert r["lo"] == 0 and r["hi"] == per_part - 1, r
    assert set(got) <= set(parts), got


def dm(emu, faults=None):
    if faults is not None:
        return emu._ok("POST", "/_emulator/dm/faults", faults)
    return emu._ok("GET", "/_emulator/dm")


def connector_config(path, emu_url, bs, streaming=False):
    """The seed's connector config (tests/fixtures/connector-gameplay.json)
    pointed at the emulator, with "streaming": false."""
    with open(os.path.join(harness.SRC, "tests", "fixtures",
                           "connector-gameplay.json")) as f:
        cfg = json.load(f)
    c = cfg.get("config", cfg)
    c["kusto.ingestion.url"] = emu_url
    c["kusto.query.url"] = emu_url
    c["aad.auth.strategy"] = "az_dev_token"
    c["aad.auth.accesstoken"] = "dev-token"
    c["kusto.tables.topics.mapping"] = (
        "[{'topic': 'gameplay','db': 'leaderboard', 'table': 'GamePlay',"
        "'format': 'json', 'mapping':'gameplay_json_mapping', "
        "'streaming': '%s'}]" % ("true" if streaming else "false"))
    c["flush.interval.ms"] = "100"
    c["errors.retry.backoff.time.ms"] = "200"
    c["consumer.override.bootstrap.servers"] = bs
    for k in [k for k in c if k.startswith("aad.auth.app") or
              k == "aad.auth.authority"]:
        del c[k]
    with open(path, "w") as f:
        json.dump(cfg, f)


class QueuedCase(harness.TmpDirCase):

    def setUp(self):
        super().setUp()
        self.kafka = kafka.cluster(topics=[(TOPIC, PARTS)])
        self.addCleanup(self.kafka.stop)
        self.bs = self.kafka.bootstrap
        self.parts = list(range(PARTS))
        self.az = azurite.Azurite().start()
        self.addCleanup(self.az.stop)
        self.emu = adx.Emulator(extra=self.az.emulator_args()).start()
        self.addCleanup(self.emu.stop)
        # the seed's table and mapping, no streaming policy
        self.emu.mgmt(adx.SEED_CREATE_TABLE)
        self.emu.mgmt(adx.SEED_CREATE_MAPPING)
        self.cfg = os.path.join(self.tmp, "connector.json")
        connector_config(self.cfg, self.emu.url, self.bs)

    def start_kadx(self, name):
        p = harness.Proc([harness.KADX, "run", "-c", self.cfg,
                          "--admin-listen", "127.0.0.1:0"], cwd=self.tmp,
                         name=name)
        p.wait_for("running (group", timeout=30, what="the running line")
        return p

    def admin(self, p, path):
        line = p.wait_for("admin: listening on", timeout=30,
                          what="the admin line")
        port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
        import http.client
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        try:
            conn.request("GET", path)
            r = conn.getresponse()
            return r.status, r.read().decode()
        finally:
            conn.close()

    def native_config(self, group, ingestion, forwarder):
        """A kadx.json with one GamePlay route in the given ingestion mode
        (fast retries besides `forwarder`); returns its path."""
        cfg = os.path.join(self.tmp, "kadx.json")
        fw = {"retry_initial_ms": 100, "retry_max_ms": 1000}
        fw.update(forwarder)
        with open(cfg, "w") as f:
            json.dump({
                "kafka": {"bootstrap.servers": self.bs, "group.id": group},
                "adx": {"ingest_url": self.emu.url},
                "routes": [{"topic": TOPIC, "database": "leaderboard",
                            "table": "GamePlay", "format": "json",
                            "mapping": adx.GAMEPLAY_MAPPING,
                            "ingestion": ingestion}],
                "journal": {"path": os.path.join(self.tmp, "j.db")},
                "forwarder": fw,
                "admin": {"listen": "127.0.0.1:0"}}, f)
        return cfg

    def wait_rows(self, n, p, timeout):
        def done():
            if not p.alive():
                raise AssertionError("kadx exited\n" + p.tail())
            return self.emu.count("GamePlay") >= n
        try:
            wait_until(done, timeout=timeout, interval=0.25,
                       what="%d rows" % n)
        except AssertionError:
            print(p.tail(60))
            raise

    def test_streaming_false_kill9_and_storage_faults(self):
        per_part = 12500 if harness.FULL else 1250
        kills = 5 if harness.FULL else 2
        rnd = random.Random(int(os.environ.get("KADX_SEED", "0")) or None)
        done = threading.Event()
        errors = []

        def producer():
            try:
                chunk = 2500 if harness.FULL else 250
                for start in range(0, per_part, chunk):
                    produce(self.bs, self.parts, start, chunk)
            except Exception as e:  # reported below
                errors.append(e)
            finally:
                done.set()

        threading.Thread(target=producer, daemon=True).start()
        # storage-side faults: failed blobs (transient reports: retried,
        # the same tag) and late reports (kills land while reports are
        # awaited: the batch is posted again and ADX skips it)
        dm(self.emu, {"fail_count": 3, "fail_permanent": False,
                      "fail_code": "Download_TransientError",
                      "status_delay_ms": 300})
        for n in range(kills):
            k = self.start_kadx("kadx run %d" % n)
            try:
                k.p.wait(rnd.uniform(2.0, 4.0))
                self.fail("kadx exited before its kill\n" + k.tail())
            except subprocess.TimeoutExpired:
                pass
            k.kill()
        self.assertTrue(done.wait(120), "producer did not finish")
        self.assertEqual(errors, [])
        dm(self.emu, {"status_delay_ms": 0})
        k = self.start_kadx("kadx run final")
        self.wait_rows(per_part * PARTS, k, 300 if harness.FULL else 45)
        # /status and /metrics: the mode and nothing left waiting
        st, body = self.admin(k, "/status")
        self.assertEqual(st, 200)
        route = json.loads(body)["routes"][0]["forwarder"]
        self.assertEqual(route["ingestion"], "queued")
        wait_until(lambda: json.loads(self.admin(k, "/status")[1])
                   ["routes"][0]["forwarder"]["awaiting_report"] == 0,
                   timeout=20,
                   what="no report awaited")
        st, metrics = self.admin(k, "/metrics")
        self.assertIn('kadx_route_awaiting_report{route="gameplay",'
                      'ingestion="queued"} 0', metrics)
        self.assertEqual(k.stop(), 0)
        audit(self.emu, self.parts, per_part)
        stats = dm(self.emu)["stats"]
        self.assertGreaterEqual(stats["fired_fail"], 3)
        self.assertGreater(stats["applied"], 0)
        # nothing came by streaming: the table has no streaming policy
        self.assertEqual(self.emu.stats()["ingest_requests"], 0,
                         self.emu.stats())

    def awaiting(self, p):
        st, body = self.admin(p, "/status")
        if st != 200:
            return 0
        return json.loads(body)["routes"][0]["forwarder"]["awaiting_report"]

    def test_50k_kill9_five_times_through_storage_faults(self):
        """Issue 15's acceptance point: the seed's connector config with
        "streaming": false, 50,000 events produced to the real broker while
        kadx runs, SIGKILL five times (three of them while reports are
        awaited), and Azure Storage faults between kadx and Azurite
        (storage_proxy.py: 503 ServerBusy, 500 InternalError, 403
        AuthenticationFailed, a reset before any answer, a reset after
        Azurite took a Put Blob or Put Message). Every event lands exactly
        once (GameID, PlayerID unique), with no dedupe column: the table
        keeps the seed's five columns."""
        per_part = 12500
        total = per_part * PARTS
        t0 = time.monotonic()
        px = storage_proxy.StorageProxy(self.az).start()
        self.addCleanup(px.stop)
        self.emu.stop()
        self.emu = adx.Emulator(extra=px.emulator_args()).start()
        self.emu.mgmt(adx.SEED_CREATE_TABLE)
        self.emu.mgmt(adx.SEED_CREATE_MAPPING)
        connector_config(self.cfg, self.emu.url, self.bs)
        # reports held back 50 ms (the emulator's worker takes one message
        # at a time): kills land while they are awaited
        dm(self.emu, {"status_delay_ms": 50})
        px.plan(every=5, kinds=storage_proxy.KINDS)
        done = threading.Event()
        errors = []

        def producer():
            try:
                for start in range(0, per_part, 1250):
                    produce(self.bs, self.parts, start, 1250)
            except Exception as e:  # reported below
                errors.append(e)
            finally:
                done.set()

        threading.Thread(target=producer, daemon=True).start()
        kills = []
        for n in range(5):
            k = self.start_kadx("kadx run %d" % n)
            target = (n + 1) * total // 7
            seen = [0]

            def awaited():
                seen[0] = self.awaiting(k)
                return seen[0] >= 1

            try:
                self.wait_rows(target, k, 60)
                if n % 2 == 0:  # kills 1, 3, 5: while reports are awaited
                    wait_until(awaited, timeout=20, interval=0.02,
                               what="a report awaited")
            except AssertionError:
                print(px.snapshot())
                raise
            k.kill()
            kills.append((self.emu.count("GamePlay"), seen[0]))
        self.assertTrue(done.wait(120), "producer did not finish")
        self.assertEqual(errors, [])
        dm(self.emu, {"status_delay_ms": 0})
        k = self.start_kadx("kadx run final")
        self.wait_rows(total, k, 120)
        wait_until(lambda: self.awaiting(k) == 0, timeout=30,
                   what="no report awaited")
        self.assertEqual(k.stop(), 0)
        got = px.snapshot()
        print("50k run: %.1f s; kills at (rows, awaiting) %s; proxy %s; "
              "dm %s" % (time.monotonic() - t0, kills, got,
                         dm(self.emu)["stats"]))
        audit(self.emu, self.parts, per_part)
        self.assertEqual(self.emu.count("GamePlay"), total)
        # every fault kind really fired
        for kind in storage_proxy.KINDS:
            self.assertGreater(got[kind], 0, (kind, got))
        # kills 1, 3 and 5 came while reports were awaited
        self.assertEqual([a > 0 for _, a in kills][::2], [True] * 3, kills)
        stats = dm(self.emu)["stats"]
        # resends of batches that had landed (the reset after a Put
        # Message, the kills while awaiting): ADX skipped them
        self.assertGreater(stats["skipped"], 0, stats)
        # no dedupe column: the seed's schema as created
        schema = self.emu.mgmt(".show table GamePlay cslschema")
        t = schema["Tables"][0]
        cols = [c["ColumnName"] for c in t["Columns"]]
        self.assertEqual(t["Rows"][0][cols.index("Schema")],
                         "PlayerID:int,GameID:int,Win:long,Stake:int,"
                         "EventTime:datetime")
        self.assertEqual(self.emu.stats()["ingest_requests"], 0)

    def test_large_batches_go_as_blocks(self):
        """Batches at forwarder.batch_max_bytes's maximum (4 MiB of events)
        through Azurite in blocks (Put Block + Put Block List): the blocks
        are 256 KiB here (KADX_QUEUED_BLOCK_BYTES) so that the gzip body,
        ~2 MiB, takes several; storage faults on some of them (503, a reset
        after Azurite took one). Every event once, in batches of thousands."""
        px = storage_proxy.StorageProxy(self.az).start()
        self.addCleanup(px.stop)
        self.emu.stop()
        self.emu = adx.Emulator(extra=px.emulator_args()).start()
        self.emu.mgmt(adx.SEED_CREATE_TABLE)
        self.emu.mgmt(adx.SEED_CREATE_MAPPING)
        per_part = 5000
        rnd = random.Random(15)
        for p in self.parts:
            # ~1 KiB an event, half of it random: gzip keeps about half
            kafka.produce(self.bs, TOPIC, p, [
                event(p, i)[:-1] + ',"pad":"%s"}' % "%0900x" %
                rnd.getrandbits(3600) for i in range(per_part)])
        cfg = self.native_config("g-big", "queued",
                                 {"batch_max_bytes": 4194304,
                                  "linger_ms": 500})
        px.plan(every=13, kinds=("busy503", "reset_after"))
        k = harness.kadx("run", "-c", cfg, name="kadx run big",
                         env={"KADX_QUEUED_BLOCK_BYTES": "262144"})
        k.wait_for("running (group", timeout=30, what="the running line")
        self.wait_rows(per_part * PARTS, k, 60)
        self.assertEqual(k.stop(), 0)
        audit(self.emu, self.parts, per_part)
        got = px.snapshot()
        stats = dm(self.emu)["stats"]
        print("large batches: proxy %s; dm %s" % (got, stats))
        self.assertGreater(got["put_block"], 4 * got["put_block_list"], got)
        self.assertGreaterEqual(got["put_block_list"], 5, got)
        self.assertEqual(got["put_blob"], 0, got)
        self.assertGreater(got["busy503"] + got["reset_after"], 0, got)
        # batches of thousands of events (4 MiB of them each at most)
        self.assertGreaterEqual(stats["rows"] / stats["applied"], 2000, stats)

    def test_kill_while_report_awaited_resend_is_skipped(self):
        """A batch applied in ADX whose report kadx never read (killed):
        the next start posts it again with the same ingest-by tag and ADX
        skips it; the Skipped report counts as delivered."""
        dm(self.emu, {"status_delay_ms": 4000})
        produce(self.bs, self.parts, 0, 100)
        k = self.start_kadx("kadx run 1")
        wait_until(lambda: dm(self.emu)["stats"]["applied"] >= 1,
                   timeout=30, what="a blob applied")
        # applied, its report held back 4 s: kadx is awaiting it
        st, body = self.admin(k, "/status")
        self.assertGreaterEqual(json.loads(body)["routes"][0]["forwarder"]
                                ["awaiting_report"], 1, body)
        k.kill()
        dm(self.emu, {"status_delay_ms": 0})
        k = self.start_kadx("kadx run 2")
        self.wait_rows(100 * PARTS, k, 45)
        k.wait_for("already in ADX", timeout=30,
                   what="a Skipped report taken as delivered")
        self.assertEqual(k.stop(), 0)
        audit(self.emu, self.parts, 100)
        self.assertGreaterEqual(dm(self.emu)["stats"]["skipped"], 1)

    def test_permanent_failure_report_bisects(self):
        """A Failed report with FailureStatus Permanent is handled like a
        streaming permanent error (INV-6): the batch is bisected, the
        halves (new ids, new tags) go through, nothing is dead-lettered
        because nothing was bad, every event once."""
        with open(self.cfg) as f:
            cfg = json.load(f)
        # LOG: bisect and dead-letter (the connector's FAIL pauses instead)
        cfg.get("config", cfg)["behavior.on.error"] = "LOG"
        with open(self.cfg, "w") as f:
            json.dump(cfg, f)
        dm(self.emu, {"fail_count": 1, "fail_permanent": True,
                      "fail_code": "BadRequest_InvalidBlob"})
        produce(self.bs, self.parts, 0, 100)
        k = self.start_kadx("kadx run")
        self.wait_rows(100 * PARTS, k, 45)
        fw = json.loads(self.admin(k, "/status")[1])["routes"][0]["forwarder"]
        self.assertGreaterEqual(fw["permanent_errors"], 1, fw)
        self.assertGreaterEqual(fw["splits"], 1, fw)
        self.assertEqual(fw["dead_events"], 0, fw)
        self.assertEqual(k.stop(), 0)
        audit(self.emu, self.parts, 100)
        self.assertEqual(dm(self.emu)["stats"]["fired_fail"], 1)

    def test_short_lived_sas_is_refreshed(self):
        """The emulator's SAS lives 8 s (as a real one expires): kadx
        fetches the resources again before half of it is gone, so every
        blob, row and message goes out with a live SAS, over 12 s of
        traffic; every event once."""
        self.emu.stop()
        self.emu = adx.Emulator(extra=self.az.emulator_args() +
                                ["--sas-lifetime", "8"]).start()
        self.emu.mgmt(adx.SEED_CREATE_TABLE)
        self.emu.mgmt(adx.SEED_CREATE_MAPPING)
        connector_config(self.cfg, self.emu.url, self.bs)
        before = self.emu.stats()["mgmt"]
        k = self.start_kadx("kadx run")
        pace = threading.Event()
        for r in range(12):  # one round a second: traffic over 12 s
            produce(self.bs, self.parts, r * 25, 25)
            pace.wait(1.0)
        self.wait_rows(300 * PARTS, k, 45)
        self.assertEqual(k.stop(), 0)
        audit(self.emu, self.parts, 300)
        # resources + identity token: two commands per fetch, >= 3 fetches
        self.assertGreaterEqual(self.emu.stats()["mgmt"] - before, 6)

    def test_managed_falls_back_when_streaming_is_off(self):
        """A native route with ingestion "managed" on a table without a
        streaming policy: the first streaming request is refused (400
        StreamingIngestionPolicyNotEnabled, nothing applied), that batch and
        the next ones go queued; every event once."""
        cfg = self.native_config("g-mgd", "managed", {"linger_ms": 50})
        # the online check does not ask for a streaming policy here
        p = harness.kadx("run", "--check", "--online", "-c", cfg,
                         name="kadx check online")
        self.assertEqual(p.wait(90), 0, "\n".join(p.err))
        self.assertIn("ok   adx: route 'gameplay': streaming ingestion not "
                      "enabled on the table or its database: the managed "
                      "route sends queued", "\n".join(p.err))
        produce(self.bs, self.parts, 0, 200)
        k = harness.kadx("run", "-c", cfg, name="kadx run managed")
        k.wait_for("running (group", timeout=30, what="the running line")
        self.wait_rows(200 * PARTS, k, 45)
        fw = json.loads(self.admin(k, "/status")[1])["routes"][0]["forwarder"]
        self.assertEqual(fw["ingestion"], "managed")
        self.assertGreaterEqual(fw["managed_fallbacks"], 1, fw)
        self.assertEqual(fw["permanent_errors"], 0, fw)
        self.assertEqual(fw["dead_events"], 0, fw)
        self.assertEqual(k.stop(), 0)
        audit(self.emu, self.parts, 200)
        self.assertGreaterEqual(self.emu.stats()["ingest_requests"], 1)


if __name__ == "__main__":
    harness.main()
