"""gateway/CONFIG.md's numbers against the code (and admin/ADMIN.md's admin
limits): every row of CONFIG.md's key tables (| key | type | default | ...)
is read, and

- its default is compared with the effective config `kadx run --check -c
  FILE` prints for a minimal file: a number with or without a unit
  (`30000`, `1 GiB`, `24 h`, `16MiB`) and the parenthetical that restates
  it (`600000 (10 min)`), a share of another key (`80 % of
  `journal.max_bytes``), the ambiguous window's sum, `true`/`false`, a
  literal (`json`, `127.0.0.1:8081`), another key's value (`ingest_url`) or
  `none` (unset);
- every range it states (`100 ms to 1 h`, `(1 to 64)`, `(min 16 MiB)`,
  `integer 1..100000`, `at least `4MiB``, `(>= 8 characters)`) is tried at
  both bounds: the bound itself is accepted, one past it is refused (exit
  2) with an error naming the key;
- the cross-key rules with a number (`ambiguous_window_ms` >= request +
  server timeout, `retry_max_ms` >= `retry_initial_ms`, the water marks)
  and the file-wide limits of "Rules that apply everywhere" (1 MiB file,
  1000 keys, 1000 routes, `${file:}` size) likewise.

A row the test cannot read fails it unless NOT_NUMBERS says why it has no
number to check, so a new documented default is checked or explained.
"""
import json
import os
import re

import harness
from harness import run

CONFIG_MD = os.path.join(harness.SRC, "gateway", "CONFIG.md")
ADMIN_MD = os.path.join(harness.SRC, "admin", "ADMIN.md")

CLEAN_ENV = {"KADX_BOOTSTRAP_SERVERS": "", "KADX_GROUP_ID": "",
             "AZURE_AUTHORITY_HOST": "", "AZURE_FEDERATED_TOKEN_FILE": "",
             "STATE_DIRECTORY": ""}

# The smallest valid file.
MINIMAL = {
    "kafka": {"bootstrap.servers": "127.0.0.1:9092", "group.id": "g"},
    "adx": {"ingest_url": "https://c.westeurope.kusto.windows.net"},
    "routes": [{"topic": "t", "database": "db", "table": "T"}],
}
# With a registry and a route with a converter, so the route's
# schema_registry (the top-level one, inherited) is printed too.
MINIMAL_SR = dict(MINIMAL, schema_registry={
    "url": "https://registry.example.com"}, routes=[
    {"topic": "t", "database": "db", "table": "T", "value_converter": "avro"}])

# CONFIG.md heading -> (where the key goes in the file, where --check
# prints it)
SECTIONS = {
    "kafka": ("kafka", "kafka"),
    "adx": ("adx", "adx"),
    "adx.auth": ("adx.auth", "adx.auth"),
    "routes": ("routes[0]", "routes[0]"),
    "schema_registry": ("schema_registry", "routes[0].schema_registry"),
    "journal": ("journal", "journal"),
    "log": ("log", "log"),
    "forwarder": ("forwarder", "forwarder"),
    "intake": ("intake", "intake"),
    "admin": ("admin", "admin"),
}

# Rows whose default is not a number or literal --check can show, and why.
NOT_NUMBERS = {
    "kafka.*": "any librdkafka property: librdkafka's defaults",
    "kafka.isolation.level": "set in the librdkafka conf, not printed",
    "adx.dm_url": "derived from ingest_url's host (test_config_check)",
    "adx.auth.token_file": "an environment variable, else a path",
    "adx.auth.authority_host": "an environment variable, else a URL",
    "adx.auth.scope": "from the cluster's metadata at run time",
    "adx.auth.imds_url": "used only by managed_identity; unset otherwise",
    "routes.topic_regex": "one of topic / topic_regex",
    "routes.name": "the topic or the regex",
    "routes.schema_registry": "the top-level object",
    "routes.topic": "required (one of topic / topic_regex)",
    "schema_registry.ca_file": "the system's CAs",
    "journal.path": "$STATE_DIRECTORY, else the working directory",
    "log.level": "the --log-level flag; not printed",
    "intake.topics": "printed as the whole subscription",
}

UNITS = {
    "": 1, "B": 1, "KiB": 1024, "MiB": 1024 ** 2, "GiB": 1024 ** 3,
    "ms": 1, "s": 1000, "min": 60000, "h": 3600000, "d": 86400000,
}
QTY = r"(\d+)\s*(KiB|MiB|GiB|ms|min|s|h|d|B)?\b"


