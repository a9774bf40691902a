#!/usr/bin/env python3
"""kafka_cluster.py - real Apache Kafka (4.x, KRaft) for kadx's tests.

Runs the broker from the jars that .ci/install-deps copied from Maven Central
(tests/kafka/pom.xml -> tests/kafka/jars/, or $KADX_KAFKA_JARS) with the
system's Java 17: no tarball, no Docker, only 127.0.0.1 and free ports.

The API (small on purpose; tests/kafka/README.md says more):

    c = KafkaCluster(nodes=1)       # 1: one broker+controller node (default)
    c.start()                       # 3: three combined nodes, RF 3, min ISR 2
    c.bootstrap                     # "127.0.0.1:P1,..." (PLAINTEXT listener)
    c.create_topic("t", partitions=4, config={"cleanup.policy": "compact"})
    c.delete_topic("t")
    c.kill(2); c.restart(2)         # kill -9 a node by PID, start it again
    c.stop_node(2); c.start_node(2) # SIGTERM (controlled shutdown), start
    c.wait_ready()                  # every running node in the metadata
    c.admin()                       # a confluent_kafka AdminClient
    c.run_tool("kafka.admin.ConfigCommand", "--bootstrap-server", ...)
    c.stop()                        # SIGTERM every node, then rm its dirs

    with KafkaCluster() as c: ...   # start() and stop()

Hooks for other listeners (SSL, SASL):
    extra_listeners={"SASL_PLAINTEXT": "SASL_PLAINTEXT"}  name -> protocol;
        each node gets a free port for each; c.bootstrap_for("SASL_PLAINTEXT")
    extra_props={...} or a function node_id -> {...}: server.properties keys
        added to (or overriding) the launcher's own
    jvm_args=[...]: e.g. -Djava.security.auth.login.config=...
    quick_jit=False: full JIT (C2) for benchmarks; the default C1-only JVM
        starts faster on a busy machine
    format_args=[...]: e.g. ["--add-scram", "SCRAM-SHA-512=[name=u,password=p]"]

Readiness is asked of the brokers (a Metadata request to each running node
that must list every running node), never a fixed sleep.
Every JVM started here is killed by PID at interpreter exit if still alive.

Command line: `kafka_cluster.py [--nodes 1|3] [--topic NAME:PARTS]...`
prints `bootstrap.servers=HOST:PORT,...` and runs until stdin closes,
SIGINT or SIGTERM.
"""
import atexit
import base64
import glob
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
JARS = os.environ.get("KADX_KAFKA_JARS", os.path.join(HERE, "jars"))
JAVA = os.environ.get("JAVA", shutil.which("java") or "java")
LOG4J2 = os.path.join(HERE, "log4j2.properties")

_clusters = []


def _cleanup_all():
    for c in list(_clusters):
        c._kill_all()
        if c._own_dir:
            shutil.rmtree(c.root, ignore_errors=True)


atexit.register(_cleanup_all)


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cluster_id():
    """A random cluster id as Kafka's Uuid.randomUuid() makes them: 16
    random bytes in URL-safe base64 without padding, not starting with
    '-' (what `kafka-storage random-uuid` prints, without a JVM)."""
    while True:
        s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not s.startswith("-"):
            return s


