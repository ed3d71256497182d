#!/usr/bin/env bash
# Sluice's benchmark (issues 8 and 21): Sluice against what a user would do by hand, side by
# side in the same run, every case several times, medians. Starts what it needs (the local
# stack's PostgreSQL, plus a moto server of its own on :5100, bench/moto_server.py, so that
# gigabytes of objects and the benchmark's request rates never meet the test suite's moto),
# builds the release binaries, generates the data deterministically under $SLUICE_BENCH_DIR
# (default /var/tmp/sluice-bench, never in the repository), prints a table, writes the figures
# to bench/results.json (bench/results.py: one object per case) and, when every case ran or
# --out is given, a report (default BENCHMARKS.md at the repository root).
#
#   bench/run.sh                  every case at the issue's sizes, 3 runs per case (over an hour)
#   bench/run.sh --cases 4,4b,4c  a selection (see --help for the names)
#   bench/run.sh --scale 0.01 --runs 1 --cases 2,2b,4,4b,4c,5,7,rss   the scripts at small sizes
#   bench/run.sh --quick          a tenth of the sizes, no 1 GB case, no profile: minutes
#   SLUICE_BENCH_WORKER_ARGS="--batch-files 8" bench/run.sh --cases 4b   every worker run gets
#                                 these arguments too (e.g. to compare with and without batching)
#
# Cases (the issues' numbering; each a ratio of two medians measured in the same run):
#   1   psql \copy of the full-load file into the typed table with its primary key (case 2's
#       baseline: runs whenever case 2 does)
#   2   Sluice: the same file in S3, one message, one worker, until committed and `loaded`
#   2b  the same rows with six more columns (character(3), an enum, time, interval, integer[],
#       text[]): Sluice vs psql \copy of the same file into the same table
#   3   the floor: the same object read from the local S3 to nowhere
#   4   CDC: Sluice applying 200,000 operations in 10 files vs psql \copy of the files into a
#       staging table + one MERGE
#   4b  the same operations in 100 files, vs the same hand MERGE (\copy of the 100 files)
#   4c  the same operations in one file, vs the same hand MERGE (\copy of the one file)
#   5   many small files by 1, 2, 4 workers vs a bare loop of the same AWS calls per file (the
#       queue is fed during the drain, 24 messages ahead: moto's SQS slows with queue length)
#   6   a coordinator pass over many objects, a few new, vs a bare listing of the prefix
#   7   a full load of the same number of rows in 4 DMS files LOAD00000001..4 of one table into
#       an empty table vs psql \copy of the 4 files, one after another, into the table with its key
#   rss peak RSS of a worker (--concurrency 4) on a 1 GB file and three others at once
#   perf a CPU profile (perf, cpu-clock) of the worker and its PostgreSQL backend in cases 2, 4
# No timed assertion anywhere: the targets are reported, met or not.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ALL_CASES=2,2b,3,4,4b,4c,5,6,7,rss,perf

usage() {
  cat <<'EOF'
usage: bench/run.sh [options]
  --cases LIST        the cases to run, comma-separated, of 2,2b,3,4,4b,4c,5,6,7,rss,perf
                      (default: all; case 1 runs with case 2, as its baseline)
  --scale F           every size times F (rows, CDC operations, small files, objects of case 6,
                      rows of the 1 GB file; file counts stay): e.g. 0.01 to check the scripts
  --runs N            runs per timed case; the median is reported (default 3)
  --rows N            rows of the full-load file (default 1000000, about 230 MB)
  --cdc-ops N         operations of the CDC stream (default 200000)
  --cdc-files N       files of case 4's CDC stream (default 10; 4b: 100, 4c: 1)
  --small-files N     files of case 5 (default 2000)
  --small-rows N      rows per small file (default 50)
  --workers "1 2 4"   worker counts of case 5
  --many N            objects of case 6 (default 100000)
  --many-new N        of which new at the timed pass (default 1000)
  --big-rows N        rows of the 1 GB file of the RSS case (default 4500000)
  --no-big            leave out the RSS case
  --no-perf           leave out the profiles
  --quick             --scale 0.1, no RSS case, no profiles
  --out FILE          write the report there (default BENCHMARKS.md, written only when every
                      case ran; with a selection, only when --out is given)
  --results FILE      where the figures go as JSON (default bench/results.json)
  --keep-moto         leave the benchmark's moto server running at the end
  --case6-only        the same as --cases 6
  --cases-1-4         the same as --cases 2,3,4
environment:
  SLUICE_BENCH_WORKER_ARGS   more arguments for every `sluice-worker run` (split at spaces)
  SLUICE_BENCH_DIR           data, logs and measurements (default /var/tmp/sluice-bench)
  SLUICE_BENCH_MOTO_PORT     the benchmark's moto (default 5100)
EOF
}

RUNS=3 SCALE=1 SMALL_ROWS=50 WORKER_COUNTS="1 2 4" CDC_FILES=10 CASES=$ALL_CASES SELECTED=0
ROWS="" CDC_OPS="" SMALL_FILES="" MANY="" MANY_NEW="" BIG_ROWS="" NO_BIG=0 NO_PERF=0
OUT="$ROOT/BENCHMARKS.md" OUT_GIVEN=0 KEEP_MOTO=0 RESULTS_JSON="$ROOT/bench/results.json"
ARGS="$*"
while [ $# -gt 0 ]; do
  case "$1" in
    --cases) CASES=$2 SELECTED=1; shift ;;
    --scale) SCALE=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    --rows) ROWS=$2; shift ;;
    --cdc-ops) CDC_OPS=$2; shift ;;
    --cdc-files) CDC_FILES=$2; shift ;;
    --small-files) SMALL_FILES=$2; shift ;;
    --small-rows) SMALL_ROWS=$2; shift ;;
    --workers) WORKER_COUNTS=$2; shift ;;
    --many) MANY=$2; shift ;;
    --many-new) MANY_NEW=$2; shift ;;
    --big-rows) BIG_ROWS=$2; shift ;;
    --no-big) NO_BIG=1 ;;
    --no-perf) NO_PERF=1 ;;
    --quick) SCALE=0.1 NO_BIG=1 NO_PERF=1 ;;
    --out) OUT=$2 OUT_GIVEN=1; shift ;;
    --results) RESULTS_JSON=$2; shift ;;
    --keep-moto) KEEP_MOTO=1 ;;
    --case6-only) CASES=6 SELECTED=1 ;;
    --cases-1-4) CASES=2,3,4 SELECTED=1 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac
