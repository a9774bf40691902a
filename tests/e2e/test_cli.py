"""The CLI surface: help, version, usage errors (issue 2)."""
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


if __name__ == "__main__":
    harness.main()
