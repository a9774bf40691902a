"""run_conformance.py - the meson test that runs the Node.js SDK conformance
tests (emulator.test.mjs) against the kadx ADX emulator.

Exits 77 (meson's "skipped") when node or the pinned SDKs are missing:
`bash .ci/install-deps` installs both (npm ci from package-lock.json).
Traffic stays on loopback: proxy variables are dropped so that the SDK's
axios cannot route 127.0.0.1 through a proxy.
"""
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    # the test file: emulator.test.mjs, or queued.test.mjs (which needs
    # azurite too: meson test conformance-node-queued)
    test_file = sys.argv[1] if len(sys.argv) > 1 else "emulator.test.mjs"
    node = shutil.which("node")
    if node is None:
        print("skipped: node is not installed (bash .ci/install-deps)")
        return 77
    pkgs = ["azure-kusto-data", "azure-kusto-ingest"]
    if test_file == "queued.test.mjs":
        pkgs.append("azurite")
    for pkg in pkgs:
        if not os.path.isdir(os.path.join(HERE, "node_modules", pkg)):
            print("skipped: %s is not installed (cd tests/conformance && "
                  "npm ci)" % pkg)
            return 77
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in ("http_proxy", "https_proxy", "all_proxy")}
    env["NO_PROXY"] = "*"
    env["no_proxy"] = "*"
    return subprocess.call([node, "--test", test_file], cwd=HERE,
                           env=env, timeout=240)


if __name__ == "__main__":
    sys.exit(main())
