#!/usr/bin/env bash
# Fleet benchmark with two replicas (issue 10): $SITES site databases x
# $REVISIONS revisions (the sites and revisions of fleet_bench.sh) on one
# throwaway cluster, upgraded with `schemactl --server ... fleet upgrade
# --parallel N` for each N in $PARALLEL by three contenders:
#
#   single  one `schemad` without a control database (issue 6's setup);
#   pair    two `schemad` processes, A and B, sharing one control database
#           (database `control` on the same cluster): the fleet is started
#           through A while B follows it: `ops list` polled through B (every
#           100 ms) until the new operation shows, then `ops watch OP`
#           through B to its end. B's watch must exit 0 (the operation's
#           outcome) on the operation A started; how long after A's
#           schemactl B's watch ends is reported (the "lag");
#   floor   the same SQL through the real psql binary to every site, N at a
#           time (as fleet_bench.sh).
#
# All three processes run all along, configured alike (pools: 2 sessions a
# site, 1 kept warm, so 3 x $SITES idle backends: the cluster gets
# max_connections=1200); each opens its sites with its own application_name
# (schemad-single, schemad-a, schemad-b) so its backends can be told apart.
# $ROUNDS rounds; in each, for every N, the three run in turn (the order
# rotating), each from empty databases. Every run must exit 0 and leave every
# site at the last revision with all its tables, else the benchmark fails.
# Reports per N the median and min–max over the rounds of each contender's
# wall time (the schemactl process), the pair/single and */floor ratios
# taken round by round, B's lag, and the peak backends of the contender's
# schemad above its warm pool and the peak of the replicas' control-database
# backends (sampled every 20 ms by one server-side loop).
#
#   tests/bench/fleet_replicas_bench.sh [BUILD_DIR]   # default build/release, else build/default
#   SITES=300 REVISIONS=20 PARALLEL="1 8 32" ROUNDS=3 OUT=fleet_replicas_bench.dat
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/tests/bench/bench_lib.sh"
build=${1:-$root/build/release}
[ -x "$build/service/schemad" ] || build=$root/build/default
sites=${SITES:-300}
revisions=${REVISIONS:-20}
parallel_list=${PARALLEL:-1 8 32}
rounds=${ROUNDS:-3}
out_file=${OUT:-$PWD/fleet_replicas_bench.dat}
psql_bin=$(bench_psql)
schemactl=$build/client/schemactl
pids=()
sampler_pid=
watcher_pid=
bench_before_exit() {
  local pid
  for pid in $sampler_pid $watcher_pid; do kill "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
  done
}
PG_CLUSTER_OPTS='-c max_connections=1200' bench_cluster fleetreplicas
fleet_revisions "$revisions"
fleet_sites "$sites"
"$psql_bin" -X "$admin" -qc 'CREATE DATABASE control'
export BENCH_CONTROL_DSN=$fleet_base/control

# config NAME [YAML...]: $work/NAME.yaml over every site, through DSN files
# that name the application schemad-NAME.
config() {
  local name=$1 i
  shift
  mkdir -p "$work/dsn-$name"
  {
    echo "listen: 127.0.0.1:0"
    echo "pools: {max_sessions_per_database: 2, min_idle_sessions: 1}"
    echo "migration_sets: [{name: fleet, directory: set}]"
    for line in "$@"; do echo "$line"; done
    echo "databases:"
    for i in $(seq -w 1 "$sites"); do
      (umask 077; echo "$fleet_base/site_$i?application_name=schemad-$name" > "$work/dsn-$name/site_$i")
      echo "  - {name: site-$i, migration_set: fleet, dsn_file: dsn-$name/site_$i, labels: {env: bench}}"
    done
  } > "$work/$name.yaml"
}
config single
config a "control_database: {dsn_env: BENCH_CONTROL_DSN}" "replica_name: bench-a"
config b "control_database: {dsn_env: BENCH_CONTROL_DSN}" "replica_name: bench-b"

declare -A address
for name in single a b; do
  "$build/service/schemad" --config "$work/$name.yaml" --log-level warn > "$work/out.$name" 2> "$work/err.$name" &
  pids+=("$!")
  address[$name]=$(schemad_address "$work/out.$name" "$!" 30)
  [ -n "${address[$name]}" ] || { echo "bench: schemad $name did not start:" >&2; cat "$work/err.$name" >&2; exit 1; }
