"""kafka.py - Kafka for kadx's end-to-end tests.

- cluster() is the tests' Kafka: a real Apache Kafka 4.x broker
  (tests/kafka/kafka_cluster.py), one per test process (meson runs each file,
  class or method as its own process), started on first use and stopped at
  exit. KADX_KAFKA=mock gives librdkafka's mock instead (a machine without
  Java). RealCluster.command() accepts the mock's "create-topic NAME N",
  which a test reaches with fresh_topic() for a topic of a known state.
- MockCluster starts `kadx kafka-mock` (librdkafka's mock cluster in its own
  process, so kadx can be killed and restarted against the same cluster) and
  sends it fault-injection commands (broker down/up, request errors).
- produce() writes messages with kcat (Debian's kcat: a producer that shares
  no code with kadx's intake).
- committed_offsets() asks the group coordinator for a group's committed
  offsets over the Kafka wire protocol (FindCoordinator v0, OffsetFetch v1),
  spoken here directly so that the check does not go through librdkafka,
  the library under test.
- end_offsets() reads partitions' high watermarks with `kcat -Q`.
"""
import os
import socket
import struct
import subprocess
import tempfile
import time

import sys

import harness

KCAT = os.environ.get("KCAT", "kcat")

sys.path.insert(0, os.path.join(harness.SRC, "tests", "kafka"))
import kafka_cluster  # noqa: E402  (tests/kafka/, the real-broker tier)

_shared = {}


class RealCluster:
    """A real broker (or three) with the mock's small interface: bootstrap,
    command("create-topic NAME PARTITIONS"), stop(). stop() of the shared
    cluster is a no-op (it lives until the process exits); kc is the
    kafka_cluster.KafkaCluster for kill/restart and other topics."""

    def __init__(self, kc, shared):
        self.kc = kc
        self.bootstrap = kc.bootstrap
        self.shared = shared

    def command(self, cmd, timeout=60.0):
        words = cmd.split()
        if len(words) != 3 or words[0] != "create-topic":
            raise AssertionError("the real broker has no fault command %r: "
                                 "the test needs kafka.MockCluster" % cmd)
        fresh_topic(self, words[1], int(words[2]))
        return "ok"

    def stop(self):
        if not self.shared:
            self.kc.stop()
        return 0


def fresh_topic(cluster, name, partitions, config=None):
    """Creates topic name, first deleting it if the cluster has it (a
    shared broker outlives a test), so offsets start at 0."""
    kc = cluster.kc
    if name in kc.admin().list_topics(timeout=10).topics:
        kc.delete_topic(name)
    kc.create_topic(name, partitions, config=config)


def cluster(topics=(), nodes=1, shared=True):
    """The test process's Kafka with topics [(name, partitions)] freshly
    created: the real broker unless KADX_KAFKA=mock. shared=False starts a
    cluster of its own (e.g. nodes=3), stopped by its stop()."""
    if os.environ.get("KADX_KAFKA", "real") == "mock":
        return MockCluster(brokers=nodes if nodes > 1 else 3, topics=topics)
    if shared and nodes in _shared:
        c = _shared[nodes]
    else:
        c = RealCluster(kafka_cluster.KafkaCluster(nodes=nodes).start(),
                        shared)
        if shared:
            _shared[nodes] = c
    for name, parts in topics:
        fresh_topic(c, name, parts)
    return c


class MockCluster:
    """`kadx kafka-mock`, with its stdin kept open for commands."""

    def __init__(self, brokers=3, topics=()):
        args = ["kafka-mock", "--brokers", str(brokers)]
        for name, parts in topics:
            args += ["--topic", "%s:%d" % (name, parts)]
        self.proc = harness.kadx(*args, stdin=subprocess.PIPE,
                                 name="kafka-mock")
        line = self.proc.wait_for(lambda l: l.startswith("bootstrap.servers="),
                                  timeout=20, what="the bootstrap line")
        self.bootstrap = line.split("=", 1)[1].strip()
        self._answers = 0

    def command(self, cmd, timeout=10.0):
        """Sends one command line; returns the answer line ('ok' or
        'error: ...'); raises AssertionError on 'error'."""
        self.proc.p.stdin.write((cmd + "\n").encode())
        self.proc.p.stdin.flush()
        want = self._answers + 1

        def answered():
            got = [l for l in list(self.proc.out)
                   if l == "ok" or l.startswith("error:")]
            return got[want - 1] if len(got) >= want else None

        ans = harness.wait_until(answered, timeout=timeout,
                                 what="kafka-mock's answer to " + cmd)
        self._answers = want
        if ans != "ok":
            raise AssertionError("kafka-mock %r: %s" % (cmd, ans))
        return ans

    def stop(self):
        if self.proc.alive():
            try:
                self.proc.p.stdin.close()
            except OSError:
                pass
            return self.proc.wait(10)
        return self.proc.p.returncode


