"""The admin status page (issue 17, GET / on the admin port, admin/page.c)
in Debian's headless Chromium, driven by playwright-core
(tests/page/drive_page.mjs), against a running gateway: the real Kafka
broker (tests/kafka), the ADX emulator and `kadx run` with admin.token and
admin.token_on_get, events produced the whole time.

The driver checks that the page asks for the token (once: a reload in the
tab does not ask again; a wrong one is refused), keeps it in
sessionStorage and never in a URL, shows live counters (the delivered
count moves by the page's own refresh), partitions with lag, journal fill
and token expiry, that its pause button pauses the route (/status says
paused-operator; delivery stops while events keep being journaled) and its
resume button resumes it, with no CSP violation or script error. This file
then checks that every event produced arrived exactly once.
"""
import os
import re
import signal
import subprocess
import threading

import harness
import test_forwarder as tf
from harness import wait_until
from test_ops import admin_req, patch_config

TOKEN = "page-admin-token-5678"
def count_lines(proc, needle):
    return sum(1 for l in proc.lines() if needle in l)


DRIVER = os.path.join(harness.SRC, "tests", "page", "drive_page.mjs")


class Trickle(threading.Thread):
    """Produces `per_round` events to each partition, round after round,
    until stop(); self.n is the count per partition produced so far."""

    def __init__(self, bootstrap, partitions, per_round=5):
        super().__init__(daemon=True)
        self.bs = bootstrap
        self.parts = partitions
        self.per_round = per_round
        self.n = 0
        self.error = None
        self.halt = threading.Event()

    def run(self):
        try:
            while not self.halt.is_set():
                tf.produce(self.bs, self.parts, self.n, self.per_round)
                self.n += self.per_round
        except Exception as e:  # reported by stop()
            self.error = e

    def stop(self):
        self.halt.set()
        self.join(60)
        if self.is_alive():
            raise AssertionError("the producer did not stop")
        if self.error:
            raise self.error
        return self.n


class PageCase(tf.ForwarderBase):
    partitions = 2

    def drive(self, env, kadx):
        """Runs the driver to its end, answering its requests (a line
        "page: ask WHAT" on its stdout; "done WHAT" on its stdin once
        done). Returns its output; fails when it failed."""
        d = subprocess.Popen(["node", DRIVER], env=env, text=True,
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT)
        self.addCleanup(lambda: d.poll() is None and d.kill())
        timer = threading.Timer(150, d.kill)  # a deadline on the whole run
        timer.start()
        out = []
        try:
            for line in d.stdout:
                out.append(line)
                m = re.match(r"page: ask (\S+)", line)
                if m and m.group(1) == "reload-without-token-on-get":
                    patch_config(self.cfg, lambda c: c["admin"].update(
                        {"token_on_get": False}))
                    before = count_lines(kadx, "reload: '")
                    kadx.signal(signal.SIGHUP)
                    wait_until(lambda: count_lines(kadx, "reload: '") >
                               before, timeout=30, what="the reload line")
                    st, _, _ = admin_req(self.port, "GET", "/status")
                    self.assertEqual(st, 200)
                    d.stdin.write("done %s\n" % m.group(1))
                    d.stdin.flush()
                elif m:
                    self.fail("unknown request from the driver: " + line)
            rc = d.wait(30)
        finally:
            timer.cancel()
        text = "".join(out)
        print(text)
        self.assertEqual(rc, 0, text[-3000:] + "\n" + kadx.tail())
        return text

    def test_status_page_in_chromium(self):
        emu = self.start_emulator()
        tf.setup_table(emu)
        tf.write_config(self.cfg, self.bs, "g-page", self.journal, emu.url,
                        admin=True)
        patch_config(self.cfg, lambda c: c["admin"].update(
            {"token": TOKEN, "token_on_get": True}))
        p = self.start_kadx()
        line = p.wait_for("admin: listening on", timeout=30,
                          what="the admin listening line")
        port = self.port = int(re.search(r"127\.0\.0\.1:(\d+)",
                                         line).group(1))
        # the data behind the page needs the token; the page does not
        st, _, _ = admin_req(port, "GET", "/status")
        self.assertEqual(st, 401)
        prod = Trickle(self.bs, self.parts)
        prod.start()
        try:
            wait_until(lambda: emu.count(tf.TABLE) > 0, timeout=30,
                       what="the first delivered rows")
            env = dict(os.environ,
                       KADX_PAGE_URL="http://127.0.0.1:%d/" % port,
                       KADX_PAGE_TOKEN=TOKEN,
                       KADX_PAGE_ROUTE="gameplay",
                       KADX_PAGE_PARTITIONS=str(self.partitions))
            out = self.drive(env, p)
            self.assertIn("page: all checks passed", out)
        finally:
            n = prod.stop()
        # nothing lost or doubled by the pause and resume
        self.wait_count(emu, n * self.partitions, 60, p)
        tf.audit(emu, self.parts, n)
        self.assertEqual(p.stop(), 0)


if __name__ == "__main__":
    harness.main()
