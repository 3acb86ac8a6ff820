#!/usr/bin/env python3
"""Measure how many of the upstream OpenTelemetry Collector config keys sluice accepts.

For every docs/coverage/keys/<component>.yaml it validates the component's base
config alone, then the base plus one documented key at a time, with
`sluice validate`, and classifies each key:

  implemented  valid, and no warning beyond those of the base config
  warned       valid, but a new warning (normally "accepted, has no effect")
  refused      `sluice validate` reports a problem

It writes docs/coverage.md (summary table and one table per component).

Usage: scripts/key_coverage.py [SLUICE_BINARY] [--only NAME ...] [--out FILE]
The binary defaults to $SLUICE, then target/debug/sluice. Python 3 stdlib only.

Key file format (a small YAML subset, read here without a YAML library):

    component: otlp receiver        # the heading in the report
    kind: receivers                 # receivers|processors|exporters|connectors|extensions|service
    type: otlp                      # the component id used in the config
    signal: traces                  # pipeline signal (connectors: in->out, e.g. traces->metrics)
    upstream: receiver/otlpreceiver/config.go, config/confighttp, ...   # where the keys come from
    base: |                         # the component's minimal valid body (indented YAML)
      protocols:
        grpc:
          endpoint: 127.0.0.1:0
    extra: |                        # optional top-level YAML appended to the config
      extensions: ...
    service_extensions: [file_storage]   # optional service.extensions list
    keys:                           # one key a line: dotted path relative to the component
      protocols.grpc.endpoint: 127.0.0.1:0
      protocols.http.cors.allowed_origins: ["https://*.example.com"]

`path@logs` measures the key in a pipeline of another signal (keys that apply to
one signal only). `path#variant` measures path with a second sample value (e.g. another list form).
A key's value is the raw YAML text after "path: " (use flow style for lists and
maps). `a.b: 1 ;; a.c: 2` measures a.b with a.c set alongside (for keys that
need a sibling, like tls.cert_file and tls.key_file). Comment lines (starting with #) are ignored; a comment line directly
above a key becomes that key's note in the report. In base, extra and values,
@TMP@ is replaced by a scratch directory and @CERT@/@KEY@/@CA@ by a
self-signed certificate, its key and itself as CA (made with openssl);
@CERT_PEM@/@KEY_PEM@/@CA_PEM@ by the same as inline PEM strings.
"""

import datetime
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEYS_DIR = os.path.join(ROOT, "docs", "coverage", "keys")


def parse_key_file(path):
    spec = {"keys": [], "extra": "", "base": "", "file": os.path.basename(path)}
    lines = open(path, encoding="utf-8").read().splitlines()
    i = 0
    note = None
    section = None
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if section == "keys" and line.startswith(" "):
            if not stripped:
                i += 1
                continue
            if stripped.startswith("#"):
                note = stripped.lstrip("#").strip()
                i += 1
                continue
            key, sep, value = stripped.partition(": ")
            if not sep:
                if stripped.endswith(":"):
                    key, value = stripped[:-1], ""
                else:
                    raise SystemExit(f"{path}:{i + 1}: cannot read key line {line!r}")
            spec["keys"].append((key.strip(), value.strip(), note))
            note = None
            i += 1
            continue
        section = None
        note = None
        if not stripped or stripped.startswith("#"):
            i += 1
            continue
        m = re.match(r"^([a-z_]+):\s*(.*)$", line)
        if not m:
            raise SystemExit(f"{path}:{i + 1}: cannot read line {line!r}")
        name, value = m.group(1), m.group(2)
        if value == "|":
            block = []
            i += 1
            while i < len(lines) and (lines[i].startswith(" ") or not lines[i].strip()):
                block.append(lines[i])
                i += 1
            spec[name] = dedent_block(block)
            continue
        if name == "keys":
            section = "keys"
        else:
            spec[name] = value.split(" #")[0].strip()
        i += 1
    for field in ("kind", "type"):
        if field not in spec:
            raise SystemExit(f"{path}: missing `{field}`")
    return spec


def dedent_block(block):
    while block and not block[-1].strip():
        block.pop()
    indents = [len(l) - len(l.lstrip(" ")) for l in block if l.strip()]
    cut = min(indents) if indents else 0
    return "\n".join(l[cut:] for l in block)


def indent(text, n):
    pad = " " * n
    return "\n".join(pad + l if l.strip() else l for l in text.splitlines())