done

backends() {  # backends NAME: schemad-NAME's backends on the sites
  "$psql_bin" -X "$admin" -Atqc "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'schemad-$1%'"
}
# The warm pools: one idle session per site and process, opened in the
# background after start-up; wait for them (deadline 120 s).
for name in single a b; do
  for _ in $(seq 1200); do [ "$(backends "$name")" -ge "$sites" ] && break; sleep 0.1; done
  expect_eq "warm pool sessions of $name" "$(backends "$name")" "$sites"
done
expect_eq "replicas registered in the control database" \
  "$("$psql_bin" -X -qAt "$BENCH_CONTROL_DSN" -c 'SELECT string_agg(name, $$,$$ ORDER BY name) FROM schemad_control.replicas')" \
  bench-a,bench-b

# The sampler: one backend counting, every 20 ms in a server-side loop, the
# backends of schemad-NAME and those of the replicas on the control database.
start_sampler() {  # start_sampler NAME
  "$psql_bin" -X -q "$admin" -c "DO \$\$ DECLARE n int; c int; BEGIN LOOP
      PERFORM pg_stat_clear_snapshot();
      SELECT count(*) FILTER (WHERE application_name LIKE 'schemad-$1%'),
             count(*) FILTER (WHERE application_name LIKE 'schemad control%') INTO n, c
        FROM pg_stat_activity;
      RAISE NOTICE 'backends=% control=%', n, c; PERFORM pg_sleep(0.02); END LOOP; END \$\$" \
    2> "$work/samples.raw" > /dev/null &
  sampler_pid=$!
}
stop_sampler() {  # stop_sampler N: appends the peaks to peak.N, control.N
  kill "$sampler_pid"; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=
  sed -n 's/^NOTICE:  backends=\([0-9]*\) control=\([0-9]*\)$/\1 \2/p' "$work/samples.raw" > "$work/samples"
  [ -s "$work/samples" ] || { echo "bench: FAILED: the backend sampler recorded nothing" >&2; exit 1; }
}
peak_column() { cut -d' ' -f"$1" "$work/samples" | sort -n | tail -1; }

# The newest operation B lists (empty when none).
newest_through_b() {
  "$schemactl" --server "${address[b]}" --json ops list --limit 1 |
    python3 -c 'import json,sys; ops=json.load(sys.stdin)["operations"]; print(ops[0]["operation_id"] if ops else "")'
}
# B follows the fleet: polls its list (deadline 60 s) for an operation newer
# than PREVIOUS, then watches it to its end. Writes the operation's id to
# $work/watched, the end time (ns) to $work/watch.end; exits as the watch.
follow_through_b() {  # follow_through_b PREVIOUS
  local id='' rc=0
  for _ in $(seq 600); do
    id=$(newest_through_b)
    [ -n "$id" ] && [ "$id" != "$1" ] && break
    id=
    sleep 0.1
  done
  [ -n "$id" ] || { echo "bench: B never listed the fleet operation" >&2; exit 1; }
  echo "$id" > "$work/watched"
  "$schemactl" --server "${address[b]}" ops watch "$id" > "$work/watch.out" 2>&1 || rc=$?
  date +%s%N > "$work/watch.end"
  exit "$rc"
}

fleet_through() {  # fleet_through NAME N: the timed fleet upgrade, checked
  timed "$schemactl" --server "${address[$1]}" --json fleet upgrade --selector env=bench --parallel "$2"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["succeeded"]==int(sys.argv[2]), d; print(d["duration_ms"]*1000)' \
    "$BENCH_LOG" "$sites" >> "$work/fleet.$1.$2"
  echo "$BENCH_US" >> "$work/wall.$1.$2"
}

run_single() {  # run_single N ROUND
  fleet_reset
  local warm
  warm=$(backends single)
  start_sampler single
  fleet_through single "$1"
  stop_sampler
  fleet_check "single replica, --parallel $1, round $2"
  echo "$(($(peak_column 1) - warm))" >> "$work/above.single.$1"
}

