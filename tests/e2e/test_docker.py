"""docker/ (issue 8): the compose stack, Dockerfile, configs and KQL.

No Docker engine runs on these machines, so the files are checked instead:
`docker compose config` when a compose that works without an engine is
installed, and always a YAML parse plus consistency checks: services,
images, KRaft settings, ports, volumes, network namespaces, profiles; the
Dockerfile's packages against what kadx really links (objdump + dpkg) and
against .ci/install-deps; and every kadx command in the compose file run
for real: `kadx run --check` on each mounted config with the service's
environment, the event generator's exact command against the Kafka mock
cluster, and the emulator with kql/apply.sh applying kql/setup.kql.
"""
import base64
import json
import os
import re
import shutil
import signal
import subprocess
import unittest
import urllib.request

import harness
import kafka
from harness import run

DOCKER = os.path.join(harness.SRC, "docker")
COMPOSE = os.path.join(DOCKER, "docker-compose.yml")
DOCKERFILE = os.path.join(DOCKER, "Dockerfile")
SETUP_KQL = os.path.join(DOCKER, "kql", "setup.kql")
APPLY_SH = os.path.join(DOCKER, "kql", "apply.sh")

# Values for the variables a user supplies from the shell (compose entries
# without a value): any well-formed value makes `run --check` meaningful.
FAKE_ENV = {
    "KADX_ADX_URL": "https://mycluster.westeurope.kusto.windows.net",
    "AZURE_TENANT_ID": "00000000-0000-0000-0000-000000000001",
    "AZURE_CLIENT_ID": "00000000-0000-0000-0000-000000000002",
    "AZURE_CLIENT_SECRET": "not-a-real-secret-123",
    "KADX_ADMIN_TOKEN": "not-a-real-admin-token",
}


def load_yaml(path):
    """The file parsed with PyYAML; falls back to Debian's python3-yaml
    under /usr/bin/python3 when this interpreter has no yaml module."""
    try:
        import yaml  # noqa: F401
        with open(path) as f:
            return yaml.safe_load(f)
    except ImportError:
        pass
    p = subprocess.run(
        ["/usr/bin/python3", "-c",
         "import json, sys, yaml; "
         "json.dump(yaml.safe_load(open(sys.argv[1])), sys.stdout)", path],
        capture_output=True, timeout=30)
    if p.returncode != 0:
        raise AssertionError("no YAML parser: install python3-yaml (bash "
                             ".ci/install-deps)\n" + p.stderr.decode())
    return json.loads(p.stdout)


def env_map(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):
        out = {}
        for e in env:
            k, _, v = e.partition("=")
            out[k] = v if "=" in e else None
        return out
    return {k: (None if v is None else str(v)) for k, v in env.items()}


def parse_port(spec):
    """'127.0.0.1:8081:8081' -> (ip, host_port, container_port)."""
    parts = str(spec).split(":")
    if len(parts) == 3:
        return parts[0], int(parts[1]), int(parts[2])
    if len(parts) == 2:
        return "", int(parts[0]), int(parts[1])
    raise AssertionError("unsupported port spec %r" % spec)


def arg_after(args, flag):
    i = args.index(flag)
    return args[i + 1]