def split_assignments(key, value):
    """A key line may carry context: `a.b: 1 ;; a.c: 2` measures a.b with a.c also set."""
    pairs = [(key, value)]
    if " ;; " in value:
        first, *rest = value.split(" ;; ")
        pairs = [(key, first.strip())]
        for r in rest:
            k, _, v = r.partition(": ")
            pairs.append((k.strip(), v.strip()))
    return pairs


def nested(pairs, level):
    """YAML text of several dotted paths and their values, starting at indentation level."""
    tree = {}
    for path, value in pairs:
        node = tree
        parts = path.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    out = []

    def emit(node, depth):
        pad = "  " * depth
        for k, v in node.items():
            if isinstance(v, dict):
                out.append(f"{pad}{k}:")
                emit(v, depth + 1)
            elif v == "":
                out.append(f"{pad}{k}:")
            else:
                out.append(f"{pad}{k}: {v}")

    emit(tree, level)
    return "\n".join(out)


def component_prefix(spec):
    """The dotted prefix of the component's body in the whole config."""
    if spec["kind"] == "service":
        return "service"
    return f"{spec['kind']}.{spec['type']}"


def build_config(spec):
    kind, ctype = spec["kind"], spec["type"]
    signal = spec.get("signal", "metrics")
    body = spec["base"]
    parts = []
    service_extra = ""
    pipelines = ""
    if kind == "receivers":
        pipelines = f"    {signal}:\n      receivers: [{ctype}]\n      exporters: [nop]\n"
    elif kind == "processors":
        pipelines = (f"    {signal}:\n      receivers: [nop]\n      processors: [{ctype}]\n"
                     "      exporters: [nop]\n")
    elif kind == "exporters":
        pipelines = f"    {signal}:\n      receivers: [nop]\n      exporters: [{ctype}]\n"
    elif kind == "connectors":
        src, _, dst = signal.partition("->")
        pipelines = (f"    {src}:\n      receivers: [nop]\n      exporters: [{ctype}]\n"
                     f"    {dst}:\n      receivers: [{ctype}]\n      exporters: [nop]\n")
    elif kind in ("extensions", "service"):
        pipelines = f"    {signal}:\n      receivers: [nop]\n      exporters: [nop]\n"
        if kind == "extensions":
            service_extra = f"  extensions: [{ctype}]\n"
    else:
        raise SystemExit(f"unknown kind {kind}")
    if spec.get("service_extensions"):
        service_extra = f"  extensions: {spec['service_extensions']}\n"

    receivers = {"nop": ""}
    exporters = {"nop": ""}
    sections = {"receivers": receivers, "exporters": exporters}
    if kind != "service":
        sections.setdefault(kind, {})[ctype] = body
    for sec in ("receivers", "processors", "exporters", "connectors", "extensions"):
        comps = sections.get(sec)
        if not comps:
            continue
        parts.append(f"{sec}:")
        for name, b in comps.items():
            if b.strip():
                parts.append(f"  {name}:\n{indent(b, 4)}")
            else:
                parts.append(f"  {name}:")
    if spec.get("extra"):
        parts.append(spec["extra"])
    parts.append("service:")
    if service_extra:
        parts.append(service_extra.rstrip("\n"))
    if kind == "service" and body.strip():
        parts.append(indent(body, 2))
    parts.append("  pipelines:\n" + pipelines.rstrip("\n"))
    return "\n".join(parts) + "\n"


def build_overlay(spec, key, value):
    pairs = split_assignments(key.split("@")[0].split("#")[0], value)
    if spec["kind"] == "service":
        return "service:\n" + nested(pairs, 1) + "\n"
    return f"{spec['kind']}:\n  {spec['type']}:\n" + nested(pairs, 2) + "\n"


def about_key(warning, full_key):
    """Whether a warning names the measured key, one of its parents or one of its children."""
    path = warning.split(": ", 1)[0]
    if path == full_key or full_key.startswith(path + ".") or path.startswith(full_key + ".") \
            or path.startswith(full_key + "["):
        return True
    # a warning under another path (e.g. an internal section) that ends in the same key
    if path.rsplit(".", 1)[-1] == full_key.rsplit(".", 1)[-1]:
        return True
    return f"`{full_key.rsplit('.', 1)[-1]}`" in warning


