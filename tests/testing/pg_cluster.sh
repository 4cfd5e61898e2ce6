#!/usr/bin/env bash
# Throwaway PostgreSQL 15 cluster for tests, benchmarks and the local runner.
#
#   tests/testing/pg_cluster.sh start DIR   # initdb (once) + start on a free loopback port
#                                           # (the port it had, when DIR had one that is free)
#   tests/testing/pg_cluster.sh stop DIR    # fast shutdown
#   tests/testing/pg_cluster.sh dsn DIR     # prints the superuser DSN
#   PG_CLUSTER_OPTS='-c max_connections=1200' ... start DIR   # more server options (they win)
#
# DIR holds the data directory, the socket, the log, and two files the tests
# read: `port` and `password`. Password authentication (scram-sha-256) is on for
# TCP so that wrong-password paths are real. initdb and postgres refuse to run
# as root, so as root the cluster runs as the `postgres` user.
set -euo pipefail

cmd=${1:?usage: pg_cluster.sh start|stop|dsn DIR}
dir=${2:?usage: pg_cluster.sh start|stop|dsn DIR}
pgbin=${PGBIN:-/usr/lib/postgresql/15/bin}
mkdir -p "$dir"
dir=$(cd "$dir" && pwd)

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

# A free loopback port below the kernel's ephemeral range, where no other
# process's connect() or bind(0) is handed it before postgres binds it (as
# tests/testing/ports.h does for the C++ tests). $1, when given and free,
# comes first: a cluster started again keeps its port (and its clients'
# DSNs), as a restarted server does. That one is tried with SO_REUSEADDR,
# as postgres binds: the connections the stop ended leave it in TIME_WAIT.
free_port() {
  python3 -c '
import random, socket, sys
low = int(open("/proc/sys/net/ipv4/ip_local_port_range").read().split()[0])
high = low if low > 11000 else 32768
preferred = [int(sys.argv[1])] if len(sys.argv) > 1 and sys.argv[1].isdigit() else []
for port in preferred + random.sample(range(10000, high), 200):
    s = socket.socket()
    if port in preferred:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        s.bind(("127.0.0.1", port))
    except OSError:
        continue
    finally:
        s.close()
    print(port)
    break
else:
    raise SystemExit("no free loopback port between 10000 and %d" % high)
' "$@"
}

case "$cmd" in
  start)
    if [ ! -x "$pgbin/initdb" ]; then
      echo "pg_cluster: $pgbin/initdb not found; run deploy/install-deps.sh" >&2
      exit 1
    fi
    [ "$(id -u)" -eq 0 ] && chown postgres:postgres "$dir"
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      password=$(head -c 18 /dev/urandom | base64 | tr -dc 'A-Za-z0-9' | head -c 20)
      echo "$password" > "$dir/password"
      pwfile=$(mktemp)
      echo "$password" > "$pwfile"
      chmod 644 "$pwfile" "$dir/password"
      as_owner "$pgbin/initdb" -D "$dir/data" -U postgres --pwfile="$pwfile" \
        --auth-local=trust --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { rm -f "$pwfile"; cat "$dir/initdb.log" >&2; exit 1; }
      rm -f "$pwfile"
    fi
    if as_owner "$pgbin/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      exit 0
    fi
    previous=$(cat "$dir/port" 2>/dev/null || true)
    port=$(free_port ${previous:+"$previous"})
    echo "$port" > "$dir/port"
    as_owner "$pgbin/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start \
      -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c max_connections=400 -c fsync=off \
          -c synchronous_commit=off -c full_page_writes=off -c shared_buffers=128MB ${PG_CLUSTER_OPTS:-}" >/dev/null \
      || { tail -20 "$dir/postgres.log" >&2; exit 1; }
    ;;
  stop)
    if [ -f "$dir/data/PG_VERSION" ]; then
      as_owner "$pgbin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    ;;
  dsn)
    echo "postgresql://postgres:$(cat "$dir/password")@127.0.0.1:$(cat "$dir/port")/postgres"
    ;;
  *)
    echo "usage: pg_cluster.sh start|stop|dsn DIR" >&2
    exit 2
    ;;
esac