case "$RESULTS_JSON" in /*) ;; *) RESULTS_JSON="$ROOT/$RESULTS_JSON" ;; esac
for c in ${CASES//,/ }; do
  [[ ",$ALL_CASES," == *",$c,"* ]] || { echo "unknown case: $c (cases: $ALL_CASES)" >&2; exit 2; }
done
[ "$NO_BIG" = 1 ] && CASES=$(tr ',' '\n' <<<"$CASES" | { grep -vx rss || true; } | paste -sd, -)
[ "$NO_PERF" = 1 ] && CASES=$(tr ',' '\n' <<<"$CASES" | { grep -vx perf || true; } | paste -sd, -)
has() { [[ ",$CASES," == *",$1,"* ]]; }
any() { local c; for c in "$@"; do has "$c" && return 0; done; return 1; }
# A size: as given, else the issue's size times --scale (at least `min`).
scaled() { awk -v b="$1" -v s="$SCALE" -v m="${2:-1}" 'BEGIN { v = int(b * s + 0.5); print (v < m) ? m : v }'; }
ROWS=${ROWS:-$(scaled 1000000 100)}
CDC_OPS=${CDC_OPS:-$(scaled 200000 100)}
SMALL_FILES=${SMALL_FILES:-$(scaled 2000 10)}
MANY=${MANY:-$(scaled 100000 100)}
MANY_NEW=${MANY_NEW:-$(scaled 1000 10)}
BIG_ROWS=${BIG_ROWS:-$(scaled 4500000 100)}
# Every case ran: the report goes to BENCHMARKS.md unless --out says otherwise.
REPORT=$OUT_GIVEN
[ "$SELECTED" = 0 ] && [ "$NO_BIG" = 0 ] && [ "$NO_PERF" = 0 ] && REPORT=1
WORKER_ARGS="${SLUICE_BENCH_WORKER_ARGS:-}"

DATA="${SLUICE_BENCH_DIR:-/var/tmp/sluice-bench}"
MOTO_PORT="${SLUICE_BENCH_MOTO_PORT:-5100}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sluice-target}"
BIN="$CARGO_TARGET_DIR/release"
BENCH="$BIN/sluice-bench"
BUCKET=sluice-bench
RES="$DATA/results.txt"
WINDOW=24  # case 5: messages queued ahead of the files done (4 workers x 4 slots hold 16)
LOGS="$DATA/logs"
COLS="id, customer_id, status, quantity, unit_price, discount, total, currency, created_at, updated_at, ship_date, note, address"
COLS_WIDE="$COLS, code, state, pickup, lead, sizes, tags"
CASES_TSV="$DATA/cases.tsv"
mkdir -p "$DATA" "$LOGS"
: >"$RES"
: >"$CASES_TSV"
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)

say() { printf '\n== %s\n' "$*" >&2; }
# A value of a `name=value` line.
field() { tr ' ' '\n' <<<"$2" | sed -n "s/^$1=//p"; }
record() { echo "$1 $2" >>"$RES"; }
values() { awk -v k="$1" '$1 == k { print $2 }' "$RES" | paste -sd' ' -; }
median() {
  awk -v k="$1" '$1 == k { v[n++] = $2 } END {
    if (n == 0) { print "n/a"; exit }
    for (i = 0; i < n; i++) for (j = i + 1; j < n; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    print (n % 2) ? v[(n - 1) / 2] : (v[n / 2 - 1] + v[n / 2]) / 2 }' "$RES"
}
last() { awk -v k="$1" '$1 == k { v = $2 } END { print (v == "" ? "n/a" : v) }' "$RES"; }
calc() { awk "BEGIN { printf \"$1\", $2 }"; }
now() { date +%s.%N; }
since() { calc %.3f "$(now) - $1"; }

# ---------------------------------------------------------------------------------------------
say "building release binaries (sluice-worker, sluice-coordinator, sluice-bench)"
cargo build --release -q -p sluice-worker -p sluice-coordinator -p sluice-bench

say "local services"
infra/local/stack.sh up
cp "$(infra/local/stack.sh envfile)" "$DATA/env"
# shellcheck disable=SC1091
. "$DATA/env"
# The benchmark's own moto, fresh each run (a server this script started earlier is stopped).
moto_up() { curl -fsS -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" 2>/dev/null; }
if [ -f "$DATA/moto.pid" ]; then
  kill "$(cat "$DATA/moto.pid")" 2>/dev/null || true
  rm -f "$DATA/moto.pid"
fi
for _ in $(seq 1 40); do moto_up || break; sleep 0.25; done
if moto_up; then echo "something else answers on :$MOTO_PORT; set SLUICE_BENCH_MOTO_PORT" >&2; exit 1; fi
# moto as the stack runs it, except that a Query on a table's key reads one partition (see the file).
nohup python3 bench/moto_server.py -H 127.0.0.1 -p "$MOTO_PORT" >"$DATA/moto.log" 2>&1 &
MOTO_PID=$!
echo "$MOTO_PID" >"$DATA/moto.pid"
stop_moto() {
  if [ "$KEEP_MOTO" = 0 ] && [ -f "$DATA/moto.pid" ]; then
    kill "$(cat "$DATA/moto.pid")" 2>/dev/null || true
    rm -f "$DATA/moto.pid"
  fi
}
trap stop_moto EXIT
for sig in HUP INT TERM; do
  # shellcheck disable=SC2064
  trap "echo 'run.sh: stopped by SIG$sig' >&2; exit 1" "$sig"
done
for _ in $(seq 1 120); do moto_up && break; sleep 0.25; done
kill -0 "$MOTO_PID" 2>/dev/null && moto_up || { echo "moto did not start; see $DATA/moto.log" >&2; exit 1; }
export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
export SLUICE_STATE_SCHEMA=bench_state SLUICE_LOG_FORMAT=json RUST_LOG=warn

q() { PGTZ=UTC psql -X -q -v ON_ERROR_STOP=1 "$SLUICE_DATABASE_URL" "$@"; }
checkpoint() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- psql -X -q -p "$SLUICE_PG_PORT" -c CHECKPOINT >/dev/null
  else
    sudo -u postgres psql -X -q -p "$SLUICE_PG_PORT" -c CHECKPOINT >/dev/null
  fi
}
ddl() {
  cat <<SQL
CREATE TABLE $1 (
  id          bigint PRIMARY KEY,
  customer_id integer NOT NULL,
  status      text NOT NULL,
  quantity    integer,
  unit_price  numeric(12,2),
  discount    numeric(5,4),
  total       numeric(14,2),
  currency    text,
  created_at  timestamp,
  updated_at  timestamptz,
  ship_date   date,
  note        text,
  address     text
);
SQL
}
# Case 2b's table: the same, and six more columns whose types the direct path's binary list
# lacked when the case was written (bench_types.order_state is an enum).
ddl_wide() {
  ddl "$1" | sed 's/^  address     text$/  address     text,\
  code        character(3),\
  state       bench_types.order_state NOT NULL,\
  pickup      time,\
  lead        interval,\
  sizes       integer[],\
  tags        text[]/'
}
# Row count and a digest of the user columns, row by row in key order (system columns left
# out); the columns are case 4's unless given.
digest() { q -At -c "SELECT count(*) || ' ' || coalesce(md5(string_agg(md5(ROW(${2:-$COLS})::text), '' ORDER BY id)), '-') FROM $1"; }
# Records whether two digests agree, for case $1 of results.json; prints both.
same() {
  local verdict=no
  [ "$2" = "$3" ] && verdict=yes
  record "same_$1" "$verdict"
  echo "case $1: sluice $2; by hand $3; identical: $verdict" >&2
}
# One case of results.json: case, kind (time | rate | rss), key, baseline key (- for none),
# target operator and value (- for none), what, baseline what (see bench/results.py).
case_result() {
  local cmd="bench/run.sh --cases $1 --runs $RUNS"
  [ "$SCALE" = 1 ] || cmd="$cmd --scale $SCALE"
  [ -z "$WORKER_ARGS" ] || cmd="SLUICE_BENCH_WORKER_ARGS='$WORKER_ARGS' $cmd"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$@" "$cmd" >>"$CASES_TSV"
}

# A fresh manifest table and queue (with its DLQ) for one trial.
fresh_queue() {
  export SLUICE_MANIFEST_TABLE="bench-$1"
  local out
  out=$("$BIN/sluice-coordinator" bootstrap --create-queue "bench-$1")
  SLUICE_QUEUE_URL=$(sed -n 's/^queue: //p' <<<"$out")
  export SLUICE_QUEUE_URL
}
# One coordinator pass over a source; checks how many messages it sent.
scan() {
  local out sent
  out=$(SLUICE_SOURCE="s3://$BUCKET/$1" "$BIN/sluice-coordinator" scan --json)
  sent=$(grep -o '"sent": *[0-9]*' <<<"$out" | grep -o '[0-9]*$')
  [ "$sent" = "$2" ] || { echo "scan of $1 sent $sent messages, expected $2: $out" >&2; exit 1; }
}
drive() {
  local log=$1; shift
  "$BENCH" drive --worker "$BIN/sluice-worker" --queue-url "$SLUICE_QUEUE_URL" \
    --manifest-table "$SLUICE_MANIFEST_TABLE" --log-dir "$LOGS/$log" --moto-pid "$MOTO_PID" \
    --worker-args "$WORKER_ARGS" "$@"
}
# Sluice loading the files under a prefix through a queue and manifest of their own: one pass
# (which must send <files> messages), a checkpoint, then the workers until every file is loaded.
sluice_load() { # name, prefix, files, drive options...
  local name=$1 prefix=$2 files=$3; shift 3
  fresh_queue "$name"
  scan "$prefix" "$files"
  checkpoint
  drive "$name" --expect "$files" "$@"
}

# ---------------------------------------------------------------------------------------------
say "data (deterministic; regenerated only when the sizes change) in $DATA; cases: $CASES"
gen() { # name, command...: runs the command unless it ran with the same arguments; its output is kept
  local stamp="$DATA/.$1.stamp" output="$DATA/.$1.out" want="$*"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
  shift
  echo "generating: $*" >&2
  "$@" | tee "$output" >&2
  echo "$want" >"$stamp"
}
# CDC streams: the same operations (one generator, the same seed) cut into 10, 100 or 1 files.
gen_cdc() { # name, files
  gen "$1" bash -c "rm -rf '$DATA/$1' && '$BENCH' gen-cdc --ops $CDC_OPS --files $2 --base-rows $ROWS --out '$DATA/$1'"
}
# Case 7: the rows of a full load in 4 files, ids 1..ROWS.
MULTI_FILES=4
gen_multi() {
  local k from=1 n
  rm -rf "$DATA/multi" && mkdir -p "$DATA/multi"
  for k in $(seq "$MULTI_FILES"); do
    n=$((ROWS / MULTI_FILES + (k <= ROWS % MULTI_FILES ? 1 : 0)))
    "$BENCH" gen-load --rows "$n" --start-id "$from" --out "$DATA/multi/LOAD0000000$k.csv"
    from=$((from + n))
  done
}
any 2 3 4 4b 4c perf && gen orders "$BENCH" gen-load --rows "$ROWS" --out "$DATA/orders.csv"
any 4 perf && gen_cdc cdc "$CDC_FILES"
has 4b && gen_cdc cdc100 100
has 4c && gen_cdc cdc1 1
has 2b && gen wide "$BENCH" gen-load --rows "$ROWS" --wide --out "$DATA/wide.csv"
has 7 && gen multi gen_multi "$ROWS" "$MULTI_FILES"
has 5 && gen small bash -c "rm -rf '$DATA/small' && '$BENCH' gen-cdc --ops $((SMALL_FILES * SMALL_ROWS)) --files $SMALL_FILES --out '$DATA/small'"
if has rss; then
  gen big "$BENCH" gen-load --rows "$BIG_ROWS" --start-id 10000001 --out "$DATA/big.csv"
  for i in 2 3 4; do
    gen "big$i" "$BENCH" gen-load --rows "$ROWS" --start-id $((i * 10000000 + 1)) --out "$DATA/big$i.csv"
  done
fi
LOAD_BYTES=$( (cat "$DATA/orders.csv" 2>/dev/null || true) | wc -c)
CDC_BYTES=$(cat "$DATA"/cdc/*.csv 2>/dev/null | wc -c || true)
# What a CDC stream holds, as its generator counted it.
ops_of() {
  local out
  out=$(cat "$DATA/.$1.out" 2>/dev/null || true)
  echo "$(field inserts "$out") inserts, $(field updates "$out") updates, $(field deletes "$out") deletes"
}
ops_mix=$(ops_of cdc)

say "uploading to s3://$BUCKET (moto on :$MOTO_PORT)"
if any 2 3 4 4b 4c perf; then
  "$BENCH" put --bucket "$BUCKET" --key full/bench/orders/LOAD00000001.csv --file "$DATA/orders.csv" >/dev/null
fi
any 4 perf && "$BENCH" put-dir --bucket "$BUCKET" --prefix cdc/bench/orders/ --dir "$DATA/cdc" >/dev/null
has 4b && "$BENCH" put-dir --bucket "$BUCKET" --prefix cdc100/bench/orders/ --dir "$DATA/cdc100" >/dev/null
has 4c && "$BENCH" put-dir --bucket "$BUCKET" --prefix cdc1/bench/orders/ --dir "$DATA/cdc1" >/dev/null
has 2b && "$BENCH" put --bucket "$BUCKET" --key wide/bench/wide_orders/LOAD00000001.csv --file "$DATA/wide.csv" >/dev/null
has 7 && "$BENCH" put-dir --bucket "$BUCKET" --prefix multi/bench/multi_orders/ --dir "$DATA/multi" >/dev/null
has 5 && "$BENCH" put-dir --bucket "$BUCKET" --prefix small/bench/small_orders/ --dir "$DATA/small" --parallel 32 >/dev/null

if any 2 2b 3 4 4b 4c 5 7 rss perf; then
  q >/dev/null <<SQL
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS bench, bench_copy, bench_hand, bench_snap, bench_state, bench_types CASCADE;
CREATE SCHEMA bench; CREATE SCHEMA bench_copy; CREATE SCHEMA bench_hand; CREATE SCHEMA bench_snap;
CREATE SCHEMA bench_types;
CREATE TYPE bench_types.order_state AS ENUM ('new', 'open', 'held', 'closed');
$(ddl bench_copy.orders)
SQL
fi
# A Sluice target created anew (by its DDL function, `ddl` unless named), with no bookkeeping
# schema: every run starts from an empty table that Sluice has never seen.
fresh_table() { # table, DDL function
  q >/dev/null <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS $1;
DROP SCHEMA IF EXISTS bench_state CASCADE;
$("${2:-ddl}" "$1")
SQL
}
# The orders table of Sluice's cases, empty, with a fresh state schema (ledger).
reset_orders() { fresh_table bench.orders; }
copy_orders() { # table, file
  q -c "TRUNCATE $1"
  checkpoint
  local t0
  t0=$(now)
  q -c "\\copy $1 FROM '$2' WITH (FORMAT csv, NULL 'NULL')"
  since "$t0"
}
# Files a run's workers loaded by the direct path (their `file loaded` lines say path=).
direct_files() { cat "$LOGS/$1"/worker-*.log | grep '"file loaded"' | grep -c '"path":"direct"' || true; }

# ---------------------------------------------------------------------------------------------
if any 2 3; then
  say "case 1: psql \\copy of $ROWS rows into the typed table with its primary key"
  for r in $(seq "$RUNS"); do
    record c1 "$(copy_orders bench_copy.orders "$DATA/orders.csv")"
    echo "run $r: $(last c1) s" >&2
  done
fi

# ---------------------------------------------------------------------------------------------
if has 2; then
  say "case 2: Sluice, the same file from S3, one message, one worker"
  for r in $(seq "$RUNS"); do
    reset_orders
    out=$(sluice_load "full-$r" full/ 1)
    record c2 "$(field secs "$out")"
    for k in peak_rss_kb copy_ms merge_ms commit_ms worker_cpu pg_cpu moto_cpu; do record "c2_$k" "$(field $k "$out")"; done
    echo "run $r: $out; direct: $(direct_files "full-$r") of 1" >&2
  done
  same 2 "$(digest bench.orders)" "$(digest bench_copy.orders)"
  case_result 2 time c2 c1 "<=" 0.8 "Sluice: the full-load file ($ROWS rows, $LOAD_BYTES bytes) from S3, one message, one worker, until committed and loaded" "psql \\copy into the typed table with its primary key (case 1)"
fi

# ---------------------------------------------------------------------------------------------
# The state cases 4, 4b and 4c start from: the loaded table, as if its full load ran the day
# before the CDC (Sluice's with its system columns, and the same rows by \copy for the hand
# MERGE). Case 2 leaves both; without it, one untimed load of each.
if any 4 4b 4c perf; then
  if ! has 2; then
    say "the table the CDC cases start from: one untimed load by Sluice and one by \\copy"
    reset_orders
    fresh_queue snap
    scan full/ 1
    drive snap --expect 1 >/dev/null
    copy_orders bench_copy.orders "$DATA/orders.csv" >/dev/null
  fi
  q >/dev/null <<SQL
CREATE TABLE bench_snap.orders AS SELECT * FROM bench.orders;
CREATE TABLE bench_snap.orders_plain AS SELECT * FROM bench_copy.orders;
SQL
fi
# Sluice's orders table back as case 2 left it, versions set to the day before the CDC.
restore_orders() {
  q >/dev/null <<SQL
SET client_min_messages = warning;
TRUNCATE bench.orders;
DROP SCHEMA IF EXISTS bench_state CASCADE;
INSERT INTO bench.orders ($COLS, _sluice_version, _sluice_file_time, _sluice_record, _sluice_file)
  SELECT $COLS, '2024-12-31 00:00:00+00', '2024-12-31 00:00:00+00', _sluice_record, _sluice_file FROM bench_snap.orders;
VACUUM ANALYZE bench.orders;
SQL
}

# ---------------------------------------------------------------------------------------------
if has 3; then
  say "case 3: the floor, GetObject of the same $LOAD_BYTES bytes to nowhere"
  for r in $(seq "$RUNS"); do
    out=$("$BENCH" read --bucket "$BUCKET" --key full/bench/orders/LOAD00000001.csv)
    record c3 "$(field secs "$out")"
    echo "run $r: $out" >&2
  done
  case_result 3 time c3 c1 - - "the floor: GetObject of the same object to nowhere" "psql \\copy (case 1)"
fi

# ---------------------------------------------------------------------------------------------
# The hand MERGE of a directory of CDC files: \copy of every file into a staging table, then one
# MERGE of each key's last operation.
hand_merge_sql() {
  local f sets
  echo "BEGIN;"
  echo "CREATE TEMP TABLE stage (seq bigint GENERATED ALWAYS AS IDENTITY, op text, LIKE bench_hand.orders) ON COMMIT DROP;"
  for f in "$1"/*.csv; do
    echo "\\copy stage (op, $COLS) FROM '$f' WITH (FORMAT csv, NULL 'NULL')"
  done
  sets=$(tr -d ' ' <<<"$COLS" | tr ',' '\n' | grep -v '^id$' | sed 's/.*/& = s.&/' | paste -sd, -)
  cat <<SQL
