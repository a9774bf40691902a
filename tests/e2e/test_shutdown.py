"""A stop always ends (issue 12): SIGTERM ends `kadx run` within the
documented stop deadline (gateway/FORWARDER.md "Stopping": 25 s from the
signal to the exit) whatever Kafka and ADX are doing: refusing
connections, accepting them and never answering (a request in flight that
never completes), or going silent after the partitions were assigned.

A "black hole" is a listening socket that accepts and reads but never
writes: the worst peer there is (no error, no answer, no reset). Each case
checks the exit status (0: the stop steps finished by their own deadlines,
the watchdog did not have to end the process) and the time.
"""
import json
import os
import signal
import socket
import threading
import time

import harness
import kafka
import test_forwarder as tf

STOP_DEADLINE_S = 25.0  # DAEMON_STOP_DEADLINE_MS in gateway/daemon.c


class BlackHole:
    """Accepts connections on 127.0.0.1 and reads them; never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.received = b""
        self.conns = []
        self.lock = threading.Lock()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            with self.lock:
                self.conns.append(c)
            threading.Thread(target=self._read, args=(c,), daemon=True).start()

    def _read(self, c):
        while True:
            try:
                b = c.recv(65536)
            except OSError:
                return
            if not b:
                return
            with self.lock:
                self.received += b

    def got(self, needle):
        with self.lock:
            return needle in self.received

    def connections(self):
        with self.lock:
            return len(self.conns)

    def close(self):
        self.sock.close()
        with self.lock:
            for c in self.conns:
                c.close()


def closed_port():
    """A loopback port nobody listens on (connections are refused)."""
    return harness.free_port()


class ShutdownCase(tf.ForwarderBase):
    partitions = 2

    def hole(self):
        h = BlackHole()
        self.addCleanup(h.close)
        return h

    def sigterm_and_time(self, k):
        t0 = time.monotonic()
        k.signal(signal.SIGTERM)
        rc = k.wait(STOP_DEADLINE_S + 15)
        took = time.monotonic() - t0
        print("%s: exit %d %.1f s after SIGTERM" % (self.id(), rc, took))
        self.assertEqual(rc, 0, k.tail(30))
        self.assertLess(took, STOP_DEADLINE_S, k.tail(30))
        self.assertIn("kadx: stopped", "\n".join(k.err))
        return took

    def test_adx_never_answers_a_request_in_flight(self):
        h = self.hole()
        tf.write_config(self.cfg, self.bs, "g-sd-adx-hole", self.journal,
                        "http://127.0.0.1:%d" % h.port, dedupe=False)
        with open(self.cfg) as f:
            cfg = json.load(f)
        # the request would hang for a minute without the stop's deadline
        cfg["adx"]["request_timeout_ms"] = 60000
        cfg["forwarder"]["ambiguous_window_ms"] = 120000
        with open(self.cfg, "w") as f:
            json.dump(cfg, f)
        k = self.start_kadx()
        k.wait_for("assigned", timeout=30, what="partitions assigned")
        tf.produce(self.bs, self.parts, 0, 50)
        harness.wait_until(lambda: h.got(b"/v1/rest/ingest/"), timeout=30,
                           what="an ingest request in flight")
        self.sigterm_and_time(k)
        self.assertIn("still in flight after the timeout: cancelled",
                      "\n".join(k.err))

    def test_adx_refuses_connections(self):
        tf.write_config(self.cfg, self.bs, "g-sd-adx-refused", self.journal,
                        "http://127.0.0.1:%d" % closed_port(), dedupe=False,
                        admin=True)
        k = self.start_kadx()
        k.wait_for("assigned", timeout=30, what="partitions assigned")
        tf.produce(self.bs, self.parts, 0, 50)

        def refused():
            _, st = tf.admin_get(k, "/status")
            return "onnect" in json.dumps(st)
        harness.wait_until(refused, timeout=30, interval=0.2,
                           what="a refused connection to ADX in /status")
        self.sigterm_and_time(k)

    def test_kafka_never_answers(self):
        h = self.hole()
        emu = self.start_emulator()
        tf.write_config(self.cfg, "127.0.0.1:%d" % h.port, "g-sd-kafka-hole",
                        self.journal, emu.url)
        k = self.start_kadx()
        harness.wait_until(lambda: h.connections() > 0, timeout=30,
                           what="a connection to the silent broker")
        self.sigterm_and_time(k)

    def test_kafka_refuses_connections(self):
        emu = self.start_emulator()
        tf.write_config(self.cfg, "127.0.0.1:%d" % closed_port(),
                        "g-sd-kafka-refused", self.journal, emu.url)
        k = self.start_kadx()
        k.wait_for("Connection refused", timeout=30,
                   what="a refused connection to Kafka")
        self.sigterm_and_time(k)

    def test_kafka_goes_silent_after_assignment(self):
        """The worst Kafka case: the group coordinator stops answering with
        commits to make and a group to leave (the mock is SIGSTOPped)."""
        # librdkafka's mock in a process of its own: a whole cluster to
        # SIGSTOP (coordinator included)
        mock = kafka.MockCluster(topics=[(tf.TOPIC, self.partitions)])
        self.addCleanup(mock.stop)
        emu = self.start_emulator()
        tf.setup_table(emu)
        tf.write_config(self.cfg, mock.bootstrap, "g-sd-kafka-silent",
                        self.journal, emu.url)
        k = self.start_kadx()
        k.wait_for("assigned", timeout=30, what="partitions assigned")
        tf.produce(mock.bootstrap, self.parts, 0, 100)
        self.wait_count(emu, 100 * self.partitions, 60, k)
        os.kill(mock.proc.pid, signal.SIGSTOP)
        self.addCleanup(os.kill, mock.proc.pid, signal.SIGCONT)
        self.sigterm_and_time(k)


if __name__ == "__main__":
    harness.main()
