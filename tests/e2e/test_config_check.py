"""`kadx run --check -c FILE` (issue 2): valid native and connector configs
print the effective config with secrets masked and exit 0; invalid ones exit
2 with their message and start nothing; no leak on either path (valgrind on
a non-sanitized binary, LeakSanitizer on a sanitized one).
"""
import json
import os
import shutil
import subprocess

import harness
from harness import run

FIX = os.path.join(harness.SRC, "tests", "fixtures")
NATIVE_FULL = os.path.join(FIX, "kadx-full.json")
NATIVE_GAMEPLAY = os.path.join(FIX, "kadx-gameplay.json")
CONNECTOR = os.path.join(FIX, "connector-gameplay.json")

SECRETS = ["static-fixture-token-abcdef", "kafka-fixture-password-42",
           "admin-fixture-token-0123456789",
           "Xk8Q~fixture.appkey.NotARealSecret-123"]

# no inherited Kafka settings: each test states what it wants
CLEAN_ENV = {"KADX_BOOTSTRAP_SERVERS": "", "KADX_GROUP_ID": ""}


def check(*args, env=None):
    e = dict(CLEAN_ENV)
    if env:
        e.update(env)
    return run("run", "--check", *args, env=e, timeout=60)


def is_sanitized(path):
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


class TestConfigCheck(harness.TmpDirCase):
    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def assert_no_secret(self, *texts):
        for t in texts:
            for s in SECRETS:
                self.assertNotIn(s, t)

    def test_native_full(self):
        rc, out, err = check("-c", NATIVE_FULL)
        self.assertEqual(rc, 0, err)
        cfg = json.loads(out)
        self.assertEqual(cfg["kafka"]["sasl.password"], "***")
        self.assertEqual(cfg["adx"]["auth"]["token"], "***")
        self.assertEqual(cfg["admin"]["token"], "***")
        self.assertEqual(cfg["forwarder"]["batch_max_bytes"], 4 * 1024 * 1024)
        self.assertEqual(cfg["journal"]["retention_ms"], 48 * 3600 * 1000)
        self.assertEqual([r["table"] for r in cfg["routes"]],
                         ["GamePlay", "Orders", "Raw"])
        self.assert_no_secret(out, err)

    def test_connector_with_flag(self):
        rc, out, err = check("-c", CONNECTOR, "--bootstrap-servers",
                             "127.0.0.1:9092")
        self.assertEqual(rc, 0, err)
        cfg = json.loads(out)
        self.assertEqual(cfg["kafka"]["bootstrap.servers"], "127.0.0.1:9092")
        # Kafka Connect's group for a sink connector named adx-sink-gameplay
        self.assertEqual(cfg["kafka"]["group.id"], "connect-adx-sink-gameplay")
        self.assertEqual(cfg["adx"]["auth"]["method"], "client_secret")
        self.assertEqual(cfg["adx"]["auth"]["client_secret"], "***")
        r = cfg["routes"][0]
        self.assertEqual((r["topic"], r["database"], r["table"], r["format"],
                          r["mapping"]),
                         ("gameplay", "leaderboard", "GamePlay", "json",
                          "gameplay_json_mapping"))
        # the connector-only keys are named once, at info level
        self.assertIn("connector keys with no meaning for kadx (accepted): "
                      "connector.class, tasks.max, key.converter, "
                      "value.converter", err)
        self.assert_no_secret(out, err)

        # same route and auth as the equivalent native file
        rc, nout, err = check("-c", NATIVE_GAMEPLAY)
        self.assertEqual(rc, 0, err)
        native = json.loads(nout)
        self.assertEqual(native["routes"], cfg["routes"])
        self.assertEqual(native["adx"], cfg["adx"])

    def test_connector_needs_bootstrap(self):
        rc, out, err = check("-c", CONNECTOR)
        self.assertEqual(rc, 2)
        self.assertEqual(out, "")
        self.assertIn("missing required key 'kafka.bootstrap.servers'", err)
        rc, out, err = check("-c", CONNECTOR, env={
            "KADX_BOOTSTRAP_SERVERS": "10.1.2.3:9092",
            "KADX_GROUP_ID": "from-env"})
        self.assertEqual(rc, 0, err)
        cfg = json.loads(out)
        self.assertEqual(cfg["kafka"]["bootstrap.servers"], "10.1.2.3:9092")
        self.assertEqual(cfg["kafka"]["group.id"], "from-env")

    def test_connector_cannot_honour_warning(self):
        path = self.write("conn.json", json.dumps({
            "topics": "gameplay",
            "kusto.ingestion.url": "https://ingest-c.kusto.windows.net",
            "aad.auth.strategy": "managed_identity",
            "kusto.tables.topics.mapping":
                "[{'topic':'gameplay','db':'d','table':'T','format':'json',"
                "'streaming':'false'}]",
            "tempdir.path": "/var/tmp",
            "proxy.host": "proxy.example.com",
            "proxy.port": "3128",
            "consumer.override.group.id": "g1",
        }))
        rc, out, err = check("-c", path, "--bootstrap-servers", "b:1")
        self.assertEqual(rc, 0, err)
        warn = [l for l in err.splitlines() if " warn " in l]
        self.assertEqual(len(warn), 1, err)
        self.assertIn("tempdir.path", warn[0])
        # honoured: "streaming": false is queued ingestion (issue 15)
        self.assertNotIn("streaming", warn[0])
        self.assertNotIn("proxy", warn[0])  # honoured: adx.proxy
        cfg = json.loads(out)
        self.assertEqual(cfg["routes"][0]["ingestion"], "queued")
        # the DM endpoint is kusto.ingestion.url as given
        self.assertEqual(cfg["adx"]["dm_url"],
                         "https://ingest-c.kusto.windows.net")
        self.assertEqual(cfg["adx"]["proxy"], "http://proxy.example.com:3128")
        self.assertEqual(cfg["adx"]["ingest_url"], "https://c.kusto.windows.net")

    def test_env_substitution(self):
        path = self.write("env.json", json.dumps({
            "kafka": {"bootstrap.servers": "${T_BOOT}", "group.id": "g"},
            "adx": {"ingest_url": "http://127.0.0.1:8080",
                    "auth": {"method": "static_token",
                             "token": "${T_TOKEN}"}},
            "routes": [{"topic": "t", "database": "d", "table": "T"}],
        }))
        rc, out, err = check("-c", path, env={"T_BOOT": "h:1",
                                              "T_TOKEN": "tok-from-env-99"})
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["kafka"]["bootstrap.servers"], "h:1")
        self.assertNotIn("tok-from-env-99", out + err)
        env = dict(os.environ)
        env.pop("T_TOKEN", None)
        p = subprocess.run([harness.KADX, "run", "--check", "-c", path],
                           env=dict(env, T_BOOT="h:1"), capture_output=True,
                           text=True, timeout=60)
        self.assertEqual(p.returncode, 2)
        self.assertIn("environment variable 'T_TOKEN' is not set (used in "
                      "'adx.auth.token')", p.stderr)

    def test_invalid_configs(self):
        base = {
            "kafka": {"bootstrap.servers": "b:1", "group.id": "g"},
            "adx": {"ingest_url": "http://127.0.0.1:8080"},
            "routes": [{"topic": "t", "database": "d", "table": "T"}],
        }
        cases = [
            ({"routes": [{"topic": "t", "database": "d", "table": "T"},
                         {"topic": "u", "database": "d", "tabel": "T"}]},
             "unknown key 'routes[1].tabel'"),
            ({"forwarder": {"linger_ms": True}},
             "'forwarder.linger_ms' must be an integer"),
            ({"forwarder": {"batch_max_bytes": 8 * 1024 * 1024}},
             "'forwarder.batch_max_bytes' (8388608) must be at most 4194304"),
            ({"adx": {"ingest_url": "http://kusto.example.com"}},
             "'adx.ingest_url' must use https://"),
            ({"routes": [{"topic": "t", "database": "d", "table": "A"},
                         {"topic": "t", "database": "d", "table": "B"}]},
             "routes[1]: topic 't' is already routed by routes[0]"),
            ({"kafka": {"bootstrap.servers": "b:1", "group.id": "g",
                        "sasl.password": {"v": "pw-nested-secret"}}},
             "'kafka.sasl.password' must be a string, number or boolean"),
        ]
        for i, (patch, want) in enumerate(cases):
            cfg = dict(base)
            cfg.update(patch)
            path = self.write("bad%d.json" % i, json.dumps(cfg))
            rc, out, err = check("-c", path)
            self.assertEqual(rc, 2, want)
            self.assertEqual(out, "")
            self.assertIn(want, err)
            self.assertNotIn("pw-nested-secret", err)

        path = self.write("syntax.json", '{"kafka": {\n  "a": 1,\n}')
        rc, out, err = check("-c", path)
        self.assertEqual(rc, 2)
        self.assertIn("the config is not valid JSON (line 3, column ", err)

        rc, out, err = check("-c", os.path.join(self.tmp, "missing.json"))
        self.assertEqual(rc, 2)
        self.assertIn("No such file or directory", err)

        big = self.write("big.json", " " * (1024 * 1024 + 1))
        rc, out, err = check("-c", big)
        self.assertEqual(rc, 2)
        self.assertIn("is larger than 1048576 bytes", err)

    def test_usage(self):
        rc, out, err = run("run", "--check")
        self.assertEqual(rc, 2)
        self.assertIn("a config file is required (-c FILE)", err)
        rc, out, err = run("run", "--frob", "-c", NATIVE_FULL)
        self.assertEqual(rc, 2)
        self.assertIn("unknown option '--frob'", err)
        rc, out, err = run("run", "-c")
        self.assertEqual(rc, 2)
        self.assertIn("option '-c' needs a value", err)
        rc, out, err = run("run", "--online", "-c", NATIVE_FULL)
        self.assertEqual(rc, 2)
        self.assertIn("--online goes with --check", err)
        rc, out, err = run("run", "--help")
        self.assertEqual(rc, 0)
        self.assertIn("usage: kadx run -c FILE [--check]", out)
        rc, out, err = check("--config=" + NATIVE_GAMEPLAY, "--group-id=gg")
        self.assertEqual(rc, 0, err)
        self.assertEqual(json.loads(out)["kafka"]["group.id"], "gg")

    def test_no_leaks(self):
        """valgrind on a plain build (KADX_PLAIN_BIN, or KADX_BIN when it is
        not sanitized); under ASan, LeakSanitizer checks the same paths
        (harness sets detect_leaks=1: a leak makes the exit code 23)."""
        bad = self.write("bad.json", json.dumps({
            "kafka": {"bootstrap.servers": "b:1", "group.id": "g"},
            "adx": {"ingest_url": "http://127.0.0.1:8080"},
            "routes": [{"topic": "t", "database": "d", "tabel": "T"}]}))
        plain = os.environ.get("KADX_PLAIN_BIN")
        if not plain and not is_sanitized(harness.KADX):
            plain = harness.KADX
        runs = [([NATIVE_FULL], 0), ([CONNECTOR, "--bootstrap-servers", "b:1"],
                                     0), ([bad], 2)]
        if plain and shutil.which("valgrind"):
            for args, want in runs:
                p = subprocess.run(
                    ["valgrind", "--leak-check=full", "--error-exitcode=99",
                     "--errors-for-leak-kinds=definite,indirect,possible",
                     plain, "run", "--check", "-c"] + args,
                    capture_output=True, text=True, timeout=120)
                self.assertEqual(p.returncode, want, p.stderr[-3000:])
                self.assertIn("ERROR SUMMARY: 0 errors", p.stderr)
        else:
            env = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0"}
            for args, want in runs:
                rc, out, err = check("-c", *args, env=env)
                self.assertEqual(rc, want, err)
                self.assertNotIn("LeakSanitizer", err)


if __name__ == "__main__":
    harness.main()
