"""format-check: fails when a C file in the tree differs from clang-format.

Usage: format_check.py SRC_ROOT. Lists the files that need formatting and
exits 1; run `clang-format -i FILE` to fix one.
"""
import os
import shutil
import subprocess
import sys

DIRS = ("cmd", "gateway", "storage", "admin", "emulators", "tests")


def main():
    root = sys.argv[1]
    cf = shutil.which("clang-format") or shutil.which("clang-format-14")
    if cf is None:
        print("clang-format is not installed (bash .ci/install-deps)")
        return 1
    files = []
    for d in DIRS:
        for base, _, names in os.walk(os.path.join(root, d)):
            if "node_modules" in base:
                continue
            files += [os.path.join(base, n) for n in names
                      if n.endswith((".c", ".h"))]
    bad = []
    for f in sorted(files):
        with open(f, "rb") as fh:
            src = fh.read()
        out = subprocess.run([cf, "--style=file", "--assume-filename=" + f],
                             input=src, capture_output=True, cwd=root).stdout
        if out != src:
            bad.append(os.path.relpath(f, root))
    for f in bad:
        print("needs clang-format: " + f)
    print("%d files checked, %d need formatting" % (len(files), len(bad)))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
