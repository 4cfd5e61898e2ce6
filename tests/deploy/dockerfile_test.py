#!/usr/bin/env python3
"""Offline checks of deploy/Dockerfile and .dockerignore (no image is built
here): multi-stage, a runtime stage without build or test packages or sudo,
a numeric non-root user, a HEALTHCHECK, an entrypoint that runs schemactl
too, and a build context without build trees, history or secrets.

    tests/deploy/dockerfile_test.py [REPO_ROOT]
"""
import os
import pathlib
import re
import subprocess
import sys
import tempfile

from check import Checker

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[2])
c = Checker("dockerfile_test")

# Instructions, with continuation lines joined and comments dropped.
text = re.sub(r"\\\n", " ", (root / "deploy/Dockerfile").read_text())
instructions = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]
stages = []
for line in instructions:
    keyword = line.split()[0].upper()
    if keyword == "FROM":
        stages.append([])
    c.expect(stages, f"instruction before FROM: {line}")
    if stages:
        stages[-1].append((keyword, line))
c.expect(len(stages) >= 2, f"{len(stages)} stage(s): not multi-stage")
build, runtime = (stages[0], stages[-1]) if len(stages) >= 2 else ([], [])

build_text = " ".join(line for _, line in build)
c.expect("install-deps.sh --build-only" in build_text, "build stage: does not use install-deps.sh --build-only")
c.expect("sudo" not in build_text, "build stage: installs or uses sudo")

runtime_text = " ".join(line for _, line in runtime)
for forbidden in ("sudo", "install-deps", "-dev", "postgresql-15", "clang", "gtest", "benchmark", "build-essential"):
    c.expect(forbidden not in runtime_text, f"runtime stage: mentions '{forbidden}'")
users = [line.split()[1] for keyword, line in runtime if keyword == "USER"]
c.expect(users and re.fullmatch(r"[1-9][0-9]*(:[1-9][0-9]*)?", users[-1]) is not None,
         f"runtime stage: last USER is {users[-1:]} (want a numeric non-root uid)")
healthchecks = [line for keyword, line in runtime if keyword == "HEALTHCHECK"]
c.expect(len(healthchecks) == 1 and "CMD" in healthchecks[0], "runtime stage: no HEALTHCHECK CMD")
c.expect(any(keyword == "ENTRYPOINT" for keyword, _ in runtime), "runtime stage: no ENTRYPOINT")
copies = [line for keyword, line in runtime if keyword == "COPY"]
c.expect(not any(re.search(r"\.run|\.git|build/(?!release/)", line) for line in copies if "--from" not in line),
         "runtime stage: copies .run, .git or a build tree from the context")

# The entrypoint runs either program (stand-ins on PATH print their name and
# arguments), and rejects anything else.
entrypoint = root / "deploy/image/entrypoint.sh"
with tempfile.TemporaryDirectory() as bin_dir:
    for program in ("schemad", "schemactl"):
        stand_in = pathlib.Path(bin_dir) / program
        stand_in.write_text(f'#!/bin/sh\necho {program} "$@"\n')
        stand_in.chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    for args, expected in ((["schemactl", "--version"], "schemactl --version"),
                           (["schemad", "--version"], "schemad --version"),
                           (["--check-config"], "schemad --check-config"),
                           ([], "schemad --config /etc/schemad/schemad.yaml")):
        out = subprocess.run(["sh", str(entrypoint)] + args, capture_output=True, text=True, env=env)
        c.expect(out.returncode == 0 and out.stdout.strip() == expected,
                 f"entrypoint {args}: ran '{out.stdout.strip()}' (rc {out.returncode}), want '{expected}'")
    out = subprocess.run(["sh", str(entrypoint), "ls"], capture_output=True, text=True, env=env)
    c.expect(out.returncode == 2 and "expected" in out.stderr, "entrypoint: runs an arbitrary program")

# The build context leaves out build trees, history, local clusters, secrets.
ignored = (root / ".dockerignore").read_text().split()
for pattern in ("build/", ".git/", ".run/", "**/*.pem", "**/*.key", "**/secrets/", "deploy/.secrets/"):
    c.expect(pattern in ignored, f".dockerignore: no '{pattern}'")

c.finish()
