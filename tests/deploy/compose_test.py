#!/usr/bin/env python3
"""Offline checks of deploy/compose.yaml and its schemad configuration (no
Docker daemon needed): loopback-only ports, tokens on, healthchecks, and the
one-shot migration service that control layers wait for.

    tests/deploy/compose_test.py [REPO_ROOT]
"""
import os
import pathlib
import sys

import yaml

from check import Checker

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[2])
deploy = root / "deploy"
c = Checker("compose_test")

compose = yaml.safe_load((deploy / "compose.yaml").read_text())
services = compose.get("services", {})

# Every published port binds the loopback address.
for name, service in services.items():
    for port in service.get("ports", []):
        if isinstance(port, dict):
            c.expect(port.get("host_ip") == "127.0.0.1", f"{name}: port {port} not bound to 127.0.0.1")
        else:
            c.expect(str(port).startswith("127.0.0.1:"), f"{name}: port '{port}' not bound to 127.0.0.1")
c.expect("ports" not in services.get("postgres", {}), "postgres: its port is published")

# schemad authenticates: tokens_file set, the insecure flag absent, and the
# tokens file is mounted as a compose secret from the git-ignored directory.
config_mount = [v for v in services["schemad"].get("volumes", []) if v.endswith(":/etc/schemad/schemad.yaml:ro")]
c.expect(len(config_mount) == 1, "schemad: no read-only mount of /etc/schemad/schemad.yaml")
config = yaml.safe_load((deploy / config_mount[0].split(":")[0]).read_text()) if config_mount else {}
tokens_file = config.get("tokens_file", "")
c.expect(tokens_file.startswith("/run/secrets/"), f"schemad config: tokens_file is '{tokens_file}'")
c.expect(not config.get("insecure_allow_unauthenticated", False), "schemad config: insecure_allow_unauthenticated")
c.expect(not config.get("allow_insecure_secret_files", False), "schemad config: allow_insecure_secret_files")
secret_name = os.path.basename(tokens_file)
c.expect(secret_name in services["schemad"].get("secrets", []), f"schemad: secret {secret_name} not mounted")
secret_file = compose.get("secrets", {}).get(secret_name, {}).get("file", "")
c.expect(secret_file.startswith("./.secrets/"), f"secret {secret_name}: file '{secret_file}' not under ./.secrets/")
gitignore = (root / ".gitignore").read_text().split()
c.expect("/deploy/.secrets/" in gitignore, ".gitignore does not ignore deploy/.secrets/")
dockerignore = (root / ".dockerignore").read_text().split()
c.expect("deploy/.secrets/" in dockerignore, ".dockerignore does not exclude deploy/.secrets/")
example = (deploy / "compose.tokens.example").read_text()
c.expect("DEVELOPMENT EXAMPLE ONLY" in example and "0600" in example,
         "compose.tokens.example: not marked as a development example with its 0600 mode")

# Healthchecks on PostgreSQL and schemad; schemad's is a real gRPC call.
for name in ("postgres", "schemad"):
    test = services.get(name, {}).get("healthcheck", {}).get("test", [])
    c.expect(len(test) > 1 and test[0] == "CMD", f"{name}: no healthcheck")
c.expect("schemactl" in services["schemad"].get("healthcheck", {}).get("test", []),
         "schemad: healthcheck does not call schemactl")
c.expect(services["schemad"].get("depends_on", {}).get("postgres", {}).get("condition") == "service_healthy",
         "schemad: does not wait for a healthy postgres")

# The guide's pattern: a one-shot migration service, and control layers that
# start only after it completed successfully.
migrate = services.get("migrate", {})
command = migrate.get("command", [])
c.expect(command[:1] == ["schemactl"] and ("ensure-head" in command or "upgrade" in command),
         f"migrate: command {command} is not a schemactl upgrade")
c.expect(migrate.get("restart") == "no", "migrate: not one-shot (restart is not \"no\")")
c.expect(migrate.get("depends_on", {}).get("schemad", {}).get("condition") == "service_healthy",
         "migrate: does not wait for a healthy schemad")
control_layers = [n for n in services if n.startswith("control-layer")]
c.expect(control_layers, "no control-layer service")
for name in control_layers:
    condition = services[name].get("depends_on", {}).get("migrate", {}).get("condition")
    c.expect(condition == "service_completed_successfully",
             f"{name}: depends_on migrate with '{condition}', not service_completed_successfully")
for name in ["migrate"] + control_layers:
    env = services[name].get("environment", {})
    c.expect("SCHEMAD_TOKEN_FILE" in env and "SCHEMAD_TOKEN" not in env,
             f"{name}: no token file (or a token in the environment)")

c.finish()