class Runner:
    def __init__(self, binary, scratch, subst):
        self.binary = binary
        self.scratch = scratch
        self.subst = subst
        self.counter = 0

    def fill(self, text):
        for k, v in self.subst.items():
            text = text.replace(k, v)
        return text

    def validate(self, *texts):
        paths = []
        for text in texts:
            self.counter += 1
            p = os.path.join(self.scratch, f"cfg{self.counter}.yaml")
            with open(p, "w", encoding="utf-8") as f:
                f.write(self.fill(text))
            paths.append(p)
        cmd = [self.binary, "validate"]
        for p in paths:
            cmd += ["--config", p]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                                  cwd=self.scratch)
        except subprocess.TimeoutExpired:
            return False, ["validate timed out"], []
        out = proc.stdout + "\n" + proc.stderr
        warnings = []
        problems = []
        for line in out.splitlines():
            s = line.strip()
            if s.startswith("warning:"):
                warnings.append(strip_location(s[len("warning:"):].strip()))
            elif proc.returncode != 0 and s and not s.startswith("invalid configuration") \
                    and s != "configuration is valid":
                problems.append(strip_location(s))
        if proc.returncode != 0 and not problems:
            problems.append(f"exit status {proc.returncode}")
        return proc.returncode == 0, problems, warnings


def strip_location(msg):
    # "file.yaml:12:3: receivers.otlp.x: message" -> "receivers.otlp.x: message"
    return re.sub(r"^\S+?\.yaml:\d+:\d+:\s*", "", msg)


def shorten(msg, limit=160):
    msg = re.sub(r", expected one of [^;]*", "", msg)
    msg = msg.replace("|", "\\|").replace("\n", " ")
    return msg if len(msg) <= limit else msg[: limit - 1] + "…"


def make_fixtures(scratch):
    subst = {"@TMP@": scratch}
    cert = os.path.join(scratch, "cert.pem")
    key = os.path.join(scratch, "key.pem")
    if shutil.which("openssl"):
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                        "-keyout", key, "-out", cert], capture_output=True, check=False)
    subst.update({"@CERT@": cert, "@KEY@": key, "@CA@": cert})
    # the same as inline PEM: a JSON string is a valid YAML double-quoted scalar
    for name, path in (("@CERT_PEM@", cert), ("@KEY_PEM@", key), ("@CA_PEM@", cert)):
        try:
            subst[name] = json.dumps(open(path, encoding="ascii").read())
        except OSError:
            subst[name] = '"-----BEGIN CERTIFICATE-----"'
    # the longest placeholders first, so @CA_PEM@ is not read as @CA@ + _PEM@
    subst = dict(sorted(subst.items(), key=lambda kv: -len(kv[0])))
    # a file for log tailing and one for prometheus file discovery etc.
    with open(os.path.join(scratch, "app.log"), "w") as f:
        f.write("hello\n")
    os.makedirs(os.path.join(scratch, "storage"), exist_ok=True)
    with open(os.path.join(scratch, "targets.json"), "w") as f:
        f.write('[{"targets": ["127.0.0.1:9"]}]\n')
    with open(os.path.join(scratch, "scrape.yaml"), "w") as f:
        f.write("scrape_configs:\n  - job_name: fromfile\n    static_configs:\n      - targets: ['127.0.0.1:9']\n")
    with open(os.path.join(scratch, "password"), "w") as f:
        f.write("secret\n")
    return subst


