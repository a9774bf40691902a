"""harness.py - process control for kadx's end-to-end tests (stdlib only).

Every process a test starts goes through Proc, which records its PID; at
exit, on failure, and on SIGTERM the harness kills (SIGKILL) every process it
started that is still alive, so no test leaves a daemon behind. Helpers wait
on real conditions (a line on a stream, a file, a TCP port), each under a
deadline; there is no sleep standing in for synchronisation.
"""
import atexit
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

KADX = os.environ.get("KADX_BIN", "kadx")
SRC = os.environ.get("KADX_SRC", os.path.dirname(os.path.dirname(
    os.path.dirname(os.path.abspath(__file__)))))
FULL = os.environ.get("KADX_FULL", "0") == "1"

_live = []


def _kill_all():
    for p in list(_live):
        p.kill()


atexit.register(_kill_all)


def _on_term(signum, frame):
    _kill_all()
    sys.exit(128 + signum)


signal.signal(signal.SIGTERM, _on_term)


class Proc:
    """A child process whose stdout/stderr lines are collected by threads.

    lines() and wait_for() see both streams; out and err keep them apart.
    """

    def __init__(self, args, env=None, stdin=subprocess.DEVNULL, cwd=None,
                 name=None):
        full_env = dict(os.environ)
        # ASan: do not abort on leaks of a SIGKILLed child, keep reports short
        full_env.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        if env:
            full_env.update(env)
        self.name = name or os.path.basename(args[0])
        self.args = args
        self.p = subprocess.Popen(args, stdin=stdin, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, env=full_env,
                                  cwd=cwd)
        self.pid = self.p.pid
        self.out = []
        self.err = []
        self._q = queue.Queue()
        self._lock = threading.Lock()
        _live.append(self)
        self._threads = [
            threading.Thread(target=self._pump, args=(self.p.stdout, self.out),
                             daemon=True),
            threading.Thread(target=self._pump, args=(self.p.stderr, self.err),
                             daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump(self, stream, sink):
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\n")
            with self._lock:
                sink.append(line)
            self._q.put(line)
        stream.close()

    def lines(self):
        with self._lock:
            return list(self.out) + list(self.err)

    def wait_for(self, pred, timeout=20.0, what="a line"):
        """Waits for a line (from either stream) for which pred(line) holds.

        pred may be a string (substring match). Returns the line. Raises
        AssertionError with the process's recent output on timeout or exit.
        """
        if isinstance(pred, str):
            needle = pred
            pred = lambda l: needle in l  # noqa: E731
        for line in self.lines():
            if pred(line):
                return line
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("%s: timed out waiting for %s\n%s" % (
                    self.name, what, self.tail()))
            try:
                line = self._q.get(timeout=min(left, 0.2))
            except queue.Empty:
                if self.p.poll() is not None and self._q.empty():
                    for t in self._threads:
                        t.join(1)
                    for l in self.lines():
                        if pred(l):
                            return l
                    raise AssertionError(
                        "%s exited (%s) before %s\n%s" % (
                            self.name, self.p.returncode, what, self.tail()))
                continue
            if pred(line):
                return line

    def tail(self, n=40):
        return "\n".join(self.lines()[-n:])

    def alive(self):
        return self.p.poll() is None

    def signal(self, sig):
        if self.alive():
            os.kill(self.pid, sig)

    def kill(self):
        """SIGKILL (kill -9) by PID and reap."""
        if self.p.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            self.p.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for t in self._threads:
            t.join(2)
        if self in _live:
            _live.remove(self)

    def stop(self, timeout=15.0):
        """SIGTERM, wait up to timeout, then SIGKILL. Returns the exit code."""
        if self.p.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.p.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise AssertionError("%s did not stop within %.0fs on SIGTERM"
                                     "\n%s" % (self.name, timeout, self.tail()))
        for t in self._threads:
            t.join(2)
        if self in _live:
            _live.remove(self)
        return self.p.returncode

    def wait(self, timeout=60.0):
        try:
            rc = self.p.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError("%s did not exit within %.0fs\n%s" % (
                self.name, timeout, self.tail()))
        for t in self._threads:
            t.join(2)
        if self in _live:
            _live.remove(self)
        return rc


def kadx(*args, env=None, stdin=subprocess.DEVNULL, name=None):
    """Starts the kadx binary with args; returns a Proc."""
    return Proc([KADX] + [str(a) for a in args], env=env, stdin=stdin,
                name=name or "kadx " + str(args[0]) if args else "kadx")


def run(*args, timeout=60.0, env=None, input_bytes=None):
    """Runs kadx to completion: returns (rc, stdout, stderr) as text."""
    full_env = dict(os.environ)
    if env:
        full_env.update(env)
    p = subprocess.run([KADX] + [str(a) for a in args], env=full_env,
                       input=input_bytes, capture_output=True,
                       timeout=timeout)
    return (p.returncode, p.stdout.decode("utf-8", "replace"),
            p.stderr.decode("utf-8", "replace"))


def free_port():
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout=20.0, what="a condition", interval=0.05):
    """Polls cond() until it returns a true value; returns that value."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() >= deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(interval)


class TmpDirCase(unittest.TestCase):
    """A TestCase with self.tmp, a fresh directory removed afterwards."""

    def setUp(self):
        self._td = tempfile.TemporaryDirectory(prefix="kadx-e2e-")
        self.tmp = self._td.name
        self.addCleanup(self._td.cleanup)
        self.addCleanup(_kill_all)


def _check_split(split):
    """meson runs some files as several tests (tests/e2e/meson.build), each
    with --split=E1,E2,... (every entry, "Class" or "Class.method") and one
    entry to run. Every test of the file must be in exactly one entry, so a
    new test cannot be silently left out; a stale entry is refused too."""
    entries = split.split(",")
    main_mod = sys.modules["__main__"]
    loader = unittest.TestLoader()
    ids = []
    for name, v in vars(main_mod).items():
        if (isinstance(v, type) and issubclass(v, unittest.TestCase)
                and v.__module__ == "__main__"):
            ids += [name + "." + m for m in loader.getTestCaseNames(v)]
    for t in ids:
        n = sum(1 for e in entries if e == t or e == t.split(".")[0])
        if n != 1:
            raise SystemExit("%s is in %d of meson's entries for this file "
                             "(must be 1): %s" % (t, n, split))
    for e in entries:
        if not any(e == t or e == t.split(".")[0] for t in ids):
            raise SystemExit("meson entry %r names no test of this file" % e)


def main():
    """unittest.main, after checking a --split=... list (see _check_split)."""
    argv = [a for a in sys.argv if not a.startswith("--split=")]
    for a in sys.argv:
        if a.startswith("--split="):
            _check_split(a[len("--split="):])
    unittest.main(argv=argv, verbosity=2)
