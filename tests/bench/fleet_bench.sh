#!/usr/bin/env bash
# Fleet benchmark (issues 6 and 15): $SITES site databases x $REVISIONS
# revisions on one throwaway cluster, upgraded by the `schemad` binary through
# `schemactl --server ... fleet upgrade --parallel N` for each N in $PARALLEL,
# against the floor: the same SQL through the real psql binary to all sites,
# N at a time (xargs -P N; per site one psql process running the revisions
# as BEGIN, statements, alembic_version statement, COMMIT). $ROUNDS rounds;
# in each, every N runs schemactl and the floor in turn (which goes first
# alternates), each from empty databases. Every run must exit 0 and leave
# every site at the last revision with all its tables, else the benchmark
# fails. Reports per N the median and min–max over the rounds of: the wall
# time of the schemactl process, the fleet's own duration, the floor's wall
# time, the schemactl/floor ratio taken round by round, the speedup of the
# medians over N=1; and the peak number of backends schemad holds
# (pg_stat_activity, application_name schemad*, sampled every 20 ms) in total
# and above the warm pools, the largest over the rounds. The sampler (one
# backend looping on the server) runs during the floor's runs too.
#
#   tests/bench/fleet_bench.sh [BUILD_DIR]     # default build/release, else build/default
#   SITES=100 REVISIONS=20 PARALLEL="1 4 8 16" ROUNDS=3 OUT=fleet_bench.dat
#
# Writes a data file ($OUT: parallel wall_s fleet_s floor_s speedup ratio peak
# peak_above_warm, medians) and, with gnuplot installed and PLOT set, a PNG
# of time against parallelism.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
source "$root/tests/bench/bench_lib.sh"
build=${1:-$root/build/release}
[ -x "$build/service/schemad" ] || build=$root/build/default
sites=${SITES:-100}
revisions=${REVISIONS:-20}
parallel_list=${PARALLEL:-1 4 8 16}
rounds=${ROUNDS:-3}
out_file=${OUT:-$PWD/fleet_bench.dat}
plot=${PLOT:-}
psql_bin=$(bench_psql)
schemad_pid=
sampler_pid=
bench_before_exit() {
  if [ -n "$sampler_pid" ]; then kill "$sampler_pid" 2>/dev/null || true; fi
  if [ -n "$schemad_pid" ]; then kill -TERM "$schemad_pid" 2>/dev/null || true; wait "$schemad_pid" 2>/dev/null || true; fi
}
bench_cluster fleetbench
base=${admin%/postgres}

fleet_revisions "$revisions"
fleet_sites "$sites"
mkdir -p "$work/dsn"
{
  echo "listen: 127.0.0.1:0"
  echo "pools: {max_sessions_per_database: 2, min_idle_sessions: 1}"
  echo "migration_sets: [{name: fleet, directory: set}]"
  echo "databases:"
  for i in $(seq -w 1 "$sites"); do
    (umask 077; echo "$base/site_$i" > "$work/dsn/site_$i")  # owner-only, as schemad wants
    echo "  - {name: site-$i, migration_set: fleet, dsn_file: dsn/site_$i, labels: {env: bench}}"
  done
} > "$work/schemad.yaml"

"$build/service/schemad" --config "$work/schemad.yaml" --log-level warn > "$work/out" 2> "$work/err" &
schemad_pid=$!
address=$(schemad_address "$work/out" "$schemad_pid" 10)
[ -n "$address" ] || { echo "bench: schemad did not start:" >&2; cat "$work/err" >&2; exit 1; }

backends() {
  "$psql_bin" -X "$admin" -Atqc "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'schemad%'"
}
# The warm pools: one idle session per site (min_idle_sessions: 1), opened in
# the background after start-up; wait for them (deadline 60 s).
for _ in $(seq 600); do [ "$(backends)" -ge "$sites" ] && break; sleep 0.1; done
expect_eq "warm pool sessions" "$(backends)" "$sites"

# The sampler: one backend counting schemad's backends every 20 ms in a
# server-side loop (a psql process every 20 ms would load the two cores it
# measures), printing each count as a NOTICE; it runs during the floor's
# runs too, so that both run beside the same load.
start_sampler() {
  "$psql_bin" -X -q "$admin" -c "DO \$\$ DECLARE n int; BEGIN LOOP
      PERFORM pg_stat_clear_snapshot();
      SELECT count(*) INTO n FROM pg_stat_activity WHERE application_name LIKE 'schemad%';
      RAISE NOTICE 'backends=%', n; PERFORM pg_sleep(0.02); END LOOP; END \$\$" \
    2> "$work/samples.raw" > /dev/null &
  sampler_pid=$!
}
stop_sampler() {
  kill "$sampler_pid"; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=
  sed -n 's/^NOTICE:  backends=//p' "$work/samples.raw" > "$work/samples"
  [ -s "$work/samples" ] || { echo "bench: FAILED: the backend sampler recorded nothing" >&2; exit 1; }
}

