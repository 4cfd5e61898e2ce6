#!/usr/bin/env python3
"""Offline checks of deploy/k8s: renders the example overlay (and the base)
with `kubectl kustomize` and checks the result without a cluster: Pod
Security "restricted" on every container and init container, resources,
three distinct probes (readiness: schemad's own, over TLS), PodDisruptionBudget, NetworkPolicy, tokens over TLS
with a cert-manager Certificate, a control layer that waits for head, and
Secrets holding placeholders only. (No kubeconform or kubeval in Debian 12:
these are field checks, not an OpenAPI schema validation.)

    tests/deploy/k8s_test.py [REPO_ROOT]     # needs kubectl (Debian: kubernetes-client)
"""
import pathlib
import shutil
import subprocess
import sys

import yaml

from check import Checker

root = pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else pathlib.Path(__file__).resolve().parents[2])
c = Checker("k8s_test")

kubectl = shutil.which("kubectl")
if not kubectl:
    print("k8s_test: FAIL: kubectl not found (deploy/install-deps.sh installs kubernetes-client)", file=sys.stderr)
    sys.exit(1)


def render(path):
    out = subprocess.run([kubectl, "kustomize", str(root / path)], capture_output=True, text=True)
    if out.returncode != 0:
        print(f"k8s_test: FAIL: kubectl kustomize {path}: {out.stderr.strip()}", file=sys.stderr)
        sys.exit(1)
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


base = render("deploy/k8s/base")
objects = render("deploy/k8s/overlays/example")
c.expect(len(base) >= 6, f"base renders {len(base)} objects")


def named(kind, name=None):
    return [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]