def qty(num, unit):
    return int(num) * UNITS[unit or ""]


def get(d, path):
    """d at a dotted path with [i] indexes; KeyError when absent."""
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", path):
        d = d[int(part[1:-1])] if part.startswith("[") else d[part]
    return d


def put(d, path, value):
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", path)
    for part in parts[:-1]:
        d = d[int(part[1:-1])] if part.startswith("[") else d.setdefault(
            part, {})
    d[parts[-1]] = value


def doc_rows():
    """(section, key, cells by column name, line number) of every row of a
    CONFIG.md table that has a default column."""
    rows = []
    section = None
    cols = None
    with open(CONFIG_MD, encoding="utf-8") as f:
        lines = f.read().split("\n")
    for n, line in enumerate(lines, 1):
        m = re.match(r"#{2,4} `([a-z_.]+)`", line)
        if m:
            section = m.group(1)
            cols = None
            continue
        if line.startswith("#"):
            section = None if line.startswith("## ") else section
            cols = None
            continue
        if not line.startswith("|"):
            cols = None
            continue
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        if cols is None:
            cols = cells
            continue
        if set("".join(cells)) <= set("-|"):
            continue
        if section is None or "default" not in cols:
            continue
        row = dict(zip(cols, cells))
        for key in re.findall(r"`([^`]+)`", row["key"]) or [row["key"]]:
            rows.append((section, key, row, n))
    return rows


def check(path):
    return run("run", "--check", "-c", path, env=CLEAN_ENV, timeout=60)


