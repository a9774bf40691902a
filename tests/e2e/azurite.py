"""azurite.py - start Azurite (Microsoft's Azure Storage emulator, npm
`azurite`, pinned in tests/conformance/package.json and installed by
.ci/install-deps) for the ADX emulator's queued ingestion.

    import adx, azurite
    with azurite.Azurite() as az:
        emu = adx.Emulator(extra=az.emulator_args()).start()

Blob, queue and table services on 127.0.0.1 with free ports (port 0: the
ports are read from Azurite's "successfully listening at" lines), in
memory (--inMemoryPersistence, a 256 MB extent cap), no telemetry. The
process runs under harness.Proc: stopped by its PID, killed by PID when
the test ends even if it forgets. Azurite's account is its well-known
development account (devstoreaccount1), which the emulator signs its SAS
with by default.
"""
import os
import re

import harness

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.path.normpath(os.path.join(HERE, "..", "conformance", "node_modules",
                                    ".bin", "azurite"))
ACCOUNT = "devstoreaccount1"


def available():
    return os.access(BIN, os.X_OK)


class Azurite:
    def __init__(self):
        self.proc = None
        self.blob = self.queue = self.table = None

    def start(self, timeout=60.0):
        if not available():
            raise AssertionError("azurite is not installed (%s): run "
                                 "bash .ci/install-deps" % BIN)
        self.proc = harness.Proc(
            [BIN, "--blobHost", "127.0.0.1", "--queueHost", "127.0.0.1",
             "--tableHost", "127.0.0.1", "--blobPort", "0", "--queuePort",
             "0", "--tablePort", "0", "--inMemoryPersistence",
             "--extentMemoryLimit", "256", "--disableTelemetry"],
            name="azurite")
        urls = {}
        for svc in ("Blob", "Queue", "Table"):
            line = self.proc.wait_for(
                "Azurite %s service is successfully listening" % svc,
                timeout=timeout, what="Azurite's %s service" % svc)
            m = re.search(r"(http://127\.0\.0\.1:\d+)", line)
            urls[svc] = m.group(1) + "/" + ACCOUNT
        self.blob, self.queue, self.table = (urls["Blob"], urls["Queue"],
                                             urls["Table"])
        return self

    def emulator_args(self):
        return ["--storage-blob", self.blob, "--storage-queue", self.queue,
                "--storage-table", self.table]

    def stop(self):
        if self.proc is not None:
            self.proc.stop()
            self.proc = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