MERGE INTO bench_hand.orders AS t
USING (SELECT DISTINCT ON (id) * FROM stage ORDER BY id, seq DESC) AS s ON t.id = s.id
WHEN MATCHED AND s.op = 'D' THEN DELETE
WHEN MATCHED THEN UPDATE SET $sets
WHEN NOT MATCHED AND s.op <> 'D' THEN INSERT ($COLS) VALUES ($(sed 's/[a-z_]\+/s.&/g' <<<"$COLS"));
COMMIT;
SQL
}
if any 4 4b 4c; then
  q -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS bench_hand.orders" -c "$(ddl bench_hand.orders)"
fi
# One CDC case: Sluice applying the files under <name>/ against the hand MERGE of the same files,
# run after run, each from the same table.
cdc_case() { # case, name (data folder and S3 prefix), files, target
  local c=$1 name=$2 files=$3 hand="$DATA/hand_merge_$2.sql" r out ops_mix
  ops_mix=$(ops_of "$name")
  say "case $c: CDC, $CDC_OPS operations in $files files ($ops_mix) on the $ROWS-row table"
  hand_merge_sql "$DATA/$name" >"$hand"
  for r in $(seq "$RUNS"); do
    restore_orders
    out=$(sluice_load "$name-$r" "$name/" "$files")
    record "c${c}s" "$(field secs "$out")"
    for k in peak_rss_kb copy_ms merge_ms commit_ms worker_cpu pg_cpu rows_superseded; do record "c${c}s_$k" "$(field $k "$out")"; done
    echo "run $r sluice: $out" >&2
    q >/dev/null <<SQL
TRUNCATE bench_hand.orders;
INSERT INTO bench_hand.orders SELECT * FROM bench_snap.orders_plain;
VACUUM ANALYZE bench_hand.orders;
SQL
    checkpoint
    local t0
    t0=$(now)
    q -f "$hand"
    record "c${c}h" "$(since "$t0")"
    echo "run $r hand merge: $(last "c${c}h") s" >&2
  done
  same "$c" "$(digest bench.orders)" "$(digest bench_hand.orders)"
  local in_files="$files files" the_files="the $files files"
  [ "$files" = 1 ] && in_files="one file" the_files="the file"
  case_result "$c" time "c${c}s" "c${c}h" "<=" "$4" "Sluice applying $CDC_OPS CDC operations ($ops_mix) in $in_files to the $ROWS-row table" "psql \\copy of $the_files into a staging table + one MERGE"
}
has 4 && cdc_case 4 cdc "$CDC_FILES" 1.0
has 4b && cdc_case 4b cdc100 100 1.2
has 4c && cdc_case 4c cdc1 1 1.0

