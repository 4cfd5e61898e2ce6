#!/usr/bin/env bash
# Fleet benchmark (issue 6): $SITES site databases x $REVISIONS revisions on
# one throwaway cluster, upgraded by the `schemad` binary through
# `schemactl --server ... fleet upgrade --parallel N` for each N in $PARALLEL.
# Every round starts from empty databases. Reports per N: wall time of the
# schemactl process, the fleet's own duration, speedup over N=1, and the peak
# number of backends schemad holds (pg_stat_activity, application_name
# schemad*, sampled every 20 ms) in total and above the warm pools.
#
#   tests/bench/fleet_bench.sh [BUILD_DIR]     # default build/release, else build/default
#   SITES=100 REVISIONS=20 PARALLEL="1 4 8 16" OUT=fleet_bench.dat
#
# Writes a data file ($OUT: parallel wall_s fleet_s speedup peak peak_above_warm)
# and, with gnuplot installed and PLOT set, a PNG of time against parallelism.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=${1:-$root/build/release}
[ -x "$build/service/schemad" ] || build=$root/build/default
sites=${SITES:-100}
revisions=${REVISIONS:-20}
parallel_list=${PARALLEL:-1 4 8 16}
out_file=${OUT:-$PWD/fleet_bench.dat}
plot=${PLOT:-}
work=$(mktemp -d /tmp/schemad-fleetbench.XXXXXX)
chmod 755 "$work"
cluster=$work/pg
schemad_pid=
sampler_pid=
cleanup() {
  if [ -n "$sampler_pid" ]; then kill "$sampler_pid" 2>/dev/null || true; fi
  if [ -n "$schemad_pid" ]; then kill -TERM "$schemad_pid" 2>/dev/null || true; wait "$schemad_pid" 2>/dev/null || true; fi
  bash "$root/tests/testing/pg_cluster.sh" stop "$cluster" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

bash "$root/tests/testing/pg_cluster.sh" start "$cluster" >/dev/null
admin=$(bash "$root/tests/testing/pg_cluster.sh" dsn "$cluster")
base=${admin%/postgres}

mkdir -p "$work/set" "$work/dsn"
parent=
for i in $(seq -w 1 "$revisions"); do
  {
    echo "-- revision: r$i"
    [ -n "$parent" ] && echo "-- revises: $parent"
    printf '\n-- +upgrade\nCREATE TABLE t_r%s (id int PRIMARY KEY, v text);\nINSERT INTO t_r%s SELECT g, md5(g::text) FROM generate_series(1, 100) g;\n\n-- +downgrade\nDROP TABLE t_r%s;\n' "$i" "$i" "$i"
  } > "$work/set/r$i.sql"
  parent=r$i
done

{
  echo "listen: 127.0.0.1:0"
  echo "pools: {max_sessions_per_database: 2, min_idle_sessions: 1}"
  echo "migration_sets: [{name: fleet, directory: set}]"
  echo "databases:"
} > "$work/schemad.yaml"
for i in $(seq -w 1 "$sites"); do
  psql "$admin" -qc "CREATE DATABASE site_$i"
  (umask 077; echo "$base/site_$i" > "$work/dsn/site_$i")  # owner-only, as schemad wants
  echo "  - {name: site-$i, migration_set: fleet, dsn_file: dsn/site_$i, labels: {env: bench}}" >> "$work/schemad.yaml"
done

"$build/service/schemad" --config "$work/schemad.yaml" --log-level warn > "$work/out" 2> "$work/err" &
schemad_pid=$!
for _ in $(seq 200); do grep -q listening "$work/out" && break; sleep 0.05; done
address=$(sed -n 's/^schemad listening on //p' "$work/out")
sleep 2  # pools warm

backends() {
  psql "$admin" -Atqc "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE 'schemad%'"
}

reset_sites() {
  for i in $(seq -w 1 "$sites"); do
    psql "$base/site_$i" -qc 'DROP SCHEMA public CASCADE; CREATE SCHEMA public;' 2>/dev/null
  done
}

echo "# sites=$sites revisions=$revisions build=$(basename "$build") cores=$(nproc)" > "$out_file"
echo "# parallel wall_s fleet_s speedup peak_backends peak_above_warm" >> "$out_file"
printf '%-9s %8s %8s %8s %14s %16s\n' parallel wall_s fleet_s speedup peak_backends above_warm
seq_time=
for n in $parallel_list; do
  reset_sites
  sleep 1
  warm=$(backends)
  : > "$work/samples"
  ( while true; do backends >> "$work/samples"; sleep 0.02; done ) &
  sampler_pid=$!
  start=$(date +%s.%N)
  "$build/client/schemactl" --server "$address" --json fleet upgrade --selector env=bench \
    --parallel "$n" > "$work/result.json" 2> "$work/progress" || {
      echo "fleet upgrade failed at parallelism $n:" >&2; cat "$work/result.json" "$work/progress" >&2; exit 1; }
  end=$(date +%s.%N)
  kill "$sampler_pid"; wait "$sampler_pid" 2>/dev/null || true; sampler_pid=
  wall=$(echo "$end - $start" | bc -l)
  fleet=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["succeeded"]==int(sys.argv[2]), d; print(d["duration_ms"]/1000)' "$work/result.json" "$sites")
  peak=$(sort -n "$work/samples" | tail -1)
  [ -n "$seq_time" ] || seq_time=$wall
  speedup=$(echo "$seq_time / $wall" | bc -l)
  printf '%-9s %8.2f %8.2f %8.2f %14s %16s\n' "$n" "$wall" "$fleet" "$speedup" "$peak" "$((peak - warm))"
  printf '%s %.3f %.3f %.3f %s %s\n' "$n" "$wall" "$fleet" "$speedup" "$peak" "$((peak - warm))" >> "$out_file"
done

if [ -n "$plot" ] && command -v gnuplot >/dev/null; then
  gnuplot <<GP
set terminal png size 800,500
set output "$plot"
set title "schemad fleet upgrade: $sites sites x $revisions revisions"
set xlabel "max parallel sites"
set ylabel "total time (s)"
set y2label "speedup over parallelism 1"
set ytics nomirror
set y2tics
set xtics (1, 4, 8, 16)
set grid
set key top center
plot "$out_file" using 1:2 with linespoints lw 2 pt 7 title "time (s)", \
     "$out_file" using 1:4 axes x1y2 with linespoints lw 2 pt 5 dt 2 title "speedup"
GP
  echo "plot: $plot"
fi