def pod_specs():
    for o in objects:
        kind = o["kind"]
        if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
            yield f"{kind}/{o['metadata']['name']}", o["spec"]["template"]["spec"]
        elif kind == "CronJob":
            yield f"CronJob/{o['metadata']['name']}", o["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        elif kind == "Pod":
            yield f"Pod/{o['metadata']['name']}", o["spec"]


# Pod Security "restricted" (pod-security-standards), on every container.
specs = list(pod_specs())
c.expect(len(specs) >= 2, f"{len(specs)} pod specs rendered (want schemad and the control layer)")
for where, spec in specs:
    pod_sc = spec.get("securityContext", {})
    for field in ("hostNetwork", "hostPID", "hostIPC"):
        c.expect(not spec.get(field), f"{where}: {field}")
    for volume in spec.get("volumes", []):
        allowed = {"configMap", "secret", "emptyDir", "projected", "downwardAPI", "persistentVolumeClaim", "ephemeral", "csi"}
        kinds = set(volume) - {"name"}
        c.expect(kinds <= allowed, f"{where}: volume {volume['name']} of type {kinds - allowed}")
    c.expect(spec.get("automountServiceAccountToken") is False, f"{where}: service account token mounted")
    for container in spec.get("initContainers", []) + spec.get("containers", []):
        at = f"{where} container {container['name']}"
        sc = container.get("securityContext", {})
        run_as_non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        c.expect(run_as_non_root is True, f"{at}: runAsNonRoot is not true")
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        c.expect(isinstance(uid, int) and uid > 0, f"{at}: runAsUser {uid!r} is not a numeric non-root uid")
        c.expect(sc.get("allowPrivilegeEscalation") is False, f"{at}: allowPrivilegeEscalation is not false")
        c.expect(sc.get("readOnlyRootFilesystem") is True, f"{at}: readOnlyRootFilesystem is not true")
        c.expect(not sc.get("privileged"), f"{at}: privileged")
        caps = sc.get("capabilities", {})
        c.expect("ALL" in caps.get("drop", []), f"{at}: capabilities do not drop ALL")
        c.expect(not set(caps.get("add", [])) - {"NET_BIND_SERVICE"}, f"{at}: adds capabilities {caps.get('add')}")
        seccomp = sc.get("seccompProfile", pod_sc.get("seccompProfile", {})).get("type")
        c.expect(seccomp in ("RuntimeDefault", "Localhost"), f"{at}: seccompProfile {seccomp!r}")
        resources = container.get("resources", {})
        for section in ("requests", "limits"):
            for resource in ("cpu", "memory"):
                c.expect(resource in resources.get(section, {}), f"{at}: no {section}.{resource}")

# schemad: three probes that mean different things.
deployments = named("Deployment", "schemad")
c.expect(len(deployments) == 1, "no Deployment schemad")
schemad_pod = deployments[0]["spec"]["template"] if deployments else {"metadata": {}, "spec": {"containers": [{}]}}
schemad = schemad_pod["spec"]["containers"][0]
probes = {name: schemad.get(name) for name in ("startupProbe", "readinessProbe", "livenessProbe")}
for name, probe in probes.items():
    c.expect(bool(probe), f"schemad: no {name}")
probes = {k: v or {} for k, v in probes.items()}
c.expect(len({yaml.safe_dump(p) for p in probes.values()}) == 3, "schemad: two probes are identical")
readiness = probes["readinessProbe"].get("exec", {}).get("command", [])
c.expect(readiness[:1] == ["schemactl"] and "--tls-ca" in readiness and "--server" in readiness
         and readiness[-2:] == ["health", "--ready"],
         f"schemad: readiness {readiness} is not schemad's readiness over TLS (schemactl --server ... health --ready)")
liveness = probes["livenessProbe"]
c.expect(liveness.get("periodSeconds", 10) * liveness.get("failureThreshold", 3) >= 60,
         "schemad: liveness gives up in under a minute")
startup = probes["startupProbe"]
c.expect(startup.get("periodSeconds", 10) * startup.get("failureThreshold", 3) >= 60,
         "schemad: startup allows under a minute")
grace = schemad_pod["spec"].get("terminationGracePeriodSeconds", 30)

# The configuration: tokens over TLS, files from the mounted Secrets.
configs = [o for o in named("ConfigMap") if o["metadata"]["name"].startswith("schemad-config")]
c.expect(len(configs) == 1, "no ConfigMap schemad-config")
config = yaml.safe_load(configs[0]["data"]["schemad.yaml"]) if configs else {}
c.expect(bool(config.get("tokens_file")), "config: no tokens_file")
c.expect(bool(config.get("tls", {}).get("cert_file")) and bool(config.get("tls", {}).get("key_file")),
         "config: no tls cert_file/key_file")
c.expect(not config.get("insecure_allow_unauthenticated") and not config.get("allow_insecure_secret_files"),
         "config: an insecure_* / allow_insecure_* flag is set")
shutdown_grace = config.get("shutdown_grace", "30s")
c.expect(shutdown_grace.endswith("s") and int(shutdown_grace[:-1]) + 5 < grace,
         f"shutdown_grace {shutdown_grace} + 5 s does not fit terminationGracePeriodSeconds {grace}")
mounts = {m["name"]: m["mountPath"] for m in schemad.get("volumeMounts", [])}
volumes = {v["name"]: v for v in schemad_pod["spec"].get("volumes", [])}
secret_of_path = {}
for name, path in mounts.items():
    secret = volumes.get(name, {}).get("secret", {})
    if secret:
        secret_of_path[path] = secret["secretName"]
        c.expect(secret.get("defaultMode", 0o644) & 0o007 == 0, f"secret volume {name}: readable by others")
for key, path in (("tokens_file", config.get("tokens_file", "")),
                  ("tls.cert_file", config.get("tls", {}).get("cert_file", ""))):
    c.expect(any(path.startswith(p + "/") for p in secret_of_path), f"config {key} {path}: not in a mounted Secret")
tls_secret = next((s for p, s in secret_of_path.items() if config.get("tls", {}).get("cert_file", "").startswith(p + "/")), None)
certificates = [o for o in named("Certificate") if o["spec"].get("secretName") == tls_secret]
c.expect(len(certificates) == 1, f"no cert-manager Certificate writes the TLS Secret {tls_secret}")
if certificates:
    c.expect("schemad" in certificates[0]["spec"].get("dnsNames", []), "Certificate: no dnsName schemad")

# PodDisruptionBudget and NetworkPolicy select schemad's pods.
pod_labels = schemad_pod["metadata"].get("labels", {})
def selects(selector):
    return bool(selector) and all(pod_labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
pdbs = [o for o in named("PodDisruptionBudget") if selects(o["spec"].get("selector", {}))]
c.expect(len(pdbs) == 1, "no PodDisruptionBudget for schemad")
replicas = deployments[0]["spec"].get("replicas", 1) if deployments else 0
if pdbs and "minAvailable" in pdbs[0]["spec"]:
    c.expect(pdbs[0]["spec"]["minAvailable"] < replicas, "PodDisruptionBudget: minAvailable blocks every eviction")
policies = [o for o in named("NetworkPolicy") if selects(o["spec"].get("podSelector", {}))]
c.expect(len(policies) == 1, "no NetworkPolicy for schemad")
policy = policies[0]["spec"] if policies else {}
c.expect(set(policy.get("policyTypes", [])) == {"Ingress", "Egress"}, "NetworkPolicy: not both Ingress and Egress")
ingress = policy.get("ingress", [])
ingress_ports = sorted(p.get("port") for rule in ingress for p in rule.get("ports", []))
c.expect(ingress_ports == [9464, 50051], f"NetworkPolicy: ingress ports {ingress_ports}, want [9464, 50051]")
c.expect(all(rule.get("from") and rule.get("ports") for rule in ingress),
         "NetworkPolicy: an ingress rule open to every peer or every port")
def rules_for(port):
    return [rule for rule in ingress if any(p.get("port") == port for p in rule.get("ports", []))]
# gRPC: control-layer pods only; /metrics: the monitoring namespace only.
client_selectors = [peer.get("podSelector", {}).get("matchLabels", {}) for rule in rules_for(50051)
                    for peer in rule.get("from", [])]
c.expect(client_selectors and all(client_selectors)
         and not any("namespaceSelector" in peer for rule in rules_for(50051) for peer in rule["from"]),
         "NetworkPolicy: gRPC ingress from anything but labelled pods")
scrapers = [peer for rule in rules_for(9464) for peer in rule.get("from", [])]
c.expect(scrapers and all(peer.get("namespaceSelector", {}).get("matchLabels") for peer in scrapers),
         "NetworkPolicy: /metrics open beyond a selected namespace")
schemad_config = yaml.safe_load((root / "deploy/k8s/base/schemad.yaml").read_text())
metrics_port = int(schemad_config.get("metrics", {}).get("listen", ":0").rsplit(":", 1)[1])
container_ports = {p["name"]: p["containerPort"] for p in schemad_pod["spec"]["containers"][0].get("ports", [])}
c.expect(metrics_port == container_ports.get("metrics") == 9464,
         f"metrics: config port {metrics_port}, container port {container_ports.get('metrics')}, want 9464")
c.expect(schemad_pod["metadata"].get("annotations", {}).get("prometheus.io/port") == "9464",
         "no prometheus.io/port annotation naming the metrics port")
egress_ports = sorted({p.get("port") for rule in policy.get("egress", []) for p in rule.get("ports", [])})
c.expect(egress_ports == [53, 5432], f"NetworkPolicy: egress ports {egress_ports}, want [53, 5432]")

# A control layer whose init container waits for head through schemad, and
# that the NetworkPolicy lets in.
control_layers = [o for o in named("Deployment") if o["metadata"]["name"] != "schemad"]
c.expect(control_layers, "no control-layer Deployment")
for o in control_layers:
    template = o["spec"]["template"]
    labels = template["metadata"].get("labels", {})
    c.expect(any(all(labels.get(k) == v for k, v in s.items()) for s in client_selectors),
             f"{o['metadata']['name']}: not admitted by schemad's NetworkPolicy")
    waits = [ic for ic in template["spec"].get("initContainers", [])
             if (ic.get("args", []) + ic.get("command", []))[:1] == ["schemactl"]
             and "ensure-head" in ic.get("args", []) + ic.get("command", [])
             and "--server" in ic.get("args", []) + ic.get("command", [])]
    c.expect(len(waits) == 1, f"{o['metadata']['name']}: no init container running schemactl --server ... ensure-head")

# Secrets are documented placeholders: no base64 data, every value REPLACE-ME.
secrets = named("Secret")
c.expect({"schemad-dsn", "schemad-tokens"} <= {s["metadata"]["name"] for s in secrets}, "example Secrets missing")
for secret in secrets:
    c.expect("data" not in secret, f"Secret {secret['metadata']['name']}: base64 data (use stringData placeholders)")
    for key, value in secret.get("stringData", {}).items():
        c.expect("REPLACE-ME" in value, f"Secret {secret['metadata']['name']}: {key} is not a REPLACE-ME placeholder")

namespaces = named("Namespace")
c.expect(all(n["metadata"].get("labels", {}).get("pod-security.kubernetes.io/enforce") == "restricted"
             for n in namespaces) and namespaces, "Namespace: Pod Security 'restricted' not enforced")

c.finish()