# ---------------------------------------------------------------------------------------------
if has 2b; then
  say "case 2b: $ROWS rows with character(3), enum, time, interval, integer[] and text[] columns"
  q -c "SET client_min_messages = warning" -c "$(ddl_wide bench_copy.wide_orders)" >/dev/null
  for r in $(seq "$RUNS"); do
    record c2bh "$(copy_orders bench_copy.wide_orders "$DATA/wide.csv")"
    fresh_table bench.wide_orders ddl_wide
    out=$(sluice_load "wide-$r" wide/ 1)
    record c2bs "$(field secs "$out")"
    record c2b_direct "$(direct_files "wide-$r")"
    echo "run $r: \\copy $(last c2bh) s; sluice: $out; direct: $(last c2b_direct) of 1" >&2
  done
  same 2b "$(digest bench.wide_orders "$COLS_WIDE")" "$(digest bench_copy.wide_orders "$COLS_WIDE")"
  case_result 2b time c2bs c2bh "<=" 0.8 "Sluice: $ROWS rows with six more columns (character(3), enum, time, interval, integer[], text[]), one file, one worker" "psql \\copy of the same file into the same table"
fi

# ---------------------------------------------------------------------------------------------
if has 7; then
  say "case 7: a full load of $ROWS rows in $MULTI_FILES files into an empty table"
  q -c "SET client_min_messages = warning" -c "$(ddl bench_copy.multi_orders)" >/dev/null
  multi_sql="$DATA/multi_copy.sql"
  for f in "$DATA"/multi/LOAD*.csv; do
    echo "\\copy bench_copy.multi_orders FROM '$f' WITH (FORMAT csv, NULL 'NULL')"
  done >"$multi_sql"
  for r in $(seq "$RUNS"); do
    q -c "TRUNCATE bench_copy.multi_orders"
    checkpoint
    t0=$(now)
    q -f "$multi_sql"
    record c7h "$(since "$t0")"
    fresh_table bench.multi_orders
    out=$(sluice_load "multi-$r" multi/ "$MULTI_FILES")
    record c7s "$(field secs "$out")"
    record c7_direct "$(direct_files "multi-$r")"
    echo "run $r: \\copy $(last c7h) s; sluice: $out; direct: $(last c7_direct) of $MULTI_FILES" >&2
  done
  same 7 "$(digest bench.multi_orders)" "$(digest bench_copy.multi_orders)"
  case_result 7 time c7s c7h "<=" 0.8 "Sluice: a full load of $ROWS rows in $MULTI_FILES LOAD files of one table into an empty table, one worker (--concurrency 4)" "psql \\copy of the $MULTI_FILES files, one after another, into the table with its primary key"
