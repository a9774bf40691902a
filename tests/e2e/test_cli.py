"""The CLI surface: help, version, usage errors (issue 2)."""
import os
import shutil
import subprocess
import tempfile

import harness
from harness import run


class TestCli(harness.TmpDirCase):
    def test_help_lists_every_command(self):
        rc, out, _ = run("--help")
        self.assertEqual(rc, 0)
        for c in ("run", "recover", "produce", "consume", "demo"):
            self.assertIn("  " + c + " ", out)

    def test_version(self):
        rc, out, _ = run("--version")
        self.assertEqual(rc, 0)
        self.assertRegex(out, r"^kadx \d+\.\d+\.\d+")

    def test_command_help(self):
        for c in ("run", "recover", "produce", "consume", "demo"):
            rc, out, err = run(c, "--help")
            self.assertEqual(rc, 0, c + ": " + err)
            self.assertIn("usage: kadx " + c, out)

    def test_unknown_command(self):
        rc, _, err = run("frobnicate")
        self.assertEqual(rc, 2)
        self.assertIn("unknown command 'frobnicate'", err)

    def test_unknown_global_flag(self):
        rc, _, err = run("--frob")
        self.assertEqual(rc, 2)
        self.assertIn("unknown option '--frob'", err)

    def test_no_command(self):
        rc, _, err = run()
        self.assertEqual(rc, 2)
        self.assertIn("usage:", err)

    def test_bad_log_level(self):
        rc, _, err = run("--log-level", "loud", "run", "--help")
        self.assertEqual(rc, 2)
        self.assertIn("bad --log-level 'loud'", err)


    def test_no_core_files(self):
        """Secrets live in kadx's memory, so it writes no core file: its
        core size limit is 0 and, in a non-sanitized build, it is not
        dumpable. The kernel makes a non-dumpable process's /proc entries
        belong to root, so when the test runs as root the plain build
        (KADX_PLAIN_BIN) runs as 'nobody' and its /proc/PID/status must be
        root's."""
        import pwd
        plain = os.environ.get("KADX_PLAIN_BIN")
        cases = [(harness.KADX, None)]
        if plain and os.geteuid() == 0:
            # a copy 'nobody' can reach, wherever the checkout is
            d = tempfile.mkdtemp(prefix="kadx-nobody-")
            self.addCleanup(shutil.rmtree, d, True)
            os.chmod(d, 0o755)
            shutil.copy(plain, os.path.join(d, "kadx"))
            cases.append((os.path.join(d, "kadx"),
                          pwd.getpwnam("nobody").pw_uid))
        for binary, uid in cases:
            pre = (lambda u=uid: os.setuid(u)) if uid is not None else None
            p = subprocess.Popen([binary, "adx-emulator"],
                                 stdout=subprocess.PIPE,
                                 stderr=subprocess.DEVNULL, preexec_fn=pre)
            try:
                self.assertIn(b"listening on", p.stdout.readline())
                with open("/proc/%d/limits" % p.pid) as f:
                    core = [l for l in f if l.startswith("Max core file")]
                self.assertEqual(core[0].split()[4:6], ["0", "0"], core)
                if uid is not None:
                    st = os.stat("/proc/%d/status" % p.pid)
                    self.assertEqual(st.st_uid, 0, "kadx is dumpable")
            finally:
                p.kill()
                p.wait(10)


if __name__ == "__main__":
    harness.main()