def metadata(host, port, timeout=5.0):
    """Asks one broker for the cluster's metadata over the wire (Metadata
    v4, no topics; v0-v3 are gone in Kafka 4): returns (set of the live
    broker ids, controller id)."""
    corr = 1
    cid = b"kadx-kafka-tier"
    body = struct.pack(">i", 0) + b"\x00"  # no topics; no auto-create
    msg = struct.pack(">hhih", 3, 4, corr, len(cid)) + cid + body
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(msg)) + msg)
        data = b""
        need = 4
        while len(data) < need:
            chunk = s.recv(65536)
            if not chunk:
                raise ConnectionError("closed by broker")
            data += chunk
            if len(data) >= 4:
                need = 4 + struct.unpack_from(">i", data)[0]
    pos = 4
    got_corr, _throttle, nbrokers = struct.unpack_from(">iii", data, pos)
    if got_corr != corr:
        raise ValueError("bad correlation id")
    pos += 12
    brokers = set()
    for _ in range(nbrokers):
        node_id, hlen = struct.unpack_from(">ih", data, pos)
        pos += 6 + hlen + 4
        (rlen,) = struct.unpack_from(">h", data, pos)
        pos += 2 + max(rlen, 0)
        brokers.add(node_id)
    (clen,) = struct.unpack_from(">h", data, pos)
    pos += 2 + max(clen, 0)
    (controller,) = struct.unpack_from(">i", data, pos)
    return brokers, controller


def _classpath(jars_dir=None):
    jars_dir = jars_dir or JARS
    jars = glob.glob(os.path.join(jars_dir, "*.jar"))
    if not any(os.path.basename(j).startswith("kafka_2.13-") for j in jars):
        raise RuntimeError(
            "no Kafka jars in %s: run .ci/install-deps (it copies them from "
            "Maven Central with tests/kafka/pom.xml)" % jars_dir)
    return os.pathsep.join(sorted(jars))


class Node:
    """One combined broker+controller JVM. ports: listener name -> port."""

    def __init__(self, node_id, root):
        self.id = node_id
        self.dir = os.path.join(root, "node%d" % node_id)
        self.data = os.path.join(self.dir, "data")
        self.props_path = os.path.join(self.dir, "server.properties")
        self.log_path = os.path.join(self.dir, "stdout.log")
        self.ports = {}
        self.proc = None
        self._log = None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def tail(self, n=30):
        """The last n lines of the node's own log (log4j) and stdout."""
        out = []
        for p in (os.path.join(self.dir, "logs", "server.log"),
                  self.log_path):
            try:
                with open(p, errors="replace") as f:
                    out += ["%s: %s" % (os.path.basename(p), l.rstrip())
                            for l in f.readlines()[-n:]]
            except OSError:
                pass
        return "\n".join(out)