fi

# ---------------------------------------------------------------------------------------------
if has 5; then
  say "case 5: $SMALL_FILES CDC files of $SMALL_ROWS rows; workers: $WORKER_COUNTS"
  for n in $WORKER_COUNTS; do
    for r in $(seq "$RUNS"); do
      fresh_table bench.small_orders
      fresh_queue "small-$n-$r"
      checkpoint
      out=$(drive "small-$n-$r" --workers "$n" --feed-bucket "$BUCKET" --feed-prefix small/ --window "$WINDOW")
      secs=$(field secs "$out")
      record "c5s_secs_$n" "$secs"
      record "c5s_$n" "$(calc %.1f "$SMALL_FILES / $secs")"
      record "c5s_moto_$n" "$(calc %.0f "100 * $(field moto_cpu "$out") / $secs")"
      record "c5s_pg_$n" "$(calc %.0f "100 * $(field pg_cpu "$out") / $secs")"
      record "c5s_worker_$n" "$(calc %.0f "100 * $(field worker_cpu "$out") / $secs")"
      record "c5s_rss_$n" "$(field peak_rss_kb "$out")"
      echo "$n workers, run $r, sluice: $out" >&2
      fresh_queue "bare-$n-$r"
      out=$("$BENCH" bare --queue-url "$SLUICE_QUEUE_URL" --manifest-table "$SLUICE_MANIFEST_TABLE" \
        --loops "$n" --concurrency 4 --feed-bucket "$BUCKET" --feed-prefix small/ --window "$WINDOW" --moto-pid "$MOTO_PID")
      secs=$(field secs "$out")
      record "c5b_secs_$n" "$secs"
      record "c5b_$n" "$(calc %.1f "$SMALL_FILES / $secs")"
      record "c5b_moto_$n" "$(calc %.0f "100 * $(field moto_cpu "$out") / $secs")"
      echo "$n loops, run $r, bare: $out" >&2
    done
  done
  for n in $WORKER_COUNTS; do
    if [ "$n" = 1 ]; then
      case_result 5 rate c5s_secs_1 c5b_secs_1 ">=" 0.9 "Sluice draining $SMALL_FILES CDC files of $SMALL_ROWS rows, 1 worker (seconds; ratio: files/s over the bare loop's)" "bare loop of the same S3/SQS/DynamoDB calls per file, 1 loop"
    else
      case_result "5w$n" rate "c5s_secs_$n" "c5b_secs_$n" - - "the same, $n workers" "the bare loop, $n loops"
    fi
  done