class TestConfigDoc(harness.TmpDirCase):
    def setUp(self):
        super().setUp()
        self.n = 0

    def load(self, cfg):
        """(rc, printed config or None, stderr) for cfg."""
        self.n += 1
        path = os.path.join(self.tmp, "c%d.json" % self.n)
        with open(path, "w") as f:
            json.dump(cfg, f)
        rc, out, err = check(path)
        return rc, (json.loads(out) if rc == 0 else None), err

    def effective(self, base=MINIMAL):
        rc, eff, err = self.load(base)
        self.assertEqual(rc, 0, err)
        return eff

    def with_value(self, in_path, value):
        base = MINIMAL_SR if in_path.startswith("schema_registry") else MINIMAL
        cfg = json.loads(json.dumps(base))
        put(cfg, in_path, value)
        return cfg

    def accepts(self, in_path, value, why):
        rc, _, err = self.load(self.with_value(in_path, value))
        self.assertEqual(rc, 0, "%s: %s = %r refused: %s"
                         % (why, in_path, value, err[-400:]))

    def refuses(self, in_path, value, why, cfg=None):
        cfg = cfg or self.with_value(in_path, value)
        rc, _, err = self.load(cfg)
        self.assertEqual(rc, 2, "%s: %s = %r accepted" % (why, in_path, value))
        self.assertIn("'%s'" % in_path, err, "%s: the error does not name %s"
                      % (why, in_path))

    # ---- defaults

    def default_checked(self, eff, section, key, cell, where):
        """Compares one documented default with eff; False when the cell
        holds nothing this test reads."""
        out = SECTIONS[section][1]
        path = out + "." + key
        text = cell.replace("`", "").strip()
        m = re.match(r"(\d+) % of ([a-z_.]+)$", text)
        if m:
            want = int(m.group(1)) * get(eff, m.group(2)) / 100
            self.assertLessEqual(abs(get(eff, path) - want), 8, where)
            return True
        m = re.match(r"([a-z_.]+) \+ ([a-z_.]+) \+ " + QTY + r" \(" + QTY
                     + r" with the defaults\)$", text)
        if m:
            want = (get(eff, m.group(1)) + get(eff, m.group(2))
                    + qty(m.group(3), m.group(4)))
            self.assertEqual(get(eff, path), want, where)
            self.assertEqual(qty(m.group(5), m.group(6)), want, where)
            return True
        m = re.match(QTY + r"(?:\s*=\s*[a-z ]+)?(?:\s*\((.*)\))?$", text)
        if m:
            value = qty(m.group(1), m.group(2))
            self.assertEqual(get(eff, path), value, where)
            # a parenthetical that restates the value: "(10 min)"
            paren = re.fullmatch(QTY, m.group(3) or "")
            if paren:
                self.assertEqual(qty(paren.group(1), paren.group(2)), value,
                                 where + ": the parenthetical")
            return True
        if text in ("true", "false"):
            self.assertIs(get(eff, path), text == "true", where)
            return True
        if text.startswith("none"):
            try:
                v = get(eff, path)
            except KeyError:
                return True  # not printed at all when unset (adx.proxy)
            if isinstance(v, dict):  # routes[].meta: every field unset
                v = [x for x in v.values() if x is not None] or None
            self.assertIsNone(v, where)
            return True
        if text.startswith("{"):
            for k, v in json.loads(text).items():
                self.assertEqual(get(eff, path)[k], v, where)
            return True
        m = re.fullmatch(r'"?([A-Za-z0-9_.:\[\]]+)"?(?: \(.*\))?', text)
        if m and re.fullmatch(r"`[^`]+`(?: \(.*\))?", cell):
            lit = m.group(1)
            sibling = out + "." + lit
            try:
                want = get(eff, sibling)
            except (KeyError, TypeError):
                want = json.loads(lit) if lit == "[]" else lit
            self.assertEqual(get(eff, path), want, where)
            return True
        return False

    def test_defaults(self):
        effs = dict.fromkeys(SECTIONS, self.effective())
        effs["schema_registry"] = self.effective(MINIMAL_SR)
        unread = []
        n = 0
        for section, key, row, line in doc_rows():
            where = "CONFIG.md:%d %s.%s default %r" % (line, section, key,
                                                        row["default"])
            name = "%s.%s" % (section, key)
            if key.startswith("*"):
                name = section + ".*"
            if name in NOT_NUMBERS:
                continue
            if row["default"].startswith("—"):
                continue  # required, no default
            if self.default_checked(effs[section], section, key,
                                    row["default"], where):
                n += 1
            else:
                unread.append(where)
        self.assertEqual(unread, [], "rows this test cannot read: say why "
                         "in NOT_NUMBERS or teach it the form")
        self.assertGreaterEqual(n, 30, "too few defaults found: %d" % n)

    # ---- ranges

    def ranges(self):
        """(in_path, kind, lo, hi, where) of every range CONFIG.md states;
        lo or hi None when open."""
        out = []
        for section, key, row, line in doc_rows():
            if section not in SECTIONS or key.startswith("*"):
                continue
            in_path = SECTIONS[section][0] + "." + key
            where = "CONFIG.md:%d %s.%s" % (line, section, key)
            text = " ".join([row.get("type", ""), row["default"],
                             row.get("meaning", "")]).replace("`", "")
            chars = re.search(r"[≥>]=? ?(\d+) characters", text)
            if chars:
                out.append((in_path, "chars", int(chars.group(1)), None,
                            where))
                continue
            for m in re.finditer(QTY + r"\s*(?:to|\.\.)\s*" + QTY, text):
                out.append((in_path, "num", qty(m.group(1), m.group(2)),
                            qty(m.group(3), m.group(4)), where))
            for m in re.finditer(r"\(min " + QTY + r"\)|(?:integer )?≥ "
                                 + QTY + r"|at least " + QTY, text):
                g = [x for x in m.groups()]
                num, unit = next((g[i], g[i + 1]) for i in (0, 2, 4)
                                 if g[i] is not None)
                out.append((in_path, "num", qty(num, unit), None, where))
        return out

    def test_ranges(self):
        ranges = self.ranges()
        self.assertGreaterEqual(len(ranges), 10, ranges)
        for in_path, kind, lo, hi, where in ranges:
            if kind == "chars":
                self.accepts(in_path, "x" * lo, where)
                self.refuses(in_path, "x" * (lo - 1), where)
                continue
            self.accepts(in_path, lo, where)
            self.refuses(in_path, lo - 1, where)
            if hi is not None:
                self.accepts(in_path, hi, where)
                self.refuses(in_path, hi + 1, where)
            else:  # no upper bound stated: a large one is taken too
                self.accepts(in_path, max(lo, 2 ** 31 - 1), where + " (open)")

    # ---- rules between keys

    def test_cross_key_rules(self):
        eff = self.effective()
        # ambiguous_window_ms: at least request_timeout_ms + server_timeout_ms
        least = (eff["adx"]["request_timeout_ms"]
                 + eff["adx"]["server_timeout_ms"])
        self.accepts("forwarder.ambiguous_window_ms", least, "window")
        self.refuses("forwarder.ambiguous_window_ms", least - 1, "window")
        # retry_max_ms >= retry_initial_ms
        cfg = self.with_value("forwarder.retry_initial_ms", 5000)
        put(cfg, "forwarder.retry_max_ms", 5000)
        self.assertEqual(self.load(cfg)[0], 0)
        put(cfg, "forwarder.retry_max_ms", 4999)
        self.refuses("forwarder.retry_max_ms", 4999, "retry", cfg)
        # high_water_bytes <= journal.max_bytes; low below high
        mb = eff["journal"]["max_bytes"]
        self.accepts("intake.high_water_bytes", mb, "high water")
        self.refuses("intake.high_water_bytes", mb + 1, "high water")
        high = eff["intake"]["high_water_bytes"]
        self.accepts("intake.low_water_bytes", high - 1, "low water")
        self.refuses("intake.low_water_bytes", high, "low water")

    # ---- "Rules that apply everywhere"

    def rules_text(self):
        with open(CONFIG_MD, encoding="utf-8") as f:
            text = f.read()
        start = text.index("## Rules that apply everywhere")
        return re.sub(r"\s+", " ", text[start:text.index("\n## ", start + 1)])

    def test_file_wide_limits(self):
        rules = self.rules_text()
        m = re.search(r"The file may be at most \*\*" + QTY + r"\*\*; an "
                      r"object at most (\d+) keys; at most (\d+) routes",
                      rules)
        self.assertIsNotNone(m, "the file, keys and routes limits moved")
        file_max = qty(m.group(1), m.group(2))
        keys_max, routes_max = int(m.group(3)), int(m.group(4))
        # the file: padded to exactly file_max bytes, then one more
        body = json.dumps(MINIMAL)
        for size, want in ((file_max, 0), (file_max + 1, 2)):
            path = os.path.join(self.tmp, "pad%d.json" % size)
            with open(path, "w") as f:
                f.write(body[:-1] + " " * (size - len(body)) + "}")
            self.assertEqual(os.path.getsize(path), size)
            rc, _, err = check(path)
            self.assertEqual(rc, want, "a %d-byte file: %s" % (size, err))
        # keys: kafka with keys_max keys passes the count (its made-up
        # properties are then refused by name), one more is refused
        for n, counted in ((keys_max, True), (keys_max + 1, False)):
            kafka = dict(MINIMAL["kafka"])
            for i in range(n - len(kafka)):
                kafka["x.doc.%d" % i] = "1"
            rc, _, err = self.load(self.with_value("kafka", kafka))
            self.assertEqual(rc, 2)
            self.assertEqual("more than %d keys" % keys_max not in err,
                             counted, err[-300:])
        # routes
        for n, want in ((routes_max, 0), (routes_max + 1, 2)):
            routes = [{"topic": "t%d" % i, "database": "db", "table": "T"}
                      for i in range(n)]
            rc, _, err = self.load(self.with_value("routes", routes))
            self.assertEqual(rc, want, "%d routes: %s" % (n, err[-300:]))
            if want:
                self.assertIn("'routes'", err)

    def test_file_substitution_limit(self):
        rules = self.rules_text()
        m = re.search(r"\$\{file:/path\}.*?at most " + QTY, rules)
        self.assertIsNotNone(m, "${file:}'s size limit moved")
        limit = qty(m.group(1), m.group(2))
        secret = os.path.join(self.tmp, "secret")
        for size, want in ((limit, 0), (limit + 1, 2)):
            with open(secret, "w") as f:
                f.write("s" * size)
            rc, _, err = self.load(self.with_value(
                "admin.token", "${file:%s}" % secret))
            self.assertEqual(rc, want, "a %d-byte ${file:}: %s"
                             % (size, err[-300:]))
            if want:
                self.assertIn("'admin.token'", err)

    # ---- admin/ADMIN.md

    def test_admin_md_limits(self):
        eff = self.effective()
        with open(ADMIN_MD, encoding="utf-8") as f:
            text = re.sub(r"\s+", " ", f.read())
        stated = re.findall(r"`admin\.([a-z_]+)` \((\d+)\)", text)
        self.assertGreaterEqual(len(stated), 2, "ADMIN.md's limits moved")
        for key, value in stated:
            self.assertEqual(eff["admin"][key], int(value),
                             "ADMIN.md: admin.%s (%s)" % (key, value))
        m = re.search(r"defaults: (\d+) connections, (\d+)/s each", text)
        self.assertIsNotNone(m, "ADMIN.md's benchmark defaults moved")
        self.assertEqual(eff["admin"]["max_connections"], int(m.group(1)))
        self.assertEqual(eff["admin"]["max_requests_per_s"], int(m.group(2)))


if __name__ == "__main__":
    harness.main()
