"""promparse.py - a strict parser for the Prometheus text exposition format
0.0.4 (stdlib only), used by the tests to check kadx's GET /metrics.

It follows https://prometheus.io/docs/instrumenting/exposition_formats/ and
is deliberately stricter than Prometheus' own scraper, so that a sloppy
exposition fails a test instead of being silently accepted:

- every line ends with "\\n" (the body too); no "\\r", no tabs as separators;
- every metric family has exactly one "# HELP" and one "# TYPE" line, both
  before its first sample; a family's samples are contiguous;
- metric and label names match the documented regular expressions; label
  values use only the escapes \\\\, \\" and \\n; no duplicate label names;
- values are Go-style floats (NaN, +Inf, -Inf allowed); timestamps integers;
- no series appears twice;
- counters are >= 0 (and not NaN); histograms have "_bucket" samples with an
  "le" label, buckets cumulative (non-decreasing in le), a "+Inf" bucket
  equal to "_count", plus "_sum" and "_count", for every label set;
- summaries have "quantile" samples in [0, 1] plus "_sum" and "_count".

parse(text) returns {family_name: Family}; errors raise PromParseError with
the line number.
"""
import math
import re

METRIC_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
LABEL_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
FLOAT_RE = re.compile(
    r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?\Z")


class PromParseError(ValueError):
    pass


class Family:
    def __init__(self, name):
        self.name = name
        self.help = None
        self.type = None
        self.samples = []  # (sample name, {labels}, value, timestamp or None)

    def get(self, sample_name=None, **labels):
        """The value of the one sample with this name and exactly these
        labels (sample_name defaults to the family name); KeyError if none."""
        sample_name = sample_name or self.name
        for n, lab, v, _ in self.samples:
            if n == sample_name and lab == labels:
                return v
        raise KeyError("%s%r" % (sample_name, labels))


def _err(lineno, msg):
    raise PromParseError("line %d: %s" % (lineno, msg))


def _unescape_help(s, lineno):
    out = []
    i = 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            if i + 1 >= len(s):
                _err(lineno, "dangling backslash in HELP")
            n = s[i + 1]
            if n == "\\":
                out.append("\\")
            elif n == "n":
                out.append("\n")
            else:
                _err(lineno, "bad escape \\%s in HELP" % n)
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _parse_float(s, lineno, what):
    if s in ("NaN", "+Inf", "-Inf", "Inf", "+inf", "-inf", "inf"):
        if s.lower().lstrip("+-") == "inf":
            return -math.inf if s.startswith("-") else math.inf
        return math.nan
    if not FLOAT_RE.match(s):
        _err(lineno, "bad %s %r" % (what, s))
    return float(s)


def _parse_labels(s, i, lineno):
    """s[i] is just after '{'. Returns (labels, index after '}')."""
    labels = {}
    while True:
        if i >= len(s):
            _err(lineno, "unterminated label set")
        if s[i] == "}":
            return labels, i + 1
        m = re.match(r"[a-zA-Z_][a-zA-Z0-9_]*", s[i:])
        if not m:
            _err(lineno, "bad label name at column %d" % (i + 1))
        name = m.group(0)
        i += len(name)
        if i >= len(s) or s[i] != "=":
            _err(lineno, "expected '=' after label %r" % name)
        i += 1
        if i >= len(s) or s[i] != '"':
            _err(lineno, "expected '\"' to open label %r" % name)
        i += 1
        val = []
        while True:
            if i >= len(s):
                _err(lineno, "unterminated value of label %r" % name)
            c = s[i]
            if c == '"':
                i += 1
                break
            if c == "\\":
                if i + 1 >= len(s):
                    _err(lineno, "dangling backslash in label %r" % name)
                n = s[i + 1]
                if n == "\\":
                    val.append("\\")
                elif n == '"':
                    val.append('"')
                elif n == "n":
                    val.append("\n")
                else:
                    _err(lineno, "bad escape \\%s in label %r" % (n, name))
                i += 2
                continue
            if c == "\n":
                _err(lineno, "raw newline in label %r" % name)
            val.append(c)
            i += 1
        if name in labels:
            _err(lineno, "duplicate label %r" % name)
        if name.startswith("__"):
            _err(lineno, "reserved label name %r" % name)
        labels[name] = "".join(val)
        if i >= len(s):
            _err(lineno, "unterminated label set")
        if s[i] == ",":
            i += 1
            continue
        if s[i] != "}":
            _err(lineno, "expected ',' or '}' after label %r" % name)


def _family_of(sample_name, families):
    """The declared family a sample name belongs to (histogram/summary
    suffixes resolve to their base), or None."""
    if sample_name in families:
        return families[sample_name]
    for suffix in ("_bucket", "_sum", "_count"):
        if sample_name.endswith(suffix):
            base = sample_name[: -len(suffix)]
            fam = families.get(base)
            if fam is not None and fam.type in ("histogram", "summary"):
                if suffix == "_bucket" and fam.type != "histogram":
                    return None
                return fam
    return None


def parse(text):
    if isinstance(text, bytes):
        text = text.decode("utf-8")
    if text and not text.endswith("\n"):
        raise PromParseError("exposition does not end with a newline")
    if "\r" in text:
        raise PromParseError("carriage return in exposition")
    families = {}
    order = []
    closed = set()
    current = None
    seen = set()
    lines = text.split("\n")[:-1] if text else []
    for lineno, line in enumerate(lines, 1):
        if line == "":
            continue
        if line.startswith("#"):
            parts = line.split(" ", 3)
            if len(parts) >= 3 and parts[0] == "#" and parts[1] in (
                    "HELP", "TYPE"):
                kind, name = parts[1], parts[2]
                rest = parts[3] if len(parts) > 3 else ""
                if not METRIC_RE.match(name):
                    _err(lineno, "bad metric name %r" % name)
                if name in closed:
                    _err(lineno, "%s for %r after its samples" % (kind, name))
                fam = families.get(name)
                if fam is None:
                    fam = Family(name)
                    families[name] = fam
                    order.append(name)
                if current is not None and current is not fam:
                    closed.add(current.name)
                current = fam
                if fam.samples:
                    _err(lineno, "%s for %r after its samples" % (kind, name))
                if kind == "HELP":
                    if fam.help is not None:
                        _err(lineno, "second HELP for %r" % name)
                    fam.help = _unescape_help(rest, lineno)
                else:
                    if fam.type is not None:
                        _err(lineno, "second TYPE for %r" % name)
                    if rest not in TYPES:
                        _err(lineno, "bad TYPE %r for %r" % (rest, name))
                    fam.type = rest
            elif not line.startswith("# ") and line != "#":
                _err(lineno, "comment must start with '# '")
            continue
        # a sample
        m = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", line)
        if not m:
            _err(lineno, "bad metric name at start of line")
        sname = m.group(0)
        i = len(sname)
        labels = {}
        if i < len(line) and line[i] == "{":
            labels, i = _parse_labels(line, i + 1, lineno)
        if i >= len(line) or line[i] != " ":
            _err(lineno, "expected one space before the value")
        fields = line[i + 1:].split(" ")
        if len(fields) not in (1, 2) or "" in fields:
            _err(lineno, "expected 'value [timestamp]' after the name")
        value = _parse_float(fields[0], lineno, "value")
        ts = None
        if len(fields) == 2:
            if not re.match(r"-?[0-9]+\Z", fields[1]):
                _err(lineno, "bad timestamp %r" % fields[1])
            ts = int(fields[1])
        fam = _family_of(sname, families)
        if fam is None:
            _err(lineno, "sample %r without HELP and TYPE" % sname)
        if fam.name in closed:
            _err(lineno, "samples of %r are not contiguous" % fam.name)
        if current is not None and current is not fam:
            closed.add(current.name)
        current = fam
        if fam.help is None or fam.type is None:
            _err(lineno, "family %r lacks HELP or TYPE" % fam.name)
        key = (sname, tuple(sorted(labels.items())))
        if key in seen:
            _err(lineno, "duplicate series %s%r" % (sname, labels))
        seen.add(key)
        if fam.type == "counter":
            if sname != fam.name:
                _err(lineno, "counter sample name %r" % sname)
            if math.isnan(value) or value < 0:
                _err(lineno, "counter %r is negative or NaN" % sname)
        if fam.type == "gauge" and sname != fam.name:
            _err(lineno, "gauge sample name %r" % sname)
        if fam.type == "histogram":
            if sname == fam.name:
                _err(lineno, "histogram %r needs a suffix" % sname)
            if sname.endswith("_bucket") and "le" not in labels:
                _err(lineno, "bucket without 'le' label")
            if not sname.endswith("_bucket") and "le" in labels:
                _err(lineno, "'le' label outside a bucket")
        if fam.type == "summary" and sname == fam.name:
            if "quantile" not in labels:
                _err(lineno, "summary sample without 'quantile'")
            q = _parse_float(labels["quantile"], lineno, "quantile")
            if not 0 <= q <= 1:
                _err(lineno, "quantile %r outside [0, 1]" % q)
        fam.samples.append((sname, labels, value, ts))
    for name in order:
        fam = families[name]
        if fam.help is None or fam.type is None:
            raise PromParseError("family %r lacks HELP or TYPE" % name)
        if fam.type == "histogram":
            _check_histogram(fam)
        if fam.type == "summary":
            _check_summary(fam)
    return families


def _check_histogram(fam):
    groups = {}
    for n, lab, v, _ in fam.samples:
        base = tuple(sorted((k, x) for k, x in lab.items() if k != "le"))
        g = groups.setdefault(base, {"buckets": [], "sum": None,
                                     "count": None})
        if n == fam.name + "_bucket":
            le = _parse_float(lab["le"], 0, "le")
            g["buckets"].append((le, v))
        elif n == fam.name + "_sum":
            g["sum"] = v
        elif n == fam.name + "_count":
            g["count"] = v
    for base, g in groups.items():
        where = "histogram %r %r" % (fam.name, dict(base))
        if g["sum"] is None or g["count"] is None:
            raise PromParseError(where + " lacks _sum or _count")
        b = g["buckets"]
        if not b or b[-1][0] != math.inf:
            raise PromParseError(where + " lacks a last le=\"+Inf\" bucket")
        for (le1, c1), (le2, c2) in zip(b, b[1:]):
            if le2 <= le1:
                raise PromParseError(where + " buckets not in le order")
            if c2 < c1:
                raise PromParseError(where + " buckets not cumulative")
        if b[-1][1] != g["count"]:
            raise PromParseError(where + " +Inf bucket != _count")


def _check_summary(fam):
    groups = {}
    for n, lab, v, _ in fam.samples:
        base = tuple(sorted((k, x) for k, x in lab.items()
                            if k != "quantile"))
        g = groups.setdefault(base, set())
        if n == fam.name + "_sum":
            g.add("sum")
        elif n == fam.name + "_count":
            g.add("count")
    for base, g in groups.items():
        if g != {"sum", "count"}:
            raise PromParseError("summary %r %r lacks _sum or _count" % (
                fam.name, dict(base)))