fi

# ---------------------------------------------------------------------------------------------
CALLS="not run"
if has 6; then
say "case 6: coordinator pass over $MANY objects, $MANY_NEW new"
OLD=$((MANY - MANY_NEW))
t0=$(now)
"$BENCH" seed --bucket "$BUCKET" --prefix many/ --from 0 --to "$OLD" >&2
fresh_queue many
# The manifest of a drained backlog: the $OLD objects known and loaded (see lake.rs).
"$BENCH" seed-manifest --table "$SLUICE_MANIFEST_TABLE" --bucket "$BUCKET" --prefix many/ >&2
# ... and the listing checkpoints the pass that saw them left (computed here, not by a first
# pass, which reads every pair: on moto, 0.5 s per BatchGetItem of 100).
CHECKPOINTS="$DATA/many-checkpoints.jsonl"
"$BENCH" checkpoints --table "$SLUICE_MANIFEST_TABLE" --bucket "$BUCKET" --prefix many/ --save "$CHECKPOINTS" >&2
"$BENCH" seed --bucket "$BUCKET" --prefix many/ --from "$OLD" --to "$MANY" >&2
echo "set-up took $(since "$t0") s" >&2
reset_many() {
  "$BENCH" forget --table "$SLUICE_MANIFEST_TABLE" --prefix many/ --from "$OLD" --to "$MANY" >/dev/null
  "$BENCH" purge --queue-url "$SLUICE_QUEUE_URL" >/dev/null
  "$BENCH" checkpoints --table "$SLUICE_MANIFEST_TABLE" --bucket "$BUCKET" --prefix many/ --restore "$CHECKPOINTS" >/dev/null
}
# Every pass logs the SDK's requests (a few thousand lines at debug level, next to seconds of
# emulator time per call): run 1's log gives the pass's AWS calls.
PASS_LOG=sluice_coordinator=info,aws_smithy_runtime::client::orchestrator=debug,aws_sdk_s3=debug,aws_sdk_sqs=debug,aws_sdk_dynamodb=debug
moto_cpu() { awk '{ printf "%.2f", ($14 + $15) / 100 }' "/proc/$MOTO_PID/stat"; }
for r in $(seq "$RUNS"); do
  reset_many
  m0=$(moto_cpu)
  t0=$(now)
  out=$(SLUICE_SOURCE="s3://$BUCKET/many/" RUST_LOG=$PASS_LOG "$BIN/sluice-coordinator" scan --json \
    --log-format json 2>"$LOGS/many-pass-$r.log")
  record c6p "$(since "$t0")"
  record c6p_moto "$(calc %.1f "$(moto_cpu) - $m0")"
  grep -q "\"new\": *$MANY_NEW," <<<"$out" || { echo "pass found other than $MANY_NEW new: $out" >&2; exit 1; }
  record c6_read "$(sed -n 's/.*"read": *\([0-9]*\).*/\1/p' <<<"$out")"
  record c6_vouched "$(sed -n 's/.*"vouched": *\([0-9]*\).*/\1/p' <<<"$out")"
  m0=$(moto_cpu)
  out=$("$BENCH" list --bucket "$BUCKET" --prefix many/)
  record c6l "$(field secs "$out")"
  record c6l_moto "$(calc %.1f "$(moto_cpu) - $m0")"
  echo "run $r: pass $(last c6p) s (moto CPU $(last c6p_moto) s), listing $out (moto CPU $(last c6l_moto) s)" >&2
done
# Each kind of call, from the first one's start to the last one's end (calls of a kind run up
# to 16 at a time, and the pass's stages one after another).
CALLS=$(python3 - "$LOGS/many-pass-1.log" <<'PY'
import collections, datetime, json, sys
calls, first, last = collections.Counter(), {}, {}
def at(e):
    return datetime.datetime.fromisoformat(e["timestamp"].replace("Z", "+00:00")).timestamp()
for line in open(sys.argv[1]):
    try:
        e = json.loads(line)
    except ValueError:
        continue
    spans = (e.get("spans") or []) + [e.get("span") or {}]
    op = next((s for s in spans if "rpc.method" in s), None)
    if op is None:
        continue
    name = f"{op.get('rpc.service', '?')} {op.get('rpc.method', '?')}"
    t = at(e)
    first.setdefault(name, t)
    last[name] = t
    msg = str(e.get("fields", {}).get("message", e.get("message", "")))
    if msg.startswith("beginning attempt #1"):
        calls[name] += 1
order = sorted(calls, key=lambda k: first[k])
print("; ".join(f"{k}: {calls[k]} calls, {last[k] - first[k]:.1f} s" for k in order) or "not found in the log")
PY
)
echo "calls: $CALLS" >&2
case_result 6 time c6p c6l "<=" 0.2 "coordinator pass over $MANY objects, $MANY_NEW of them new" "bare ListObjectsV2 of the prefix"
fi

