#!/usr/bin/env bash
# Installs the Debian 12 packages schemad needs to build, test and run.
# Idempotent: does nothing (no apt-get update) when everything is present.
#   deploy/install-deps.sh               # everything: build, tests, benchmarks, CI
#   deploy/install-deps.sh --build-only  # only what building schemad and schemactl
#                                        # needs (deploy/Dockerfile's build stage)
set -euo pipefail

build_only=0
case "${1:-}" in
  "") ;;
  --build-only) build_only=1 ;;
  *) echo "install-deps: unknown argument $1 (expected --build-only or nothing)" >&2; exit 2 ;;
esac

# Building schemad and schemactl (cmake --preset release -DBUILD_TESTING=OFF).
build_packages=(
  build-essential cmake ninja-build pkg-config
  libgrpc++-dev libgrpc-dev protobuf-compiler protobuf-compiler-grpc libprotobuf-dev
  libpqxx-dev libpq-dev
  libabsl-dev libspdlog-dev libfmt-dev
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev libssl-dev libsystemd-dev
  prometheus-cpp-dev  # /metrics
  libpg-query-dev   # PostgreSQL 15's own parser (libpg_query): the SQL front end
  nettle-dev        # SHA-256 of revisions without OpenSSL's start-up cost
)

packages=("${build_packages[@]}")
if [ "$build_only" -eq 0 ]; then
  packages+=(
    git
    libgtest-dev libgmock-dev libbenchmark-dev
    postgresql-15 postgresql-client-15
    python3-alembic python3-sqlalchemy python3-psycopg2
    python3-grpcio python3-protobuf python3-pip python3-setuptools python3-venv
    openssl gnuplot-nox
    systemd
    clang-14 libfuzzer-14-dev libclang-rt-14-dev
    python3-yaml   # tests/deploy: the compose and Kubernetes checks
    prometheus     # tests/deploy: promtool checks and unit-tests deploy/observability's alert rules
    zsh fish groff-base  # tests/cli/completion_test.sh: the completion scripts parse, the man page renders
  )
  # tests/deploy renders deploy/k8s with `kubectl kustomize`. Debian's
  # kubectl is kubernetes-client; a kubectl installed from another package
  # (it would conflict on /usr/bin/kubectl) is used as it is.
  command -v kubectl >/dev/null || packages+=(kubernetes-client)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

echo "installing: ${missing[*]}"
sudo_cmd=()
[ "$(id -u)" -eq 0 ] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
