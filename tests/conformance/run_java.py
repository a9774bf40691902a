"""run_java.py - the meson test conformance-java: the ADX emulator driven by
Microsoft's Java SDK (kusto-ingest/kusto-data, tests/conformance/java).

Starts `kadx adx-emulator` (no auth: see Conformance.java for why), compiles
java/src with javac against java/lib/ (the jars .ci/install-deps resolved
from the pinned pom) into a temporary folder, runs it against
http://localhost:PORT, then checks the rows once more with a KQL query of
its own. Exits 77 (skipped) when javac or the jars are missing.
Loopback only; the JVM gets no proxy.
"""
import glob
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "e2e"))

import adx  # noqa: E402


def main():
    javac, java = shutil.which("javac"), shutil.which("java")
    jars = glob.glob(os.path.join(HERE, "java", "lib", "*.jar"))
    if not javac or not java or not any("kusto-ingest" in j for j in jars):
        print("skipped: javac or the kusto-ingest jars are missing "
              "(bash .ci/install-deps)")
        return 77
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy",
                                "java_tool_options")}
    with tempfile.TemporaryDirectory(prefix="kadx-java-") as tmp:
        classes = os.path.join(tmp, "classes")
        srcs = glob.glob(os.path.join(HERE, "java", "src", "main", "java",
                                      "kadx", "*.java"))
        cp = os.path.join(HERE, "java", "lib", "*")
        subprocess.run([javac, "-d", classes, "-cp", cp] + srcs, check=True,
                       timeout=120)
        with adx.Emulator(databases=("leaderboard",)) as emu:
            url = "http://localhost:%d" % emu.port
            rc = subprocess.call(
                [java, "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                 "-Djava.net.preferIPv4Stack=true",
                 "-cp", classes + os.pathsep + cp, "kadx.Conformance", url,
                 tmp, adx.SEED_CREATE_TABLE, adx.SEED_CREATE_MAPPING,
                 adx.SEED_STREAMING_POLICY.format(db="leaderboard"),
                 adx.GAMEPLAY_MAPPING],
                env=env, timeout=150)
            if rc != 0:
                return rc
            n = emu.count("GamePlay")
            if n != 50:
                print("FAIL: the emulator holds %d GamePlay rows, not 50" % n)
                return 1
            print("ok: the emulator's own query counts 50 rows")
            if emu.stop() != 0:
                print("FAIL: the emulator did not exit 0 on SIGTERM")
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
