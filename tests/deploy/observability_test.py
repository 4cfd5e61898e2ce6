#!/usr/bin/env python3
"""Checks of deploy/observability: the alert rules load and pass their unit
tests (promtool, from Debian's prometheus package), and the Grafana dashboard
is well-formed with every query naming only metrics that docs/service.md
documents. (server_pgtest's MetricsTest checks the same names against a real
schemad's /metrics.)

    tests/deploy/observability_test.py [REPO_ROOT]
"""
import json
import pathlib
import re
import shutil
import subprocess
import sys

from check import Checker

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[2])
here = root / "deploy/observability"
c = Checker("observability_test")

promtool = shutil.which("promtool")
if not promtool:
    print("observability_test: FAIL: promtool not found (deploy/install-deps.sh installs prometheus)", file=sys.stderr)
    sys.exit(1)

for args in (["check", "rules", "schemad-alerts.yaml"], ["test", "rules", "schemad-alerts.test.yaml"]):
    out = subprocess.run([promtool, *args], cwd=here, capture_output=True, text=True)
    c.expect(out.returncode == 0, f"promtool {' '.join(args)}: {(out.stdout + out.stderr).strip()}")

# The metrics the docs' table lists.
service_doc = (root / "docs/service.md").read_text()
documented = set(re.findall(r"^\| `(schemad_[a-z_]+)` \|", service_doc, re.M))
c.expect(len(documented) >= 10, f"docs/service.md's metrics table lists {len(documented)} metrics")


def metric_names(text):
    names = set()
    for name in re.findall(r"\bschemad_[a-z_]+", text):
        for suffix in ("_bucket", "_count", "_sum"):
            if name.endswith(suffix) and name[: -len(suffix)] in documented:
                name = name[: -len(suffix)]
        names.add(name)
    return names


rules_text = (here / "schemad-alerts.yaml").read_text()
for name in sorted(metric_names(rules_text) - documented):
    c.expect(False, f"schemad-alerts.yaml uses {name}, which docs/service.md does not list")

dashboard = json.loads((here / "schemad-dashboard.json").read_text())
c.expect(dashboard.get("uid") and dashboard.get("title"), "dashboard without uid or title")
panels = dashboard.get("panels", [])
c.expect(len(panels) >= 8, f"dashboard has {len(panels)} panels")
ids = [p.get("id") for p in panels]
c.expect(len(ids) == len(set(ids)), "dashboard panel ids repeat")
used = set()
for p in panels:
    targets = p.get("targets") or []
    c.expect(targets, f"panel {p.get('title')!r} has no query")
    for t in targets:
        expr = t.get("expr", "")
        c.expect(expr.count("(") == expr.count(")"), f"panel {p.get('title')!r}: unbalanced {expr!r}")
        c.expect("$instance" in expr, f"panel {p.get('title')!r}: query ignores the instance variable")
        used |= metric_names(expr)
for name in sorted(used - documented):
    c.expect(False, f"schemad-dashboard.json uses {name}, which docs/service.md does not list")
c.expect(used >= documented - {"schemad_database_refreshed_timestamp_seconds"},
         f"the dashboard shows none of {sorted(documented - used)}")
c.finish()
