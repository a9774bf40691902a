"""kadx against a real Apache Kafka broker's security listeners (issue 11).

One Kafka 4.x node (tests/kafka) listens on PLAINTEXT (the test's producer),
SSL, SASL_PLAINTEXT and SASL_SSL; the SASL listeners take PLAIN (a JAAS user),
SCRAM-SHA-512 (a user made with the broker's admin API) and OAUTHBEARER
(the broker's default unsecured-JWS validator). Certificates come from a CA
the test makes with openssl. kadx gets the librdkafka properties as they are
(config `kafka` map) and must deliver each topic's 1,000 events exactly once
(audited by topic, partition and offset in the ADX emulator).

Bad credentials: a wrong password and a CA kadx does not trust each give one
clear error line (not one per reconnect), /readyz 503 with the reason, no
crash, no secret in any log or in /status; kadx keeps retrying (gateway/
INTAKE.md), and once the config is fixed every event is delivered.

SCRAM: Debian 12's librdkafka (2.0.2) cannot log in with SCRAM to a Kafka
4.x broker (librdkafka#4895, fixed in 2.6.1: 4.x checks the nonce strictly).
Against 4.x the test checks the clear error that names the cause, and
delivery with the same kadx binary run on librdkafka 2.16 (the one in
confluent-kafka's wheel, LD_LIBRARY_PATH); delivery with Debian's
librdkafka and SCRAM-SHA-512 is checked against Kafka 3.9
(tests/kafka/kafka-3.9).
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import unittest

import adx
import harness
import kafka
import test_forwarder as tf
from harness import wait_until

sys.path.insert(0, os.path.join(harness.SRC, "tests", "kafka"))
import kafka_cluster  # noqa: E402

N = 1000
PARTS = 2
USER = "alice"
SECRET = "alice-Pw-7781-secret"      # the right password
WRONG = "wrong-Pw-4410-secret"       # a wrong one: must not be printed either
MECHS = "PLAIN,SCRAM-SHA-512,OAUTHBEARER"
KAFKA39 = os.path.join(harness.SRC, "tests", "kafka", "kafka-3.9", "jars")


def openssl(*args):
    p = subprocess.run(["openssl"] + list(args), capture_output=True,
                       timeout=60)
    if p.returncode != 0:
        raise AssertionError("openssl %s: %s" % (args[0], p.stderr.decode()))


def make_pki(d):
    """A CA, a broker certificate for 127.0.0.1 signed by it (PEM keystore:
    key + chain), and a second CA that signed nothing (the untrusted one)."""
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout",
                os.path.join(d, ca + ".key"), "-out",
                os.path.join(d, ca + ".pem"), "-days", "2", "-subj",
                "/CN=kadx test " + ca)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout",
            os.path.join(d, "broker.key"), "-out",
            os.path.join(d, "broker.csr"), "-subj", "/CN=127.0.0.1")
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", os.path.join(d, "broker.csr"), "-CA",
            os.path.join(d, "ca.pem"), "-CAkey", os.path.join(d, "ca.key"),
            "-CAcreateserial", "-out", os.path.join(d, "broker.pem"), "-days",
            "2", "-extfile", os.path.join(d, "san.ext"))
    with open(os.path.join(d, "keystore.pem"), "w") as out:
        for part in ("broker.key", "broker.pem"):
            with open(os.path.join(d, part)) as f:
                out.write(f.read())


def broker_props(pki):
    props = {
        "ssl.keystore.type": "PEM",
        "ssl.keystore.location": os.path.join(pki, "keystore.pem"),
        "ssl.truststore.type": "PEM",
        "ssl.truststore.location": os.path.join(pki, "ca.pem"),
    }
    for lst in ("sasl_plain", "sasl_ssl"):
        pre = "listener.name.%s." % lst
        props[pre + "sasl.enabled.mechanisms"] = MECHS
        props[pre + "plain.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.plain.PlainLoginModule "
            "required user_%s=\"%s\";" % (USER, SECRET))
        props[pre + "scram-sha-512.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.scram.ScramLoginModule "
            "required;")
        props[pre + "oauthbearer.sasl.jaas.config"] = (
            "org.apache.kafka.common.security.oauthbearer."
            "OAuthBearerLoginModule required;")
    return props


LISTENERS = {"SSL": "SSL", "SASL_PLAIN": "SASL_PLAINTEXT",
             "SASL_SSL": "SASL_SSL"}


def add_scram_user(cluster):
    from confluent_kafka.admin import (ScramCredentialInfo, ScramMechanism,
                                       UserScramCredentialUpsertion)
    futs = cluster.admin().alter_user_scram_credentials([
        UserScramCredentialUpsertion(
            USER, ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
            SECRET.encode())])
    for f in futs.values():
        f.result(60)


class SecurityBase(unittest.TestCase):
    """One broker and one emulator per class (harness.TmpDirCase would stop
    them after each test); each test's kadx is killed by PID after it."""
    jars = None  # the suite's Kafka 4.x

    def setUp(self):
        td = tempfile.TemporaryDirectory(prefix="kadx-e2e-")
        self.tmp = td.name
        self.addCleanup(td.cleanup)

    @classmethod
    def setUpClass(cls):
        cls.pki = tempfile.mkdtemp(prefix="kadx-pki-")
        make_pki(cls.pki)
        cls.cluster = kafka_cluster.KafkaCluster(
            nodes=1, extra_listeners=LISTENERS,
            extra_props=broker_props(cls.pki), jars=cls.jars).start()
        add_scram_user(cls.cluster)
        cls.emu = adx.Emulator().start()
        tf.setup_table(cls.emu)

    @classmethod
    def tearDownClass(cls):
        cls.emu.stop()
        cls.cluster.stop()
        subprocess.run(["rm", "-rf", cls.pki])

    def ca(self, name="ca"):
        return os.path.join(self.pki, name + ".pem")

    def topic(self, name):
        self.cluster.create_topic(name, partitions=PARTS)
        for p in range(PARTS):
            kafka.produce(self.cluster.bootstrap, name, p,
                          (tf.event(p, i) for i in range(N)))
        return name

    def config(self, topic, listener, props):
        kprops = {"bootstrap.servers": self.cluster.bootstrap_for(listener),
                  "group.id": "g-" + topic}
        kprops.update(props)
        cfg = {
            "kafka": kprops,
            "adx": {"ingest_url": self.emu.url, "auth": {"method": "none"}},
            "routes": [{
                "topic": topic, "database": "leaderboard",
                "table": tf.TABLE, "format": "json", "mapping": tf.MAPPING,
                "meta": {"topic": "kafka_topic",
                         "partition": "kafka_partition",
                         "offset": "kafka_offset", "batch_id": "kadx_batch"},
                "dedupe_column": "BatchId"}],
            "journal": {"path": os.path.join(self.tmp, topic + ".db")},
            "forwarder": {"linger_ms": 50},
            "admin": {"listen": "127.0.0.1:0"},
        }
        path = os.path.join(self.tmp, topic + ".json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    def start(self, cfg, env=None):
        k = harness.kadx("run", "-c", cfg, env=env, name="kadx run")
        self.addCleanup(k.kill)
        line = k.wait_for("admin: listening on", timeout=30,
                          what="the admin listening line")
        k.port = int(re.search(r"127\.0\.0\.1:(\d+)", line).group(1))
        return k

    def get(self, k, path):
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", k.port, timeout=10)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode()
        finally:
            c.close()

    def audit(self, topic):
        rows = self.emu.query(
            "GamePlay | where KafkaTopic == '%s' | summarize c=count(), "
            "d=dcount(KafkaOffset), lo=min(KafkaOffset), hi=max(KafkaOffset)"
            " by KafkaPartition" % topic)
        got = {r["KafkaPartition"]: r for r in rows}
        self.assertEqual(sorted(got), list(range(PARTS)), rows)
        for p, r in got.items():
            self.assertEqual((r["c"], r["d"], r["lo"], r["hi"]),
                             (N, N, 0, N - 1), "partition %d: %r" % (p, r))

    def count(self, topic):
        rows = self.emu.query("GamePlay | where KafkaTopic == '%s' | "
                              "count" % topic)
        return rows[0]["Count"] if rows else 0

    def no_secret(self, k, *texts):
        logs = "\n".join(k.lines())
        for s in (SECRET, WRONG) + texts:
            self.assertNotIn(s, logs, "a secret in kadx's log")
        st, status = self.get(k, "/status")
        self.assertEqual(st, 200)
        for s in (SECRET, WRONG):
            self.assertNotIn(s, status, "a secret in /status")

    def deliver(self, topic, listener, props, env=None):
        """1,000 events per partition of a new topic through listener,
        exactly once; SIGTERM exits 0; no secret printed."""
        self.topic(topic)
        k = self.start(self.config(topic, listener, props), env=env)
        wait_until(lambda: self.count(topic) >= N * PARTS or not k.alive(),
                   timeout=90, interval=0.25,
                   what="%d rows of %s" % (N * PARTS, topic))
        self.assertTrue(k.alive(), k.tail())
        self.audit(topic)
        wait_until(lambda: self.get(k, "/readyz")[0] == 200, timeout=20,
                   what="/readyz 200")
        self.no_secret(k)
        self.assertEqual(k.stop(), 0, k.tail())
        return k

    def refused(self, topic, listener, props, want):
        """kadx with props that the broker refuses: one clear error line
        matching want (a regex), /readyz 503 with it, no crash, no secret.
        Returns the process, still running."""
        k = self.start(self.config(topic, listener, props))
        try:
            wait_until(lambda: any(re.search(want, l) for l in k.lines()),
                       timeout=60, what="an error line matching %r" % want)
        except AssertionError:
            print(k.tail(30))
            raise
        st, body = self.get(k, "/readyz")
        self.assertEqual(st, 503, body)
        self.assertRegex(body, want)
        # librdkafka retries with backoff (up to reconnect.backoff.max.ms,
        # 10 s): wait until it has reported the failure several times, then
        # count the lines at error level about it
        def errors():
            return json.loads(self.get(k, "/status")[1])["intake"][
                "kafka_errors"]
        wait_until(lambda: errors() >= 3, timeout=60, interval=0.5,
                   what="three Kafka error events")
        errs = [l for l in k.lines() if re.search(want, l)]
        self.assertEqual(len(errs), 1, "one error line, not one per "
                         "reconnect:\n" + "\n".join(errs))
        self.assertTrue(k.alive(), k.tail())
        self.no_secret(k)
        return k


class TestSecurityKafka4(SecurityBase):

    def test_ssl(self):
        self.deliver("sec-ssl", "SSL", {"security.protocol": "SSL",
                                        "ssl.ca.location": self.ca()})

    def test_sasl_plaintext_plain(self):
        self.deliver("sec-plain", "SASL_PLAIN", {
            "security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "PLAIN",
            "sasl.username": USER, "sasl.password": SECRET})

    def test_sasl_ssl_plain(self):
        self.deliver("sec-ssl-plain", "SASL_SSL", {
            "security.protocol": "SASL_SSL", "ssl.ca.location": self.ca(),
            "sasl.mechanisms": "PLAIN", "sasl.username": USER,
            "sasl.password": SECRET})

    def test_sasl_ssl_oauthbearer_unsecured_jws(self):
        self.deliver("sec-oauth", "SASL_SSL", {
            "security.protocol": "SASL_SSL", "ssl.ca.location": self.ca(),
            "sasl.mechanisms": "OAUTHBEARER",
            "enable.sasl.oauthbearer.unsecure.jwt": "true",
            "sasl.oauthbearer.config": "principal=" + USER})

    def test_wrong_password_then_fixed(self):
        topic = self.topic("sec-wrong")
        bad = {"security.protocol": "SASL_PLAINTEXT",
               "sasl.mechanisms": "PLAIN", "sasl.username": USER,
               "sasl.password": WRONG}
        k = self.refused(topic, "SASL_PLAIN", bad,
                         r"_AUTHENTICATION.*check kafka sasl\.mechanisms")
        self.assertEqual(self.count(topic), 0)
        self.assertEqual(k.stop(), 0, k.tail())
        # fixed: the same journal and group deliver every event once
        bad["sasl.password"] = SECRET
        k = self.start(self.config(topic, "SASL_PLAIN", bad))
        wait_until(lambda: self.count(topic) >= N * PARTS, timeout=90,
                   interval=0.25, what="every event after the fix")
        self.audit(topic)
        self.assertEqual(k.stop(), 0, k.tail())

    def test_untrusted_ca(self):
        topic = self.topic("sec-untrusted")
        k = self.refused(topic, "SSL", {
            "security.protocol": "SSL",
            "ssl.ca.location": self.ca("other-ca")},
            r"_SSL.*check kafka ssl\.ca\.location")
        self.assertEqual(self.count(topic), 0)
        self.assertEqual(k.stop(), 0, k.tail())

    def test_scram_against_kafka4_names_the_cause(self):
        topic = self.topic("sec-scram4")
        k = self.refused(topic, "SASL_SSL", {
            "security.protocol": "SASL_SSL", "ssl.ca.location": self.ca(),
            "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": USER,
            "sasl.password": SECRET},
            r"_AUTHENTICATION.*librdkafka before 2\.6\.1.*SCRAM")
        self.assertTrue(any("cannot authenticate with SCRAM to Kafka 4.x"
                            in l for l in k.lines()), k.tail())
        self.assertEqual(k.stop(), 0, k.tail())

    def test_scram_against_kafka4_with_librdkafka_2_16(self):
        """The same kadx binary, run with a librdkafka that has the fix
        (the one inside confluent-kafka's wheel from PyPI, 2.16: librdkafka
        keeps its ABI, so kadx built with Debian's 2.0.2 headers runs on it
        unchanged), logs in with SCRAM-SHA-512 to Kafka 4.x and delivers."""
        lib = newer_librdkafka(self.tmp)
        k = self.deliver("sec-scram4-new", "SASL_SSL", {
            "security.protocol": "SASL_SSL", "ssl.ca.location": self.ca(),
            "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": USER,
            "sasl.password": SECRET}, env={"LD_LIBRARY_PATH": lib})
        # the run really used the newer library
        self.assertTrue(any("librdkafka 2.16" in l for l in k.lines()),
                        k.tail())


def newer_librdkafka(tmp):
    """A folder with librdkafka.so.1 -> the librdkafka that confluent-kafka's
    wheel carries (self-contained: OpenSSL, SASL and zstd linked in)."""
    import confluent_kafka
    libs = os.path.join(os.path.dirname(os.path.dirname(
        confluent_kafka.__file__)), "confluent_kafka.libs")
    found = [f for f in os.listdir(libs) if f.startswith("librdkafka")]
    assert len(found) == 1, found
    d = os.path.join(tmp, "rdkafka-new")
    os.makedirs(d)
    os.symlink(os.path.join(libs, found[0]),
               os.path.join(d, "librdkafka.so.1"))
    return d


class TestScramKafka39(SecurityBase):
    jars = KAFKA39

    def test_sasl_ssl_scram_sha_512(self):
        self.deliver("sec-scram", "SASL_SSL", {
            "security.protocol": "SASL_SSL", "ssl.ca.location": self.ca(),
            "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": USER,
            "sasl.password": SECRET})

    def test_sasl_plaintext_scram_sha_512(self):
        self.deliver("sec-scram-plain", "SASL_PLAIN", {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "SCRAM-SHA-512", "sasl.username": USER,
            "sasl.password": SECRET})


if __name__ == "__main__":
    harness.main()