run_schemactl() {  # run_schemactl N ROUND
  fleet_reset
  warm=$(backends)
  start_sampler
  timed "$build/client/schemactl" --server "$address" --json fleet upgrade --selector env=bench \
    --parallel "$1"
  stop_sampler
  echo "$BENCH_US" >> "$work/wall.$1"
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["succeeded"]==int(sys.argv[2]), d; print(d["duration_ms"]*1000)' \
    "$BENCH_LOG" "$sites" >> "$work/fleet.$1"
  fleet_check "schemactl fleet upgrade --parallel $1, round $2"
  peak=$(sort -n "$work/samples" | tail -1)
  echo "$peak" >> "$work/peak.$1"
  echo "$((peak - warm))" >> "$work/above.$1"
}

run_floor() {  # run_floor N ROUND
  fleet_reset
  start_sampler
  timed xargs -P "$1" -I{} "$psql_bin" -X -q -v ON_ERROR_STOP=1 -f "$work/floor.sql" {} < "$work/dsns"
  stop_sampler
  echo "$BENCH_US" >> "$work/floor.$1"
  fleet_check "psql floor, $1 at a time, round $2"
}

echo "# sites=$sites revisions=$revisions rounds=$rounds build=$build (CMAKE_BUILD_TYPE=$(bench_build_type "$build"))" | tee "$out_file"
echo "# psql: $psql_bin; $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq 0 $((rounds - 1))); do
  for n in $parallel_list; do
    if [ $((round % 2)) -eq 0 ]; then
      run_schemactl "$n" "$round"; run_floor "$n" "$round"
    else
      run_floor "$n" "$round"; run_schemactl "$n" "$round"
    fi
  done
done

median_of() { summary "$1" | cut -d' ' -f1; }
max_of() { sort -n "$1" | tail -1; }
s_summary() { summary "$1" | awk '{ printf "%.2f s (%.2f–%.2f)", $1 / 1e6, $2 / 1e6, $3 / 1e6 }'; }
echo "# parallel wall_s fleet_s floor_s speedup ratio peak_backends peak_above_warm (medians)" >> "$out_file"
printf '\n| parallelism | schemactl fleet upgrade (process) | fleet duration | psql floor | ratio | speedup over 1 | floor speedup | peak backends | above the warm pools |\n'
printf '|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
seq_time=; seq_floor=
for n in $parallel_list; do
  paste "$work/wall.$n" "$work/floor.$n" | awk '{ printf "%.4f\n", $1 / $2 }' > "$work/ratio.$n"
  wall=$(median_of "$work/wall.$n"); floor=$(median_of "$work/floor.$n")
  [ -n "$seq_time" ] || { seq_time=$wall; seq_floor=$floor; }
  speedup=$(awk -v a="$seq_time" -v b="$wall" 'BEGIN { printf "%.2f", a / b }')
  floor_speedup=$(awk -v a="$seq_floor" -v b="$floor" 'BEGIN { printf "%.2f", a / b }')
  printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$n" "$(s_summary "$work/wall.$n")" \
    "$(s_summary "$work/fleet.$n")" "$(s_summary "$work/floor.$n")" "$(ratio_summary "$work/ratio.$n")" \
    "$speedup" "$floor_speedup" "$(max_of "$work/peak.$n")" "$(max_of "$work/above.$n")"
  printf '%s %.3f %.3f %.3f %s %s %s %s\n' "$n" "$(awk -v v="$wall" 'BEGIN { print v / 1e6 }')" \
    "$(awk -v v="$(median_of "$work/fleet.$n")" 'BEGIN { print v / 1e6 }')" \
    "$(awk -v v="$floor" 'BEGIN { print v / 1e6 }')" "$speedup" "$(median_of "$work/ratio.$n")" \
    "$(max_of "$work/peak.$n")" "$(max_of "$work/above.$n")" >> "$out_file"
done
echo "# load average after: $(cut -d' ' -f1-3 /proc/loadavg)"

if [ -n "$plot" ] && command -v gnuplot >/dev/null; then
  gnuplot <<GP
set terminal png size 800,500
set output "$plot"
set title "schemad fleet upgrade: $sites sites x $revisions revisions (medians of $rounds rounds)"
set xlabel "max parallel sites"
set ylabel "total time (s)"
set y2label "speedup over parallelism 1"
set ytics nomirror
set y2tics
set xtics (1, 4, 8, 16)
set grid
set key top center
plot "$out_file" using 1:2 with linespoints lw 2 pt 7 title "schemactl fleet upgrade (s)", \
     "$out_file" using 1:4 with linespoints lw 2 pt 9 title "psql floor (s)", \
     "$out_file" using 1:5 axes x1y2 with linespoints lw 2 pt 5 dt 2 title "speedup"
GP
  echo "plot: $plot"
fi