def produce(bootstrap, topic, partition, values, timeout=60.0, key_delim=None,
            headers=(), null_empty=False):
    """Produces values (an iterable of str without newlines; lone surrogates
    \udc80-\udcff stand for raw bytes that are not UTF-8) to one partition
    with kcat, acks=all, waiting for delivery. Returns the count sent.
    key_delim: each line is KEY<delim>VALUE (kcat -K); headers: (name,
    value) pairs added to every message (kcat -H); null_empty: an empty
    value is sent as a null value, a tombstone (kcat -Z)."""
    # surrogateescape: a str may carry raw bytes ('\udce9' is byte 0xe9)
    with tempfile.NamedTemporaryFile("w", prefix="kadx-kcat-", delete=False,
                                     errors="surrogateescape") as f:
        n = 0
        for v in values:
            f.write(v)
            f.write("\n")
            n += 1
        path = f.name
    try:
        args = [KCAT, "-P", "-b", bootstrap, "-t", topic,
                "-p", str(partition), "-X", "acks=all",
                "-X", "queue.buffering.max.ms=5"]
        if key_delim is not None:
            args += ["-K", key_delim]
        for name, value in headers:
            args += ["-H", "%s=%s" % (name, value)]
        if null_empty:
            args.append("-Z")
        p = subprocess.run(args + ["-l", path], capture_output=True,
                           timeout=timeout)
        if p.returncode != 0:
            raise AssertionError("kcat -P failed (%d): %s" % (
                p.returncode, p.stderr.decode(errors="replace")))
    finally:
        os.unlink(path)
    return n


def end_offsets(bootstrap, topic, partitions, timeout=30.0):
    """{partition: high watermark} with kcat -Q (timestamp -1 = end)."""
    args = [KCAT, "-b", bootstrap, "-Q"]
    for p in partitions:
        args += ["-t", "%s:%d:-1" % (topic, p)]
    out = subprocess.run(args, capture_output=True, timeout=timeout)
    if out.returncode != 0:
        raise AssertionError("kcat -Q failed: %s" % out.stderr.decode(
            errors="replace"))
    res = {}
    for line in out.stdout.decode().splitlines():
        # "topic [0] offset 123"
        parts = line.split()
        if len(parts) == 4 and parts[2] == "offset":
            res[int(parts[1].strip("[]"))] = int(parts[3])
    return res


def leader(bootstrap, topic, partition, timeout=30.0):
    """The broker id leading topic[partition] (kcat -L metadata)."""
    out = subprocess.run([KCAT, "-b", bootstrap, "-L", "-t", topic],
                         capture_output=True, timeout=timeout)
    for line in out.stdout.decode().splitlines():
        # "    partition 0, leader 1, replicas: 1,2,3, isrs: 1,2,3"
        parts = line.replace(",", " ").split()
        if len(parts) >= 4 and parts[0] == "partition" and \
                int(parts[1]) == partition and parts[2] == "leader":
            return int(parts[3])
    raise AssertionError("no leader for %s[%d] in %r" % (
        topic, partition, out.stdout.decode()))


# --- a minimal Kafka protocol client: FindCoordinator + OffsetFetch --------

def _str(s):
    b = s.encode()
    return struct.pack(">h", len(b)) + b


class _Reader:
    def __init__(self, buf):
        self.buf = buf
        self.pos = 0

    def take(self, fmt):
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += struct.calcsize(fmt)
        return v[0]

    def string(self):
        n = self.take(">h")
        if n < 0:
            return None
        s = self.buf[self.pos:self.pos + n].decode()
        self.pos += n
        return s


def _request(host, port, api_key, version, body, timeout=5.0):
    corr = 7
    hdr = struct.pack(">hhi", api_key, version, corr) + _str("kadx-e2e")
    msg = hdr + body
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(struct.pack(">i", len(msg)) + msg)
        size = b""
        while len(size) < 4:
            chunk = s.recv(4 - len(size))
            if not chunk:
                raise ConnectionError("closed by broker")
            size += chunk
        n = struct.unpack(">i", size)[0]
        if n > 64 << 20:
            raise ValueError("response too big")
        data = b""
        while len(data) < n:
            chunk = s.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed by broker")
            data += chunk
    r = _Reader(data)
    if r.take(">i") != corr:
        raise ValueError("bad correlation id")
    return r


def _coordinator(bootstrap, group):
    last = None
    for hp in bootstrap.split(","):
        host, port = hp.rsplit(":", 1)
        try:
            r = _request(host, int(port), 10, 0, _str(group))
        except OSError as e:
            last = e
            continue
        err = r.take(">h")
        node = r.take(">i")
        chost = r.string()
        cport = r.take(">i")
        if err != 0:
            last = "FindCoordinator error %d" % err
            continue
        return chost, cport, node
    raise ConnectionError("no coordinator for group %r: %s" % (group, last))


def committed_offsets(bootstrap, group, topic, partitions, timeout=15.0):
    """{partition: committed offset (-1 when none)} for group on topic,
    asked of the group coordinator; retried until timeout while the
    coordinator is unavailable."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            host, port, _ = _coordinator(bootstrap, group)
            body = _str(group) + struct.pack(">i", 1) + _str(topic)
            body += struct.pack(">i", len(partitions))
            for p in partitions:
                body += struct.pack(">i", p)
            r = _request(host, port, 9, 1, body)
            res = {}
            for _ in range(r.take(">i")):
                name = r.string()
                for _ in range(r.take(">i")):
                    part = r.take(">i")
                    off = r.take(">q")
                    r.string()
                    err = r.take(">h")
                    if err != 0:
                        raise ConnectionError("OffsetFetch %s[%d] error %d" % (
                            name, part, err))
                    if name == topic:
                        res[part] = off
            return res
        except (OSError, ValueError) as e:
            if time.monotonic() >= deadline:
                raise AssertionError("committed offsets of %r: %s" % (
                    group, e))
            time.sleep(0.2)