class KafkaCluster:
    """Apache Kafka in KRaft mode: nodes combined broker+controller nodes
    (1 or 3), each on its own free ports on 127.0.0.1."""

    def __init__(self, nodes=1, workdir=None, heap="512m",
                 extra_listeners=None, extra_props=None, jvm_args=(),
                 format_args=(), start_timeout=120.0, quick_jit=True,
                 jars=None):
        if nodes not in (1, 3):
            raise ValueError("nodes must be 1 or 3, not %r" % (nodes,))
        self.n = nodes
        self.heap = heap
        self.extra_listeners = dict(extra_listeners or {})
        self.extra_props = extra_props or {}
        self.jvm_args = list(jvm_args)
        self.format_args = list(format_args)
        self.start_timeout = start_timeout
        self.quick_jit = quick_jit
        self.jars = jars  # None: JARS (Kafka 4.x); or another release's jars
        self._own_dir = workdir is None
        self.root = workdir or tempfile.mkdtemp(prefix="kadx-kafka-")
        self.nodes = {i: Node(i, self.root) for i in range(1, nodes + 1)}
        self.cluster_id = None
        self.start_seconds = None
        self._admin = None

    # --- configuration -----------------------------------------------------

    def _listener_names(self):
        return ["PLAINTEXT", "CONTROLLER"] + list(self.extra_listeners)

    def _props(self, node):
        rf = self.n
        voters = ",".join("%d@127.0.0.1:%d" % (n.id, n.ports["CONTROLLER"])
                          for n in self.nodes.values())
        protos = {"PLAINTEXT": "PLAINTEXT", "CONTROLLER": "PLAINTEXT"}
        protos.update(self.extra_listeners)
        listeners = ",".join("%s://127.0.0.1:%d" % (name, node.ports[name])
                             for name in self._listener_names())
        adv = ",".join("%s://127.0.0.1:%d" % (name, node.ports[name])
                       for name in self._listener_names()
                       if name != "CONTROLLER")
        p = {
            "process.roles": "broker,controller",
            "node.id": str(node.id),
            "controller.quorum.voters": voters,
            "listeners": listeners,
            "advertised.listeners": adv,
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(
                "%s:%s" % kv for kv in protos.items()),
            "log.dirs": node.data,
            "num.partitions": "1",
            "default.replication.factor": str(rf),
            "min.insync.replicas": "2" if rf == 3 else "1",
            "offsets.topic.replication.factor": str(rf),
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": str(rf),
            "transaction.state.log.min.isr": "2" if rf == 3 else "1",
            "transaction.state.log.num.partitions": "4",
            "share.coordinator.state.topic.replication.factor": str(rf),
            "share.coordinator.state.topic.min.isr": "2" if rf == 3 else "1",
            "group.initial.rebalance.delay.ms": "0",
            # tests kill members and want the group to notice in seconds
            "group.min.session.timeout.ms": "1000",
            "auto.create.topics.enable": "false",
            "unclean.leader.election.enable": "false",
            # a restarted node catches up and rejoins the ISR quickly
            "replica.lag.time.max.ms": "10000",
            "log.segment.bytes": str(64 << 20),
            "num.network.threads": "2",
            "num.io.threads": "4",
            "background.threads": "4",
            "log.cleaner.threads": "1",
            "log.cleaner.dedupe.buffer.size": str(8 << 20),
            "log.cleaner.backoff.ms": "1000",
        }
        extra = self.extra_props
        if callable(extra):
            extra = extra(node.id) or {}
        p.update({k: str(v) for k, v in extra.items()})
        return p

    def _write_props(self, node):
        os.makedirs(node.dir, exist_ok=True)
        with open(node.props_path, "w") as f:
            for k, v in self._props(node).items():
                f.write("%s=%s\n" % (k, v))

    def _java(self, main, *args, extra_jvm=()):
        # C1 only (quick_jit): the JVM starts in about half the CPU time,
        # which counts on a busy 2-core machine; a benchmark passes False
        jit = ["-XX:TieredStopAtLevel=1"] if self.quick_jit else []
        return [JAVA, "-Xmx%s" % self.heap, "-Xms64m", "-XX:+UseSerialGC",
                "-Djava.awt.headless=true"] + jit + [
                "-Dlog4j2.configurationFile=" + LOG4J2] + \
            list(extra_jvm) + ["-cp", _classpath(self.jars), main] + list(args)

    def run_tool(self, main_class, *args, timeout=120.0, check=True):
        """Runs a Kafka command-line class (e.g. kafka.admin.ConfigCommand,
        org.apache.kafka.tools.TopicCommand) with the tier's classpath and
        jvm_args; returns (rc, stdout, stderr) as text."""
        cmd = self._java(main_class, *args, extra_jvm=self.jvm_args)
        p = subprocess.run(cmd, capture_output=True, timeout=timeout,
                           env=self._env("tool"))
        out = p.stdout.decode(errors="replace")
        err = p.stderr.decode(errors="replace")
        if check and p.returncode != 0:
            raise RuntimeError("%s %s failed (%d):\n%s%s" % (
                main_class, " ".join(args), p.returncode, out, err))
        return p.returncode, out, err

    def _env(self, logdir_name):
        env = dict(os.environ)
        env["KADX_KAFKA_LOG_DIR"] = os.path.join(self.root, logdir_name)
        return env

    # --- lifecycle ---------------------------------------------------------

    def _format(self):
        if self.cluster_id is None:
            self.cluster_id = _cluster_id()
        procs = []
        for node in self.nodes.values():  # one JVM each, in parallel
            if os.path.isdir(node.data):
                shutil.rmtree(node.data)
            self._write_props(node)
            cmd = self._java("kafka.tools.StorageTool", "format", "-t",
                             self.cluster_id, "-c", node.props_path,
                             *self.format_args, extra_jvm=self.jvm_args)
            procs.append((node, subprocess.Popen(
                cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env=self._env("tool"))))
        for node, p in procs:
            out = p.communicate(timeout=120)[0].decode(errors="replace")
            if p.returncode != 0:
                raise RuntimeError("formatting node %d failed (%d):\n%s" % (
                    node.id, p.returncode, out))

    def start(self):
        """Formats storage and starts every node; returns self when every
        node is in the cluster's metadata. A port taken meanwhile by someone
        else (free ports are only free a moment) gets new ports, twice."""
        if self not in _clusters:
            _clusters.append(self)
        t0 = time.monotonic()
        for attempt in range(3):
            for node in self.nodes.values():
                node.ports = {name: _free_port()
                              for name in self._listener_names()}
            self._format()
            for node in self.nodes.values():
                self._spawn(node)
            try:
                self.wait_ready()
                break
            except RuntimeError as e:
                in_use = any("Address already in use" in n.tail(200)
                             for n in self.nodes.values())
                self._kill_all()
                if not in_use or attempt == 2:
                    raise RuntimeError("kafka did not start: %s" % e)
        self.start_seconds = time.monotonic() - t0
        return self

    def _spawn(self, node):
        if node.alive():
            raise RuntimeError("node %d is running" % node.id)
        os.makedirs(node.dir, exist_ok=True)
        if node._log:
            node._log.close()
        node._log = open(node.log_path, "ab")
        env = self._env(os.path.join("node%d" % node.id, "logs"))
        node.proc = subprocess.Popen(
            self._java("kafka.Kafka", node.props_path,
                       extra_jvm=self.jvm_args),
            stdin=subprocess.DEVNULL, stdout=node._log,
            stderr=subprocess.STDOUT, env=env, start_new_session=True)

    def wait_ready(self, timeout=None):
        """Waits until every running node answers a Metadata request on its
        own PLAINTEXT port (a broker serves requests only once it has caught
        up with the metadata log and is unfenced) and lists every running
        node and a controller; raises RuntimeError with the nodes' log tails
        on timeout or when a node exits."""
        timeout = self.start_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        running = [n for n in self.nodes.values() if n.alive()]
        want = {n.id for n in running}
        last = None
        while True:
            for n in running:
                if not n.alive():
                    raise RuntimeError("node %d exited (%s)\n%s" % (
                        n.id, n.proc.returncode, n.tail()))
            try:
                ok = True
                for n in running:
                    brokers, controller = metadata(
                        "127.0.0.1", n.ports["PLAINTEXT"])
                    if not want <= brokers or controller < 0:
                        ok = False
                        last = "node %d lists brokers %s, controller %d" % (
                            n.id, sorted(brokers), controller)
                        break
                if ok:
                    return
            except (OSError, ValueError) as e:  # not listening yet
                last = "%s: %s" % (type(e).__name__, e)
            if time.monotonic() >= deadline:
                raise RuntimeError("not ready in %.0fs (%s)\n%s" % (
                    timeout, last, "\n".join(n.tail()
                                             for n in self.nodes.values())))
            time.sleep(0.2)

    def kill(self, node_id):
        """kill -9 of one node by PID."""
        node = self.nodes[node_id]
        if node.alive():
            os.kill(node.proc.pid, signal.SIGKILL)
        if node.proc is not None:
            node.proc.wait(30)

    def stop_node(self, node_id, timeout=60.0):
        """SIGTERM (controlled shutdown), then SIGKILL after timeout."""
        node = self.nodes[node_id]
        if node.alive():
            node.proc.send_signal(signal.SIGTERM)
            try:
                node.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill(node_id)

    def start_node(self, node_id, wait=True):
        """Starts a stopped or killed node on its old ports and data."""
        self._spawn(self.nodes[node_id])
        if wait:
            self.wait_ready()

    def restart(self, node_id, wait=True):
        """kill -9 then start_node."""
        self.kill(node_id)
        self.start_node(node_id, wait=wait)

    def _kill_all(self):
        for n in self.nodes.values():
            if n.alive():
                try:
                    os.kill(n.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if n.proc is not None:
                try:
                    n.proc.wait(30)
                except subprocess.TimeoutExpired:
                    pass
            if n._log:
                n._log.close()
                n._log = None

    def stop(self):
        """Stops every node (SIGTERM in parallel, SIGKILL after 30 s) and
        removes the work directory when the cluster made it."""
        if self._admin is not None:
            self._admin = None
        for n in self.nodes.values():
            if n.alive():
                n.proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 30
        for n in self.nodes.values():
            if n.proc is not None:
                try:
                    n.proc.wait(max(0.1, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    pass
        self._kill_all()
        if self in _clusters:
            _clusters.remove(self)
        if self._own_dir:
            shutil.rmtree(self.root, ignore_errors=True)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- clients -----------------------------------------------------------

    @property
    def bootstrap(self):
        return self.bootstrap_for("PLAINTEXT")

    def bootstrap_for(self, listener):
        return ",".join("127.0.0.1:%d" % n.ports[listener]
                        for n in self.nodes.values())

    def admin(self):
        """A confluent_kafka AdminClient on the PLAINTEXT listener."""
        if self._admin is None:
            from confluent_kafka.admin import AdminClient
            self._admin = AdminClient({"bootstrap.servers": self.bootstrap,
                                       "log_level": 0})
        return self._admin

    def create_topic(self, name, partitions=1, replication=None, config=None,
                     timeout=60.0):
        """Creates a topic (replication: the node count by default) and
        waits until every partition has a leader."""
        from confluent_kafka.admin import NewTopic
        rf = self.n if replication is None else replication
        fut = self.admin().create_topics(
            [NewTopic(name, partitions, rf, config=dict(config or {}))],
            operation_timeout=timeout)
        fut[name].result(timeout)
        self._wait_topic(name, partitions, timeout)

    def _wait_topic(self, name, partitions, timeout):
        deadline = time.monotonic() + timeout
        while True:
            md = self.admin().list_topics(topic=name, timeout=5)
            t = md.topics.get(name)
            if t is not None and t.error is None and \
                    len(t.partitions) == partitions and \
                    all(p.leader >= 0 for p in t.partitions.values()):
                return
            if time.monotonic() >= deadline:
                raise RuntimeError("topic %s not ready in %.0fs" % (
                    name, timeout))
            time.sleep(0.1)

    def delete_topic(self, name, timeout=60.0):
        """Deletes a topic and waits until the metadata no longer has it."""
        fut = self.admin().delete_topics([name], operation_timeout=timeout)
        fut[name].result(timeout)
        deadline = time.monotonic() + timeout
        while name in self.admin().list_topics(timeout=5).topics:
            if time.monotonic() >= deadline:
                raise RuntimeError("topic %s still listed" % name)
            time.sleep(0.1)


def main(argv):
    import argparse
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nodes", type=int, default=1, choices=(1, 3))
    ap.add_argument("--topic", action="append", default=[],
                    metavar="NAME:PARTITIONS")
    ap.add_argument("--workdir")
    args = ap.parse_args(argv)
    c = KafkaCluster(nodes=args.nodes, workdir=args.workdir)

    def on_signal(signum, frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        c.start()
        for t in args.topic:
            name, _, parts = t.partition(":")
            c.create_topic(name, int(parts or 1))
        print("bootstrap.servers=%s" % c.bootstrap, flush=True)
        print("started %d node(s) in %.1f s; work dir %s" % (
            c.n, c.start_seconds, c.root), file=sys.stderr, flush=True)
        sys.stdin.read()
    except KeyboardInterrupt:
        pass
    finally:
        c.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