def main(argv):
    args = list(argv)
    only = []
    out_path = os.path.join(ROOT, "docs", "coverage.md")
    binary = None
    while args:
        a = args.pop(0)
        if a == "--only":
            only.append(args.pop(0))
        elif a == "--out":
            out_path = args.pop(0)
        elif a in ("-h", "--help"):
            print(__doc__)
            return 0
        else:
            binary = a
    binary = binary or os.environ.get("SLUICE") or os.path.join(ROOT, "target", "debug", "sluice")
    if not os.path.exists(binary):
        raise SystemExit(f"no sluice binary at {binary}")

    files = sorted(f for f in os.listdir(KEYS_DIR) if f.endswith(".yaml"))
    if only:
        files = [f for f in files if f[:-5] in only]
    scratch = tempfile.mkdtemp(prefix="sluice-keycov-")
    runner = Runner(os.path.abspath(binary), scratch, make_fixtures(scratch))
    results = []
    for fname in files:
        spec = parse_key_file(os.path.join(KEYS_DIR, fname))
        base = build_config(spec)
        ok, problems, base_warnings = runner.validate(base)
        rows = []
        if not ok:
            print(f"{fname}: base config is invalid: {problems}", file=sys.stderr)
            rows = [(k, "refused", "base config invalid: " + "; ".join(problems), n)
                    for k, _, n in spec["keys"]]
        else:
            bases = {spec.get("signal", "metrics"): (base, base_warnings)}
            for key, value, note in spec["keys"]:
                signal = spec.get("signal", "metrics")
                if "@" in key:
                    signal = key.split("@", 1)[1]
                if signal not in bases:
                    other = build_config(dict(spec, signal=signal))
                    bases[signal] = (other, runner.validate(other)[2])
                base, base_warnings = bases[signal]
                ok, problems, warnings = runner.validate(base, build_overlay(spec, key, value))
                new = [w for w in warnings if w not in base_warnings]
                full = f"{component_prefix(spec)}.{key.split('@')[0].split('#')[0]}"
                mine = [w for w in new if about_key(w, full)]
                if not ok:
                    rows.append((key, "refused", "; ".join(problems), note))
                elif mine:
                    rows.append((key, "warned", "; ".join(mine), note))
                elif new:
                    rows.append((key, "implemented", "other warning: " + "; ".join(new), note))
                else:
                    rows.append((key, "implemented", "", note))
        prefix = component_prefix(spec)
        results.append((spec, prefix, rows))
        counts = {s: sum(1 for r in rows if r[1] == s) for s in ("implemented", "warned", "refused")}
        print(f"{fname}: {len(rows)} keys, {counts}", file=sys.stderr)
    shutil.rmtree(scratch, ignore_errors=True)
    write_report(out_path, results, binary, only)
    return 0


def write_report(out_path, results, binary, only):
    version = ""
    try:
        version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    except OSError:
        pass
    cmd = "python3 scripts/key_coverage.py" + ("".join(f" --only {o}" for o in only))
    lines = [
        "# Config key coverage",
        "",
        f"Generated by `{cmd}` on {datetime.date.today().isoformat()}"
        + (f" with `{version}`" if version else "") + ".",
        "Do not edit by hand: change the key lists in `docs/coverage/keys/` and rerun.",
        "",
        "For each component, the keys the upstream OpenTelemetry Collector (core and contrib) documents",
        "are listed in `docs/coverage/keys/<component>.yaml`, each with a valid sample value. Each key is",
        "added alone to a minimal valid config and checked with `sluice validate`:",
        "",
        "- **implemented**: accepted, no new warning;",
        "- **warned**: accepted with a warning (usually: accepted, has no effect in sluice);",
        "- **refused**: `sluice validate` reports a problem.",
        "",
        "Key paths are relative to the component's section (the `service` section for service).",
        "",
        "## Summary",
        "",
        "| component | keys | implemented | warned | refused |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    tot = [0, 0, 0, 0]
    for spec, prefix, rows in results:
        c = [len(rows)] + [sum(1 for r in rows if r[1] == s) for s in ("implemented", "warned", "refused")]
        tot = [a + b for a, b in zip(tot, c)]
        name = spec.get("component", spec["type"])
        anchor = re.sub(r"[^a-z0-9_ -]", "", name.lower()).replace(" ", "-")
        lines.append(f"| [{name}](#{anchor}) | {c[0]} | {c[1]} | {c[2]} | {c[3]} |")
    lines.append(f"| **total** | {tot[0]} | {tot[1]} | {tot[2]} | {tot[3]} |")
    lines.append("")
    for spec, prefix, rows in results:
        name = spec.get("component", spec["type"])
        lines.append(f"## {name}")
        lines.append("")
        lines.append(f"Section `{prefix}`; keys from `docs/coverage/keys/{spec['file']}`"
                     + (f" (upstream: {spec['upstream']})" if spec.get("upstream") else "") + ".")
        lines.append("")
        lines.append("| key | status | message |")
        lines.append("| --- | --- | --- |")
        for key, status, msg, note in rows:
            m = msg
            # drop the repeated path prefix of messages about this key
            for p in (f"{prefix}.{key}: ", f"{prefix}.{key}", ):
                if m.startswith(p):
                    m = m[len(p):].lstrip(": ")
                    break
            else:
                if m.startswith(prefix + "."):
                    m = m[len(prefix) + 1:]
            text = shorten(m)
            if note:
                text = (f"({shorten(note, 80)}) " + text).strip()
            lines.append(f"| `{key}` | {status} | {text} |")
        lines.append("")
    os.makedirs(os.path.dirname(out_path), exist_ok=True)
    with open(out_path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines))
    print(f"wrote {out_path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