run_pair() {  # run_pair N ROUND
  fleet_reset
  local warm previous rc=0 a_end op
  warm=$(backends a)
  previous=$(newest_through_b)
  start_sampler a
  follow_through_b "$previous" &
  watcher_pid=$!
  fleet_through a "$1"
  a_end=$(date +%s%N)
  wait "$watcher_pid" || rc=$?
  watcher_pid=
  stop_sampler
  [ "$rc" -eq 0 ] || { echo "bench: FAILED: B's ops watch exited $rc:" >&2; tail -n 20 "$work/watch.out" >&2; exit 1; }
  op=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["operation_id"])' "$BENCH_LOG")
  expect_eq "the operation B watched" "$(cat "$work/watched")" "$op"
  echo "$(( ($(cat "$work/watch.end") - a_end) / 1000 ))" >> "$work/lag.$1"
  fleet_check "two replicas, --parallel $1, round $2"
  echo "$(($(peak_column 1) - warm))" >> "$work/above.a.$1"
  peak_column 2 >> "$work/control.$1"
}

run_floor() {  # run_floor N ROUND
  fleet_reset
  start_sampler single
  timed xargs -P "$1" -I{} "$psql_bin" -X -q -v ON_ERROR_STOP=1 -f "$work/floor.sql" {} < "$work/dsns"
  stop_sampler
  echo "$BENCH_US" >> "$work/floor.$1"
  fleet_check "psql floor, $1 at a time, round $2"
}

echo "# sites=$sites revisions=$revisions rounds=$rounds build=$build (CMAKE_BUILD_TYPE=$(bench_build_type "$build"))" | tee "$out_file"
echo "# psql: $psql_bin; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
contenders=(single pair floor)
for round in $(seq 0 $((rounds - 1))); do
  for n in $parallel_list; do
    for k in 0 1 2; do
      "run_${contenders[$(((round + k) % 3))]}" "$n" "$round"
    done
  done
  echo "# round $((round + 1)) done, load average $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
done

median_of() { summary "$1" | cut -d' ' -f1; }
max_of() { sort -n "$1" | tail -1; }
s_summary() { summary "$1" | awk '{ printf "%.2f s (%.2f–%.2f)", $1 / 1e6, $2 / 1e6, $3 / 1e6 }'; }
ratio() { paste "$1" "$2" | awk '{ printf "%.4f\n", $1 / $2 }' > "$3"; }
echo "# parallel single_s pair_s floor_s pair/single single/floor pair/floor lag_ms (medians)" >> "$out_file"
printf '\n| parallelism | single replica | two replicas (through A, B watching) | two / single | psql floor | single / floor | two / floor | B'"'"'s watch ends after A | backends above warm: single, A | control-db backends |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
for n in $parallel_list; do
  ratio "$work/wall.a.$n" "$work/wall.single.$n" "$work/r.pair_single.$n"
  ratio "$work/wall.single.$n" "$work/floor.$n" "$work/r.single_floor.$n"
  ratio "$work/wall.a.$n" "$work/floor.$n" "$work/r.pair_floor.$n"
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s, %s | %s |\n' "$n" \
    "$(s_summary "$work/wall.single.$n")" "$(s_summary "$work/wall.a.$n")" \
    "$(ratio_summary "$work/r.pair_single.$n")" "$(s_summary "$work/floor.$n")" \
    "$(ratio_summary "$work/r.single_floor.$n")" "$(ratio_summary "$work/r.pair_floor.$n")" \
    "$(ms_summary "$work/lag.$n")" "$(max_of "$work/above.single.$n")" "$(max_of "$work/above.a.$n")" \
    "$(max_of "$work/control.$n")"
  printf '%s %.3f %.3f %.3f %s %s %s %.1f\n' "$n" \
    "$(awk -v v="$(median_of "$work/wall.single.$n")" 'BEGIN { print v / 1e6 }')" \
    "$(awk -v v="$(median_of "$work/wall.a.$n")" 'BEGIN { print v / 1e6 }')" \
    "$(awk -v v="$(median_of "$work/floor.$n")" 'BEGIN { print v / 1e6 }')" \
    "$(median_of "$work/r.pair_single.$n")" "$(median_of "$work/r.single_floor.$n")" \
    "$(median_of "$work/r.pair_floor.$n")" \
    "$(awk -v v="$(median_of "$work/lag.$n")" 'BEGIN { print v / 1e3 }')" >> "$out_file"
done
echo
echo "fleet's own duration (server side), median (min–max):"
for n in $parallel_list; do
  echo "  parallel $n: single $(s_summary "$work/fleet.single.$n"), two replicas $(s_summary "$work/fleet.a.$n")"
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%FT%TZ)"