# ---------------------------------------------------------------------------------------------
if has rss; then
  say "RSS: one worker, --concurrency 4, a 1 GB file and three of $ROWS rows at once"
  "$BENCH" put --bucket "$BUCKET" --key big/bench/big_orders/LOAD00000001.csv --file "$DATA/big.csv" >/dev/null
  for i in 2 3 4; do
    "$BENCH" put --bucket "$BUCKET" --key "big/bench/big_orders/LOAD0000000$i.csv" --file "$DATA/big$i.csv" >/dev/null
  done
  BIG_BYTES=$(cat "$DATA"/big*.csv | wc -c)
  BIG_FILE_BYTES=$(stat -c %s "$DATA/big.csv")
  fresh_table bench.big_orders
  out=$(sluice_load big big/ 4 --concurrency 4)
  record big_secs "$(field secs "$out")"
  record big_rss "$(field peak_rss_kb "$out")"
  echo "$out" >&2
  q -c "DROP TABLE bench.big_orders" >/dev/null
  case_result rss rss big_secs - "<" 200 "one worker, --concurrency 4: a $BIG_ROWS-row file and three of $ROWS rows at once (seconds to load them)" -
fi

# ---------------------------------------------------------------------------------------------
PROFILE="$DATA/profile.txt"
: >"$PROFILE"
if has perf && perf record -e cpu-clock -o "$DATA/probe.perf" -- true >/dev/null 2>&1; then
  say "profiles: perf record -a -e cpu-clock during one more run of cases 2 and 4"
  top_symbols() { # perf data, pids
    perf report -i "$1" --pid "$2" --no-children --percentage relative --sort dso,sym --stdio >"$DATA/report.txt" 2>/dev/null || true
    grep -v '^#' "$DATA/report.txt" | grep -v '^$' | head -25 || true
  }
  profile_run() { # name, expected files, title
    local name=$1 pids="$DATA/$1.pgpids"
    : >"$pids"
    perf record -a -e cpu-clock -F 499 -o "$DATA/$name.perf" -- sleep 100000 2>/dev/null &
    local perf_pid=$!
    ( while kill -0 "$perf_pid" 2>/dev/null; do
        # This worker's connections: their statements name the benchmark's schemas (other
        # sessions' workers may share the cluster and the application name).
        q -At -c "SELECT pid FROM pg_stat_activity WHERE application_name = 'sluice-worker' AND query ~ 'bench'" >>"$pids" 2>/dev/null || true
        sleep 0.5
      done ) &
    local poll=$!
    out=$(drive "$name" --expect "$2")
    kill -INT "$perf_pid"; wait "$perf_pid" 2>/dev/null || true
    kill "$poll" 2>/dev/null || true; wait "$poll" 2>/dev/null || true
    local wpid pg
    wpid=$(field worker_pids "$out")
    pg=$(sort -u "$pids" | paste -sd, -)
    {
      echo "### $3: worker process (pid $wpid), top symbols by self time"
      echo '```'
      top_symbols "$DATA/$name.perf" "$wpid"
      echo '```'
      echo "### $3: its PostgreSQL backends (pids $pg), top symbols by self time"
      echo '```'
      top_symbols "$DATA/$name.perf" "$pg"
      echo '```'
    } >>"$PROFILE"
  }
  reset_orders
  fresh_queue full-perf
  scan full/ 1
  profile_run full-perf 1 "Case 2 (full load)"
  restore_orders
  fresh_queue cdc-perf
  scan cdc/ "$CDC_FILES"
  profile_run cdc-perf "$CDC_FILES" "Case 4 (CDC)"
else
  echo "perf not run (--no-perf, or perf cannot sample here)" >"$PROFILE"
fi


# ---------------------------------------------------------------------------------------------
say "figures"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
met() { awk "BEGIN { print ($1) ? \"met\" : \"missed\" }"; }
# One table for every case that ran, from the figures written to results.json.
table=$(python3 bench/results.py "$RES" "$CASES_TSV" "$RESULTS_JSON")
# Where Sluice's time went in the full-load and CDC cases: the worker's own phase timings
# (sums over a run's files), and CPU seconds.
breakdown=$(
  echo "| run | copy (download + parse + COPY) ms | merge ms | commit ms | worker CPU s | PostgreSQL CPU s | moto CPU s | peak RSS MB |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  for c in 2 4 4b 4c; do
    key=c${c}s
    [ "$c" = 2 ] && key=c2
    has "$c" || continue
    for i in $(seq "$RUNS"); do
      get() { awk -v k="$1" -v i="$i" '$1 == k { if (++n == i) print $2 }' "$RES"; }
      rss=$(get "${key}_peak_rss_kb")
      echo "| case $c, run $i | $(get "${key}_copy_ms") | $(get "${key}_merge_ms") | $(get "${key}_commit_ms") | $(get "${key}_worker_cpu") | $(get "${key}_pg_cpu") | $(get "${key}_moto_cpu") | $(calc %.0f "${rss:-0} / 1024") |"
    done
  done
)
small="Not run."
if has 5; then
  small=$(
    echo "| workers (x4 slots) | Sluice files/s (median) | runs | bare loop files/s | runs | Sluice / bare | target | moto CPU (Sluice, bare) | PostgreSQL CPU | workers' CPU | peak RSS |"
    echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
    for n in $WORKER_COUNTS; do
      s=$(median "c5s_$n") b=$(median "c5b_$n")
      rr=$(calc %.2f "$s / $b")
      target="" verdict=""
      [ "$n" = 1 ] && target=">= 0.90" verdict=$(met "$rr >= 0.9")
      echo "| $n | $s | $(values "c5s_$n") | $b | $(values "c5b_$n") | $rr | $target $verdict | $(median "c5s_moto_$n")%, $(median "c5b_moto_$n")% | $(median "c5s_pg_$n")% | $(median "c5s_worker_$n")% | $(calc %.0f "$(median "c5s_rss_$n") / 1024") MB |"
    done
  )