class TestDocker(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.doc = load_yaml(COMPOSE)
        cls.svcs = cls.doc["services"]
        with open(DOCKERFILE) as f:
            cls.dockerfile = f.read()
        with open(SETUP_KQL) as f:
            cls.kql = f.read()

    # --- the compose file as a whole --------------------------------------

    def test_compose_config_validates(self):
        """`docker compose config` (or docker-compose) when one is installed
        and works without an engine; the YAML parse otherwise."""
        for cmd in (["docker", "compose"], ["docker-compose"]):
            if shutil.which(cmd[0]) is None:
                continue
            probe = subprocess.run(cmd + ["version"], capture_output=True,
                                   timeout=30)
            if probe.returncode != 0:
                continue
            p = subprocess.run(cmd + ["--profile", "emulator", "--profile",
                                      "azure", "config", "-q"],
                               cwd=DOCKER, capture_output=True, timeout=60,
                               env=dict(os.environ, **FAKE_ENV))
            self.assertEqual(p.returncode, 0, p.stderr.decode())
            print("validated with: " + " ".join(cmd) + " config")
            return
        print("no docker compose here: YAML parse and key checks only")
        # every key is one the compose specification defines, with the
        # type it wants (what `compose config` would reject first)
        for k in self.doc:
            self.assertTrue(k in ("name", "services", "volumes", "networks")
                            or k.startswith("x-"), k)
        svc_keys = {"image", "build", "command", "entrypoint", "environment",
                    "ports", "volumes", "depends_on", "healthcheck",
                    "restart", "profiles", "network_mode", "hostname"}
        lists = ("ports", "volumes", "profiles")
        for name, svc in self.svcs.items():
            self.assertLessEqual(set(svc), svc_keys, name)
            for k in lists:
                self.assertIsInstance(svc.get(k, []), list, name + "." + k)
            for k in ("command", "entrypoint"):
                self.assertIsInstance(svc.get(k, []), list, name + "." + k)
                self.assertTrue(all(isinstance(a, str)
                                    for a in svc.get(k, [])), name)
            self.assertIn(svc.get("restart", "no"),
                          ("no", "always", "on-failure", "unless-stopped"))
            hc = svc.get("healthcheck")
            if hc:
                self.assertLessEqual(set(hc), {"test", "interval", "timeout",
                                               "retries", "start_period"})
                self.assertIn(hc["test"][0], ("CMD", "CMD-SHELL"), name)
                for k in ("interval", "timeout"):
                    self.assertRegex(hc[k], r"^\d+(ms|s|m)$", name)
            for k, v in env_map(svc).items():
                self.assertRegex(k, r"^[A-Z_][A-Z0-9_]*$", name)

    def test_services_and_profiles(self):
        want = {
            "kafka": None, "kafka-init": None, "kafka-ui": None,
            "producer": None, "kadx": ["azure"],
            "adx-emulator": ["emulator"], "adx-setup": ["emulator"],
            "kadx-local": ["emulator"],
        }
        self.assertEqual(sorted(self.svcs), sorted(want))
        for name, profiles in want.items():
            self.assertEqual(self.svcs[name].get("profiles"), profiles, name)
        for name, svc in self.svcs.items():
            image = svc.get("image", "")
            self.assertTrue(image, name + " has no image")
            if not image.startswith("kadx:"):
                # third-party images are pinned to a version
                self.assertRegex(image, r"^[\w./-]+:v?\d+(\.\d+)+$", name)

    def test_kafka_is_kraft_and_listeners_agree(self):
        k = self.svcs["kafka"]
        self.assertTrue(k["image"].startswith("apache/kafka:"))
        self.assertNotIn("zookeeper", json.dumps(self.doc).lower())
        env = env_map(k)
        roles = set(env["KAFKA_PROCESS_ROLES"].split(","))
        self.assertEqual(roles, {"broker", "controller"})
        listeners = dict(l.split("://") for l in
                         env["KAFKA_LISTENERS"].split(","))
        advertised = dict(l.split("://") for l in
                          env["KAFKA_ADVERTISED_LISTENERS"].split(","))
        protomap = dict(p.split(":") for p in
                        env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
        for name in list(listeners) + list(advertised):
            self.assertIn(name, protomap, name)
        for name, addr in advertised.items():
            self.assertIn(name, listeners)
            self.assertEqual(addr.rsplit(":", 1)[1],
                             listeners[name].rsplit(":", 1)[1], name)
        ctrl = env["KAFKA_CONTROLLER_LISTENER_NAMES"]
        self.assertIn(ctrl, listeners)
        self.assertNotIn(ctrl, advertised)
        voter_id, voter = env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split("@")
        self.assertEqual(voter_id, env["KAFKA_NODE_ID"])
        self.assertEqual(voter.split(":")[1],
                         listeners[ctrl].rsplit(":", 1)[1])
        self.assertIn(env["KAFKA_INTER_BROKER_LISTENER_NAME"], advertised)
        # CLUSTER_ID: a base64url UUID (16 bytes)
        cid = env["CLUSTER_ID"]
        self.assertEqual(len(base64.urlsafe_b64decode(cid + "==")), 16)
        # the host reaches Kafka on the advertised localhost listener
        host_ports = {parse_port(p)[1]: parse_port(p)[2]
                      for p in k.get("ports", [])}
        ext = [a for a in advertised.values() if a.startswith("localhost:")]
        self.assertEqual(len(ext), 1)
        port = int(ext[0].split(":")[1])
        self.assertEqual(host_ports.get(port), port)
        # everything inside the stack uses the in-network listener
        internal = advertised["PLAINTEXT"]
        self.assertEqual(internal.split(":")[0], "kafka")
        self.assertEqual(k.get("hostname", "kafka"), "kafka")
        uses = [arg_after(self.svcs["kafka-init"]["command"],
                          "--bootstrap-server"),
                env_map(self.svcs["kafka-ui"])[
                    "KAFKA_CLUSTERS_0_BOOTSTRAPSERVERS"]]
        for name, svc in self.svcs.items():
            b = env_map(svc).get("KADX_BOOTSTRAP_SERVERS")
            if b is not None:
                uses.append(b)
        for b in uses:
            self.assertEqual(b, internal)

    def test_topic_init(self):
        cmd = self.svcs["kafka-init"]["command"]
        self.assertTrue(cmd[0].endswith("kafka-topics.sh"))
        self.assertIn("--create", cmd)
        self.assertIn("--if-not-exists", cmd)
        self.assertEqual(arg_after(cmd, "--topic"), "gameplay")
        self.assertGreaterEqual(int(arg_after(cmd, "--partitions")), 1)
        self.assertEqual(self.svcs["kafka-init"].get("restart"), "no")

    def test_dependencies_and_namespaces(self):
        conditions = {"service_started", "service_healthy",
                      "service_completed_successfully"}
        for name, svc in self.svcs.items():
            deps = svc.get("depends_on") or {}
            if isinstance(deps, list):
                deps = {d: {"condition": "service_started"} for d in deps}
            for dep, spec in deps.items():
                self.assertIn(dep, self.svcs, name)
                cond = spec.get("condition", "service_started")
                self.assertIn(cond, conditions)
                if cond == "service_healthy":
                    self.assertIn("healthcheck", self.svcs[dep], dep)
                if cond == "service_completed_successfully":
                    self.assertEqual(self.svcs[dep].get("restart"), "no", dep)
                self.assert_active_with(dep, name)
            nm = svc.get("network_mode")
            if nm:
                self.assertTrue(nm.startswith("service:"), nm)
                owner = nm.split(":", 1)[1]
                self.assertIn(owner, self.svcs)
                self.assert_active_with(owner, name)
                # a service in another's namespace cannot publish ports
                self.assertNotIn("ports", svc, name)

    def assert_active_with(self, dep, name):
        """dep runs whenever name runs (no profile, or every profile of
        name)."""
        dp = self.svcs[dep].get("profiles")
        np_ = self.svcs[name].get("profiles")
        if dp is None:
            return
        self.assertIsNotNone(np_, "%s needs %s (profiles %s)" % (name, dep,
                                                                  dp))
        for p in np_:
            self.assertIn(p, dp, "%s needs %s" % (name, dep))

    def test_ports_unique_per_profile_and_on_loopback(self):
        for profile in (None, "azure", "emulator"):
            seen = {}
            for name, svc in self.svcs.items():
                profs = svc.get("profiles")
                if profs is not None and profile not in profs:
                    continue
                for spec in svc.get("ports", []):
                    ip, hp, _ = parse_port(spec)
                    self.assertEqual(ip, "127.0.0.1",
                                     "%s publishes %s beyond loopback" % (
                                         name, spec))
                    self.assertNotIn(hp, seen, "%s and %s both publish %d" % (
                        seen.get(hp), name, hp))
                    seen[hp] = name

    def test_volumes(self):
        declared = set((self.doc.get("volumes") or {}).keys())
        used = set()
        for name, svc in self.svcs.items():
            for v in svc.get("volumes", []):
                src, dst = v.split(":")[:2]
                self.assertTrue(dst.startswith("/"), v)
                if src.startswith(".") or src.startswith("/"):
                    self.assertTrue(os.path.exists(os.path.join(DOCKER, src)),
                                    "%s mounts missing %s" % (name, src))
                else:
                    self.assertIn(src, declared, name)
                    used.add(src)
        self.assertEqual(used, declared)

    def test_kadx_image_builds_from_this_repo(self):
        kadx_svcs = [n for n, s in self.svcs.items()
                     if s["image"].startswith("kadx:")]
        self.assertEqual(sorted(kadx_svcs), ["adx-emulator", "adx-setup",
                                             "kadx", "kadx-local",
                                             "producer"])
        for n in kadx_svcs:
            b = self.svcs[n]["build"]
            ctx = os.path.normpath(os.path.join(DOCKER, b["context"]))
            self.assertTrue(os.path.exists(os.path.join(ctx, "meson.build")))
            self.assertTrue(os.path.exists(os.path.join(ctx,
                                                        b["dockerfile"])))

    # --- the Dockerfile ---------------------------------------------------

    def stages(self):
        """{stage name: text} of the Dockerfile."""
        out = {}
        cur = None
        for line in self.dockerfile.splitlines():
            m = re.match(r"FROM\s+(\S+)(?:\s+AS\s+(\S+))?", line, re.I)
            if m:
                cur = m.group(2) or m.group(1)
                out[cur] = line + "\n"
            elif cur:
                out[cur] += line + "\n"
        return out

    @staticmethod
    def apt_packages(text):
        joined = text.replace("\\\n", " ")
        m = re.search(r"apt-get install ([^&\n]*)", joined)
        words = re.findall(r"(?<![\w-])[a-z0-9][a-z0-9.+-]+", m.group(1))
        return {w for w in words if w not in ("apt-get", "install")
                and not w.startswith("no-install")}

    def test_dockerfile_is_multistage_debian12(self):
        st = self.stages()
        self.assertEqual(list(st), ["build", "runtime"])
        self.assertRegex(st["build"], r"FROM debian:12 AS build")
        self.assertRegex(st["runtime"], r"FROM debian:12-slim AS runtime")
        self.assertIn("meson setup", st["build"])
        self.assertIn("ninja -C /build kadx", st["build"])
        self.assertIn("COPY --from=build /build/kadx /usr/local/bin/kadx",
                      st["runtime"])
        self.assertNotIn("build-essential", st["runtime"])
        self.assertRegex(st["runtime"], r'ENTRYPOINT \[.*"/usr/local/bin/kadx"'
                                        r'\]')
        self.assertRegex(st["runtime"], r"USER kadx")

    def test_build_packages_match_install_deps(self):
        with open(os.path.join(harness.SRC, ".ci", "install-deps")) as f:
            ci = f.read()
        ci_pkgs = set(re.findall(r"[a-z0-9][a-z0-9.+-]+",
                                 re.search(r"PKGS=\((.*?)\)", ci,
                                           re.S).group(1)))
        build = self.apt_packages(self.stages()["build"])
        self.assertFalse(build - ci_pkgs,
                         "build stage installs what CI does not")
        ci_dev = {p for p in ci_pkgs if p.endswith("-dev")
                  and p not in ("libcmocka-dev", "libclang-rt-14-dev")}
        self.assertFalse(ci_dev - build, "build stage lacks CI's -dev "
                                         "packages")

    def test_runtime_has_every_library_kadx_links(self):
        runtime = self.apt_packages(self.stages()["runtime"])
        p = subprocess.run(["objdump", "-p", harness.KADX],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        needed = re.findall(r"NEEDED\s+(\S+)", p.stdout.decode())
        self.assertIn("librdkafka.so.1", needed)
        ldd = subprocess.run(["ldd", harness.KADX], capture_output=True,
                             timeout=60).stdout.decode()
        paths = dict(re.findall(r"^\s*(\S+) => (\S+)", ldd, re.M))
        # in every debian:12-slim, or the sanitizer runtime of a test build
        base = {"libc6", "libgcc-s1", "libasan8", "libubsan1", "libstdc++6",
                "zlib1g"}
        for lib in needed:
            path = os.path.realpath(paths[lib])
            q = subprocess.run(["dpkg", "-S", path], capture_output=True,
                               timeout=60)
            if q.returncode != 0:  # /lib vs /usr/lib on merged-usr systems
                q = subprocess.run(["dpkg", "-S", path.replace("/usr/lib/",
                                                               "/lib/")],
                                   capture_output=True, timeout=60)
            self.assertEqual(q.returncode, 0, "dpkg -S %s" % path)
            pkg = q.stdout.decode().split(":")[0]
            if pkg in base:
                continue
            self.assertIn(pkg, runtime, "kadx needs %s (%s)" % (lib, pkg))

    # --- configs and KQL --------------------------------------------------

    def mounted_config(self, svc_name):
        svc = self.svcs[svc_name]
        cpath = arg_after(svc["command"], "-c")
        for v in svc["volumes"]:
            src, dst = v.split(":")[:2]
            if dst == cpath:
                return os.path.join(DOCKER, src)
        raise AssertionError("%s: %s is not mounted" % (svc_name, cpath))

    def check_config(self, path, env):
        full = dict(FAKE_ENV)
        full.update({k: v for k, v in env.items() if v is not None})
        rc, out, err = run("run", "--check", "-c", path, env=full)
        self.assertEqual(rc, 0, err)
        # secrets are masked
        for k in ("AZURE_CLIENT_SECRET", "KADX_ADMIN_TOKEN"):
            self.assertNotIn(FAKE_ENV[k], out + err)
        return json.loads(out)

    def kql_mapping(self):
        m = re.search(r"^\.create table GamePlay ingestion json mapping "
                      r"'(\w+)' '(.*)'$", self.kql, re.M)
        self.assertIsNotNone(m)
        return m.group(1), json.loads(m.group(2))

    def check_route(self, cfg, exactly_once=True):
        name, _ = self.kql_mapping()
        self.assertEqual(len(cfg["routes"]), 1)
        r = cfg["routes"][0]
        self.assertEqual(r["topic"], arg_after(
            self.svcs["kafka-init"]["command"], "--topic"))
        self.assertEqual(r["database"], "leaderboard")
        self.assertEqual(r["table"], "GamePlay")
        self.assertEqual(r["format"], "json")
        self.assertEqual(r["mapping"], name)
        # exactly once by default: the batch id lands in setup.kql's column
        if exactly_once:
            self.assertEqual(r["dedupe_column"], "KadxBatchId")
            self.assertEqual(r["meta"]["batch_id"], "kadx_batch_id")

    def test_gateway_configs_check(self):
        for svc_name in ("kadx", "kadx-local"):
            svc = self.svcs[svc_name]
            self.assertEqual(svc["command"][0], "run")
            cfg = self.check_config(self.mounted_config(svc_name),
                                    env_map(svc))
            self.check_route(cfg)
            self.assertEqual(cfg["kafka"]["bootstrap.servers"], "kafka:9092")
            self.assertEqual(cfg["journal"]["path"].rsplit("/", 1)[0],
                             "/var/lib/kadx")
            mounts = [v.split(":")[1] for v in svc["volumes"]]
            self.assertIn("/var/lib/kadx", mounts, svc_name)
            # the admin port is published by the namespace's owner
            owner = svc.get("network_mode", "service:" + svc_name)[8:]
            port = int(cfg["admin"]["listen"].rsplit(":", 1)[1])
            published = [parse_port(p)[2] for p in
                         self.svcs[owner].get("ports", [])]
            self.assertIn(port, published, svc_name)
            hc = " ".join(svc["healthcheck"]["test"])
            self.assertIn(":%d/healthz" % port, hc)
            if svc_name == "kadx":
                self.assertEqual(cfg["adx"]["auth"]["method"],
                                 "client_secret")
                self.assertEqual(cfg["adx"]["auth"]["client_secret"], "***")
            else:
                emu = self.svcs["adx-emulator"]["command"]
                eport = arg_after(emu, "--listen").rsplit(":", 1)[1]
                self.assertEqual(cfg["adx"]["ingest_url"],
                                 "http://127.0.0.1:" + eport)
                self.assertEqual(arg_after(emu, "--database"), "leaderboard")

    def test_connector_config_matches_the_native_one(self):
        env = env_map(self.svcs["kadx"])
        cfg = self.check_config(os.path.join(DOCKER,
                                             "connector-config.json"), env)
        # a Kafka Connect config has no meta/dedupe keys (CONFIG.md)
        self.check_route(cfg, exactly_once=False)
        self.assertEqual(cfg["adx"]["auth"]["method"], "client_secret")
        self.assertTrue(cfg["adx"]["ingest_url"].startswith("https://"))
        self.assertNotIn("ingest-", cfg["adx"]["ingest_url"])

    def test_setup_kql(self):
        for cmd in (
                ".alter database leaderboard policy streamingingestion "
                "enable",
                ".create table GamePlay (PlayerID: int, GameID: int, Win: "
                "long, Stake: int, EventTime: datetime, KadxBatchId: string)",
                ".alter table GamePlay policy ingestiontime true",
                "GamePlay | summarize TotalWin=sum(Win), Spins=count() by "
                "PlayerID | top 10 by TotalWin",
                "GamePlay | extend Latency = ingestion_time() - EventTime | "
                "summarize percentiles(Latency, 50, 90, 99)"):
            self.assertIn("\n" + cmd + "\n", self.kql)
        name, mapping = self.kql_mapping()
        self.assertEqual(name, "gameplay_json_mapping")
        cols = {m["column"]: m["Properties"]["Path"] for m in mapping}
        self.assertEqual(cols, {"PlayerID": "$.playerId",
                                "GameID": "$.gameId", "Win": "$.win",
                                "Stake": "$.stake",
                                "EventTime": "$.eventTime",
                                "KadxBatchId": "$.kadx_batch_id"})

    # --- the commands, run for real ---------------------------------------

    def test_event_generator_command_runs(self):
        svc = self.svcs["producer"]
        cmd = svc["command"]
        self.assertEqual(cmd[0], "produce")
        topic = arg_after(cmd, "-t")
        parts = int(arg_after(self.svcs["kafka-init"]["command"],
                              "--partitions"))
        mock = kafka.MockCluster(brokers=1)
        try:
            mock.command("create-topic %s %d" % (topic, parts))
            env = env_map(svc)
            env["KADX_BOOTSTRAP_SERVERS"] = mock.bootstrap
            p = harness.kadx(*cmd, env=env, name="producer")
            p.wait_for(lambda l: re.search(r"produce: \d+ sent", l)
                       is not None, timeout=20, what="progress")
            p.signal(signal.SIGINT)
            self.assertEqual(p.wait(20), 0, p.tail())
            m = re.search(r"^produced (\d+) events to (\S+)$",
                          "\n".join(p.out), re.M)
            self.assertIsNotNone(m, p.tail())
            self.assertEqual(m.group(2), topic)
            ends = kafka.end_offsets(mock.bootstrap, topic, range(parts))
            self.assertEqual(sum(ends.values()), int(m.group(1)))
            self.assertGreater(int(m.group(1)), 0)
            # every mapped path exists in what the generator sends
            rc, out, err = run("consume", "-t", topic, "-b", mock.bootstrap,
                               "--from-beginning", "-n", "1", timeout=60)
            self.assertEqual(rc, 0, err)
            value = json.loads(out.splitlines()[0])["value"]
            _, mapping = self.kql_mapping()
            for m_ in mapping:
                if m_["column"] == "KadxBatchId":
                    continue  # added by kadx (meta.batch_id), not produced
                self.assertIn(m_["Properties"]["Path"][2:], value)
        finally:
            mock.stop()

    def test_emulator_command_and_setup_script(self):
        cmd = list(self.svcs["adx-emulator"]["command"])
        self.assertEqual(cmd[0], "adx-emulator")
        # same flags, but loopback with an ephemeral port and a temp file
        cmd[cmd.index("--listen") + 1] = "127.0.0.1:0"
        tmp = os.path.join(os.environ.get("TMPDIR", "/tmp"),
                           "kadx-docker-%d.db" % os.getpid())
        cmd[cmd.index("--data") + 1] = tmp
        emu = harness.kadx(*cmd, name="adx-emulator")
        try:
            line = emu.wait_for("listening on http://", timeout=20)
            url = re.search(r"(http://127\.0\.0\.1:\d+)", line).group(1)
            setup = self.svcs["adx-setup"]
            entry = setup["entrypoint"]
            self.assertEqual(entry[:2], ["sh", "/kql/apply.sh"])
            env = dict(os.environ, **env_map(setup))
            env["ADX_URL"] = url
            for _ in range(2):  # and again: safe to re-run
                p = subprocess.run(["sh", APPLY_SH, SETUP_KQL], env=env,
                                   capture_output=True, timeout=120)
                self.assertEqual(p.returncode, 0,
                                 p.stdout.decode() + p.stderr.decode())
                self.assertIn("applied 4 commands to leaderboard",
                              p.stdout.decode())
            req = urllib.request.Request(
                url + "/v1/rest/mgmt",
                data=json.dumps({"db": "leaderboard",
                                 "csl": ".show tables"}).encode(),
                headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=10) as r:
                body = json.loads(r.read())
            rows = body["Tables"][0]["Rows"]
            self.assertIn("GamePlay", json.dumps(rows))
        finally:
            emu.stop()
            for suffix in ("", "-wal", "-shm", "-journal"):
                if os.path.exists(tmp + suffix):
                    os.unlink(tmp + suffix)


if __name__ == "__main__":
    harness.main()