fi
big_line="Not run."
if has rss; then
  big_line="One worker, \`--concurrency 4\`, four full-load files at once: a $(calc %.2f "$BIG_FILE_BYTES / 1073741824") GiB file ($BIG_ROWS rows) and three of $ROWS rows ($(calc %.2f "$BIG_BYTES / 1073741824") GiB in all): peak RSS **$(calc %.0f "$(last big_rss) / 1024") MB** (target < 200 MB: $(met "$(last big_rss) < 204800")), loaded in $(last big_secs) s ($(calc %.1f "$BIG_BYTES / 1048576 / $(last big_secs)") MB/s)."
fi
paths=""
has 2b && paths="case 2b: $(values c2b_direct) of 1 file by the direct path (runs);"
has 7 && paths="$paths case 7: $(values c7_direct) of $MULTI_FILES files by the direct path (runs)"
RSS_MAX_KB=$(awk '$1 ~ /rss/ { if ($2 > m) m = $2 } END { print m + 0 }' "$RES")
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo "+changes")
summary="cases $CASES, $RUNS runs, scale $SCALE, commit $COMMIT, worker arguments '${WORKER_ARGS}', $STARTED_AT to $(date -u +%Y-%m-%dT%H:%M:%SZ); load average $LOAD_BEFORE at the start, $LOAD_AFTER at the end"

if [ "$REPORT" = 1 ]; then
  CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
  MEM=$(free -h | awk '/^Mem:/ { print $2 }')
  PGV=$(q -At -c "SHOW server_version")
  MOTOV=$(python3 -c 'import moto; print(moto.__version__)')
  RUSTV=$(rustc --version)
  PROFILES="Not run."
  [ -s "$DATA/profile.txt" ] && PROFILES=$(cat "$DATA/profile.txt")
  {
    cat <<MD
# Benchmarks

Written by \`bench/run.sh\` (issues 8 and 21); every figure below comes from one run of it, and
all the cases of a run are measured side by side on the same machine and services. Ratios, not
absolute times, are what to compare between machines. The same figures are in
\`bench/results.json\` (one object per case).

- **Command:** \`${WORKER_ARGS:+SLUICE_BENCH_WORKER_ARGS='$WORKER_ARGS' }bench/run.sh $ARGS\`
- **When:** $STARTED_AT to $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $COMMIT
- **Machine:** $(nproc) CPUs ($CPU_MODEL), $MEM memory, $(uname -sr); load average $LOAD_BEFORE at the start, $LOAD_AFTER at the end (the machine is shared: other builds and test suites ran on it meanwhile)
- **Services:** PostgreSQL $PGV (the local stack's cluster, default settings), moto $MOTOV (a server of the benchmark's own, on :$MOTO_PORT, started by \`bench/moto_server.py\`: a DynamoDB Query on a table's key reads that partition instead of sorting the whole table, as DynamoDB does; see the file), $RUSTV, release build
- **Data:** full-load file of $ROWS rows, $LOAD_BYTES bytes (integers, numerics, timestamps, text with quotes, commas, LF/CRLF newlines, tabs, backslashes, non-ASCII, empty strings and the string "NULL", SQL NULLs); case 2b: the same rows with six more columns; case 7: $ROWS other rows in $MULTI_FILES files; CDC stream of $CDC_OPS operations ($ops_mix) in $CDC_FILES files ($CDC_BYTES bytes), 100 files (4b) and one file (4c); $SMALL_FILES CDC files of $SMALL_ROWS rows; $MANY small objects. Generated by \`sluice-bench gen-load\` / \`gen-cdc\` (fixed seed); runs per case: $RUNS, medians reported.

## Results

$table

Rows: every Sluice table equals its baseline's, row for row over the user columns (count and md5 of every row's text in key order), where the table says "rows identical: yes". Paths: $paths

### Where the full-load and CDC cases spend their time (the worker's own phase timings, and CPU seconds)

$breakdown

### Case 5: many small files

$small

The queue is fed while a drain runs, at most $WINDOW messages ahead of the files done, for Sluice and for the bare loop alike: moto's SQS scans the whole queue on every \`ReceiveMessage\` and \`SendMessageBatch\` (measured on moto $MOTOV: a receive takes 30 ms with 40 messages queued, 1 s with 2,000; real SQS does not), so a queue holding all $SMALL_FILES messages would measure that scan. The messages are sent without manifest items; each worker's claim creates its item (the same single \`UpdateItem\` as for a queued item).
moto and PostgreSQL CPU are percentages of one core over the drain (moto is one Python process: about 100% is its ceiling); "workers' CPU" sums the worker processes.

### Case 6: coordinator pass

AWS calls of the pass (from the SDK's request log of run 1; each kind from its first call's start to its last call's end, up to 16 in flight): $CALLS.

Manifest pairs read (\`BatchGetItem\`) per pass: $(values c6_read) of $MANY listed; vouched for by the listing checkpoints (not read): $(values c6_vouched).

moto's CPU during the pass: $(values c6p_moto) s (runs), against $(values c6p) s of wall time; during the bare listing: $(values c6l_moto) s against $(values c6l) s.

### Memory

$big_line Highest peak RSS of any worker in any case of this run: $(calc %.0f "$RSS_MAX_KB / 1024") MB (every worker runs with \`--concurrency 4\`).

## Profiles

CPU samples (\`perf record -a -e cpu-clock -F 499\`, system-wide, then split by process: \`perf report --pid ... --no-children --percentage relative --sort dso,sym\`) during one more run of case 2 and of case 4. Self time per symbol, as a percentage of that process's (or those backends') samples.

$PROFILES

MD
    if [ -f "$ROOT/bench/analysis.md" ]; then
      echo "## Analysis"
      echo
      cat "$ROOT/bench/analysis.md"
    fi
  } >"$OUT"
fi

echo
echo "$summary"
echo
echo "$table"
echo
[ -n "$paths" ] && echo "paths: $paths" && echo
if any 2 4 4b 4c; then echo "$breakdown"; echo; fi
if has 5; then echo "$small"; echo; fi
if has 6; then echo "case 6 calls: $CALLS"; echo; fi
if has rss; then echo "memory: $big_line"; echo; fi
echo "figures written to $RESULTS_JSON"
if [ "$REPORT" = 1 ]; then echo "report written to $OUT"; fi
