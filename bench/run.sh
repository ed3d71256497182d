#!/usr/bin/env bash
# Sluice's benchmark (issue 8): Sluice against what a user would do by hand, side by side in the
# same run, every case several times, medians. Starts what it needs (the local stack's
# PostgreSQL, plus a moto server of its own on :5100, bench/moto_server.py, so that gigabytes of
# objects and the benchmark's request rates never meet the test suite's moto), builds the release binaries,
# generates the data deterministically under $SLUICE_BENCH_DIR (default /var/tmp/sluice-bench,
# never in the repository), prints a table and writes BENCHMARKS.md at the repository root.
#
#   bench/run.sh                  the issue's sizes, 3 runs per case (about an hour on 2 cores)
#   bench/run.sh --quick          a tenth of the sizes, no 1 GB case, no profile: minutes
#   bench/run.sh --runs 5 --rows 200000 --no-big --out /tmp/b.md ...   (see usage below)
#   bench/run.sh --cases-1-4      cases 1 to 4 alone (minutes): prints their figures, and
#                                 writes a report only to a file given by --out
#
# Cases (the issue's numbering):
#   1  psql \copy of the full-load file into the typed table with its primary key
#   2  Sluice: the same file in S3, one message, one worker, until committed and `loaded`
#   3  the floor: the same object read from the local S3 to nowhere
#   4  CDC: Sluice applying the CDC files vs psql \copy into a staging table + one MERGE
#   5  many small files by 1, 2, 4 workers vs a bare loop of the same AWS calls per file (the
#      queue is fed during the drain, 24 messages ahead: moto's SQS slows with queue length)
#   6  a coordinator pass over many objects, a few new, vs a bare listing of the prefix
#   +  peak RSS of a worker (--concurrency 4) on a 1 GB file and three others at once
#   +  a CPU profile (perf, cpu-clock) of the worker and its PostgreSQL backend in cases 2, 4
# No timed assertion anywhere: the targets are reported, met or not.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

usage() {
  cat <<'EOF'
usage: bench/run.sh [options]
  --runs N            runs per timed case; the median is reported (default 3)
  --rows N            rows of the full-load file (default 1000000, about 230 MB)
  --cdc-ops N         operations of the CDC stream (default 200000)
  --cdc-files N       files the CDC stream is written in (default 10)
  --small-files N     files of case 5 (default 2000)
  --small-rows N      rows per small file (default 50)
  --workers "1 2 4"   worker counts of case 5
  --many N            objects of case 6 (default 100000)
  --many-new N        of which new at the timed pass (default 1000)
  --big-rows N        rows of the 1 GB file of the RSS case (default 4500000)
  --no-big            skip the RSS case
  --no-perf           skip the profiles
  --quick             rows 100000, cdc-ops 20000, small-files 200, many 10000/100, no big, no perf
  --out FILE          where to write the report (default BENCHMARKS.md)
  --keep-moto         leave the benchmark's moto server running at the end
  --case6-only        only case 6 (the coordinator pass): prints its figures, writes no report
  --cases-1-4         only cases 1 to 4 (full load by \copy and by Sluice, the floor, CDC against
                      the hand MERGE; no case 5 or 6, no RSS case, no profile): prints their
                      figures, writes a report only when --out is given
EOF
}

RUNS=3 ROWS=1000000 CDC_OPS=200000 CDC_FILES=10 SMALL_FILES=2000 SMALL_ROWS=50
WORKER_COUNTS="1 2 4" MANY=100000 MANY_NEW=1000 BIG_ROWS=4500000 BIG=1 PERF=1
OUT="$ROOT/BENCHMARKS.md" OUT_GIVEN=0 KEEP_MOTO=0 ONLY6=0 ONLY14=0
ARGS="$*"
while [ $# -gt 0 ]; do
  case "$1" in
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
    --no-big) BIG=0 ;;
    --no-perf) PERF=0 ;;
    --quick) ROWS=100000 CDC_OPS=20000 SMALL_FILES=200 MANY=10000 MANY_NEW=100 BIG=0 PERF=0 ;;
    --out) OUT=$2 OUT_GIVEN=1; shift ;;
    --keep-moto) KEEP_MOTO=1 ;;
    --case6-only) ONLY6=1 ;;
    --cases-1-4) ONLY14=1 BIG=0 PERF=0 ;;
    -h|--help) usage; exit 0 ;;
    *) echo "unknown option: $1" >&2; usage >&2; exit 2 ;;
  esac
  shift
done
case "$OUT" in /*) ;; *) OUT="$ROOT/$OUT" ;; esac
if [ "$ONLY6" = 1 ] && [ "$ONLY14" = 1 ]; then echo "--case6-only and --cases-1-4 exclude each other" >&2; exit 2; fi

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
mkdir -p "$DATA" "$LOGS"
: >"$RES"
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
# Row count and a digest of the user columns, row by row in key order (system columns left out).
digest() { q -At -c "SELECT count(*) || ' ' || coalesce(md5(string_agg(md5(ROW($COLS)::text), '' ORDER BY id)), '-') FROM $1"; }

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
    --manifest-table "$SLUICE_MANIFEST_TABLE" --log-dir "$LOGS/$log" --moto-pid "$MOTO_PID" "$@"
}

# ---------------------------------------------------------------------------------------------
say "data (deterministic; regenerated only when the sizes change) in $DATA"
gen() { # name, command...: runs the command unless it ran with the same arguments; its output is kept
  local stamp="$DATA/.$1.stamp" output="$DATA/.$1.out" want="$*"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then return; fi
  shift
  echo "generating: $*" >&2
  "$@" | tee "$output" >&2
  echo "$want" >"$stamp"
}
gen orders "$BENCH" gen-load --rows "$ROWS" --out "$DATA/orders.csv"
gen cdc bash -c "rm -rf '$DATA/cdc' && '$BENCH' gen-cdc --ops $CDC_OPS --files $CDC_FILES --base-rows $ROWS --out '$DATA/cdc'"
if [ "$ONLY14" = 0 ]; then
  gen small bash -c "rm -rf '$DATA/small' && '$BENCH' gen-cdc --ops $((SMALL_FILES * SMALL_ROWS)) --files $SMALL_FILES --out '$DATA/small'"
fi
if [ "$BIG" = 1 ]; then
  gen big "$BENCH" gen-load --rows "$BIG_ROWS" --start-id 10000001 --out "$DATA/big.csv"
  for i in 2 3 4; do
    gen "big$i" "$BENCH" gen-load --rows "$ROWS" --start-id $((i * 10000000 + 1)) --out "$DATA/big$i.csv"
  done
fi
LOAD_BYTES=$(stat -c %s "$DATA/orders.csv")
CDC_BYTES=$(cat "$DATA"/cdc/*.csv | wc -c)
cdc_out=$(cat "$DATA/.cdc.out")
ops_mix="$(field inserts "$cdc_out") inserts, $(field updates "$cdc_out") updates, $(field deletes "$cdc_out") deletes"

if [ "$ONLY6" = 0 ]; then
say "uploading to s3://$BUCKET (moto on :$MOTO_PORT)"
"$BENCH" put --bucket "$BUCKET" --key full/bench/orders/LOAD00000001.csv --file "$DATA/orders.csv" >/dev/null
"$BENCH" put-dir --bucket "$BUCKET" --prefix cdc/bench/orders/ --dir "$DATA/cdc" >/dev/null
if [ "$ONLY14" = 0 ]; then
  "$BENCH" put-dir --bucket "$BUCKET" --prefix small/bench/small_orders/ --dir "$DATA/small" --parallel 32 >/dev/null
fi

q >/dev/null <<SQL
SET client_min_messages = warning;
DROP SCHEMA IF EXISTS bench, bench_copy, bench_hand, bench_snap, bench_state CASCADE;
CREATE SCHEMA bench; CREATE SCHEMA bench_copy; CREATE SCHEMA bench_hand; CREATE SCHEMA bench_snap;
$(ddl bench_copy.orders)
SQL

# ---------------------------------------------------------------------------------------------
say "case 1: psql \\copy of $ROWS rows into the typed table with its primary key"
for r in $(seq "$RUNS"); do
  q -c "TRUNCATE bench_copy.orders"
  checkpoint
  t0=$(now)
  q -c "\\copy bench_copy.orders FROM '$DATA/orders.csv' WITH (FORMAT csv, NULL 'NULL')"
  record c1 "$(since "$t0")"
  echo "run $r: $(last c1) s" >&2
done

# ---------------------------------------------------------------------------------------------
say "case 2: Sluice, the same file from S3, one message, one worker"
reset_orders() {
  q >/dev/null <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench.orders;
DROP SCHEMA IF EXISTS bench_state CASCADE;
$(ddl bench.orders)
SQL
}
for r in $(seq "$RUNS"); do
  reset_orders
  fresh_queue "full-$r"
  scan full/ 1
  checkpoint
  out=$(drive "full-$r" --expect 1)
  record c2 "$(field secs "$out")"
  for k in peak_rss_kb copy_ms merge_ms commit_ms worker_cpu pg_cpu moto_cpu; do record "c2_$k" "$(field $k "$out")"; done
  echo "run $r: $out" >&2
done
C1_DIGEST=$(digest bench_copy.orders)
C2_DIGEST=$(digest bench.orders)
IDENTICAL=no
[ "$C1_DIGEST" = "$C2_DIGEST" ] && IDENTICAL=yes
echo "psql: $C1_DIGEST; sluice: $C2_DIGEST; identical: $IDENTICAL" >&2
# The state case 4 starts from: the loaded table, as if its full load ran the day before the CDC.
q >/dev/null <<SQL
CREATE TABLE bench_snap.orders AS SELECT * FROM bench.orders;
CREATE TABLE bench_snap.orders_plain AS SELECT * FROM bench_copy.orders;
SQL

# ---------------------------------------------------------------------------------------------
say "case 3: the floor, GetObject of the same $LOAD_BYTES bytes to nowhere"
for r in $(seq "$RUNS"); do
  out=$("$BENCH" read --bucket "$BUCKET" --key full/bench/orders/LOAD00000001.csv)
  record c3 "$(field secs "$out")"
  echo "run $r: $out" >&2
done

# ---------------------------------------------------------------------------------------------
say "case 4: CDC, $CDC_OPS operations in $CDC_FILES files ($ops_mix) on the $ROWS-row table"
hand_sql="$DATA/hand_merge.sql"
{
  echo "BEGIN;"
  echo "CREATE TEMP TABLE stage (seq bigint GENERATED ALWAYS AS IDENTITY, op text, LIKE bench_hand.orders) ON COMMIT DROP;"
  for f in "$DATA"/cdc/*.csv; do
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
} >"$hand_sql"
q -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS bench_hand.orders" -c "$(ddl bench_hand.orders)"
for r in $(seq "$RUNS"); do
  # Sluice: the loaded table back as case 2 left it, versions set to the day before the CDC.
  q >/dev/null <<SQL
SET client_min_messages = warning;
TRUNCATE bench.orders;
DROP SCHEMA IF EXISTS bench_state CASCADE;
INSERT INTO bench.orders ($COLS, _sluice_version, _sluice_file_time, _sluice_record, _sluice_file)
  SELECT $COLS, '2024-12-31 00:00:00+00', '2024-12-31 00:00:00+00', _sluice_record, _sluice_file FROM bench_snap.orders;
VACUUM ANALYZE bench.orders;
SQL
  fresh_queue "cdc-$r"
  scan cdc/ "$CDC_FILES"
  checkpoint
  out=$(drive "cdc-$r" --expect "$CDC_FILES")
  record c4s "$(field secs "$out")"
  for k in peak_rss_kb copy_ms merge_ms commit_ms worker_cpu pg_cpu rows_superseded; do record "c4s_$k" "$(field $k "$out")"; done
  echo "run $r sluice: $out" >&2
  # By hand: the same table, \copy of every file into a staging table, one MERGE.
  q >/dev/null <<SQL
TRUNCATE bench_hand.orders;
INSERT INTO bench_hand.orders SELECT * FROM bench_snap.orders_plain;
VACUUM ANALYZE bench_hand.orders;
SQL
  checkpoint
  t0=$(now)
  q -f "$hand_sql"
  record c4h "$(since "$t0")"
  echo "run $r hand merge: $(last c4h) s" >&2
done
C4S_DIGEST=$(digest bench.orders)
C4H_DIGEST=$(digest bench_hand.orders)
CDC_IDENTICAL=no
[ "$C4S_DIGEST" = "$C4H_DIGEST" ] && CDC_IDENTICAL=yes
echo "sluice: $C4S_DIGEST; hand: $C4H_DIGEST; identical: $CDC_IDENTICAL" >&2

# ---------------------------------------------------------------------------------------------
# Cases 1-4's medians and ratios, their rows of the report's table, and where cases 2 and 4
# spend their time: for the report, and printed alone by --cases-1-4.
met() { awk "BEGIN { print ($1) ? \"met\" : \"missed\" }"; }
medians_1_4() {
  C1=$(median c1) C2=$(median c2) C3=$(median c3) C4S=$(median c4s) C4H=$(median c4h)
  R2=$(calc %.2f "$C2 / $C1") R3=$(calc %.2f "$C3 / $C1") R4=$(calc %.2f "$C4S / $C4H")
  MB=$(calc %.0f "$LOAD_BYTES / 1048576")
}
rows_1_4() {
  echo "| case | what | median (s) | runs (s) | ratio | target | |"
  echo "| --- | --- | --- | --- | --- | --- | --- |"
  echo "| 1 | psql \\copy, $ROWS rows ($MB MB) into the typed table with its key | $C1 | $(values c1) | 1.00 | | |"
  echo "| 2 | Sluice: S3 -> one worker -> committed, manifest \`loaded\` | $C2 | $(values c2) | $R2 x case 1 | <= 0.80, same rows | $(met "$R2 <= 0.8") (rows identical: $IDENTICAL) |"
  echo "| 3 | floor: GetObject of the same object to nowhere | $C3 | $(values c3) | $R3 x case 1 | | |"
  echo "| 4 | Sluice applying $CDC_OPS CDC operations ($CDC_FILES files) | $C4S | $(values c4s) | $R4 x hand | <= 1.20, same rows | $(met "$R4 <= 1.2") (rows identical: $CDC_IDENTICAL) |"
  echo "| 4 | by hand: \\copy into a staging table + one MERGE | $C4H | $(values c4h) | 1.00 | | |"
}
breakdown_1_4() {
  echo "| run | copy (download + parse + COPY) ms | merge ms | commit ms | worker CPU s | PostgreSQL CPU s | moto CPU s | peak RSS MB |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  for i in $(seq "$RUNS"); do
    get() { awk -v k="$1" -v i="$i" '$1 == k { if (++n == i) print $2 }' "$RES"; }
    echo "| case 2, run $i | $(get c2_copy_ms) | $(get c2_merge_ms) | $(get c2_commit_ms) | $(get c2_worker_cpu) | $(get c2_pg_cpu) | $(get c2_moto_cpu) | $(calc %.0f "$(get c2_peak_rss_kb) / 1024") |"
  done
  for i in $(seq "$RUNS"); do
    get() { awk -v k="$1" -v i="$i" '$1 == k { if (++n == i) print $2 }' "$RES"; }
    echo "| case 4, run $i (sums over the files) | $(get c4s_copy_ms) | $(get c4s_merge_ms) | $(get c4s_commit_ms) | $(get c4s_worker_cpu) | $(get c4s_pg_cpu) | | $(calc %.0f "$(get c4s_peak_rss_kb) / 1024") |"
  done
}
if [ "$ONLY14" = 1 ]; then
  LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
  medians_1_4
  table=$(rows_1_4)
  breakdown=$(breakdown_1_4)
  COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo "+changes")
  summary=$(
    echo "cases 1-4, $RUNS runs, commit $COMMIT, $STARTED_AT to $(date -u +%Y-%m-%dT%H:%M:%SZ); load average $LOAD_BEFORE at the start, $LOAD_AFTER at the end"
    echo "case 2: $R2 x case 1 ($C2 s / $C1 s); case 3: $R3 x case 1; case 4: $R4 x hand ($C4S s / $C4H s)"
    echo "case 2's rows identical to case 1's: $IDENTICAL ($C1_DIGEST / $C2_DIGEST)"
    echo "case 4's rows identical to the hand MERGE's: $CDC_IDENTICAL ($C4S_DIGEST / $C4H_DIGEST)"
  )
  if [ "$OUT_GIVEN" = 1 ]; then
    {
      echo "# Benchmarks: cases 1-4"
      echo
      echo "Written by \`bench/run.sh $ARGS\`; $(nproc) CPUs, $(uname -sr)."
      echo
      sed 's/^/- /' <<<"$summary"
      echo
      echo "$table"
      echo
      echo "$breakdown"
    } >"$OUT"
  fi
  echo
  echo "$table"
  echo
  echo "$breakdown"
  echo
  echo "$summary"
  [ "$OUT_GIVEN" = 1 ] && echo "report written to $OUT"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
say "case 5: $SMALL_FILES CDC files of $SMALL_ROWS rows; workers: $WORKER_COUNTS"
for n in $WORKER_COUNTS; do
  for r in $(seq "$RUNS"); do
    q >/dev/null <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench.small_orders;
DROP SCHEMA IF EXISTS bench_state CASCADE;
$(ddl bench.small_orders)
SQL
    fresh_queue "small-$n-$r"
    checkpoint
    out=$(drive "small-$n-$r" --workers "$n" --feed-bucket "$BUCKET" --feed-prefix small/ --window "$WINDOW")
    secs=$(field secs "$out")
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
    record "c5b_$n" "$(calc %.1f "$SMALL_FILES / $secs")"
    record "c5b_moto_$n" "$(calc %.0f "100 * $(field moto_cpu "$out") / $secs")"
    echo "$n loops, run $r, bare: $out" >&2
  done
done

fi  # cases 1-5
# ---------------------------------------------------------------------------------------------
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
if [ "$ONLY6" = 1 ]; then
  C6P=$(median c6p) C6L=$(median c6l)
  echo "case 6, $MANY objects, $MANY_NEW new, $RUNS runs: pass $C6P s (runs: $(values c6p)), bare listing $C6L s (runs: $(values c6l)), ratio $(calc %.2f "$C6P / $C6L")"
  echo "manifest pairs read per pass: $(values c6_read); vouched for by the checkpoints: $(values c6_vouched)"
  echo "moto CPU: pass $(values c6p_moto) s, listing $(values c6l_moto) s"
  echo "calls (run 1): $CALLS"
  exit 0
fi

# ---------------------------------------------------------------------------------------------
if [ "$BIG" = 1 ]; then
  say "RSS: one worker, --concurrency 4, a 1 GB file and three of $ROWS rows at once"
  "$BENCH" put --bucket "$BUCKET" --key big/bench/big_orders/LOAD00000001.csv --file "$DATA/big.csv" >/dev/null
  for i in 2 3 4; do
    "$BENCH" put --bucket "$BUCKET" --key "big/bench/big_orders/LOAD0000000$i.csv" --file "$DATA/big$i.csv" >/dev/null
  done
  BIG_BYTES=$(cat "$DATA"/big*.csv | wc -c)
  BIG_FILE_BYTES=$(stat -c %s "$DATA/big.csv")
  q >/dev/null <<SQL
SET client_min_messages = warning;
DROP TABLE IF EXISTS bench.big_orders;
DROP SCHEMA IF EXISTS bench_state CASCADE;
$(ddl bench.big_orders)
SQL
  fresh_queue big
  scan big/ 4
  checkpoint
  out=$(drive big --expect 4 --concurrency 4)
  record big_secs "$(field secs "$out")"
  record big_rss "$(field peak_rss_kb "$out")"
  echo "$out" >&2
  q -c "DROP TABLE bench.big_orders" >/dev/null
fi

# ---------------------------------------------------------------------------------------------
PROFILE="$DATA/profile.txt"
: >"$PROFILE"
if [ "$PERF" = 1 ] && perf record -e cpu-clock -o "$DATA/probe.perf" -- true >/dev/null 2>&1; then
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
  q >/dev/null <<SQL
SET client_min_messages = warning;
TRUNCATE bench.orders;
DROP SCHEMA IF EXISTS bench_state CASCADE;
INSERT INTO bench.orders ($COLS, _sluice_version, _sluice_file_time, _sluice_record, _sluice_file)
  SELECT $COLS, '2024-12-31 00:00:00+00', '2024-12-31 00:00:00+00', _sluice_record, _sluice_file FROM bench_snap.orders;
VACUUM ANALYZE bench.orders;
SQL
  fresh_queue cdc-perf
  scan cdc/ "$CDC_FILES"
  profile_run cdc-perf "$CDC_FILES" "Case 4 (CDC)"
else
  echo "perf not run (--no-perf, or perf cannot sample here)" >"$PROFILE"
fi

# ---------------------------------------------------------------------------------------------
say "report"
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
medians_1_4
C6P=$(median c6p) C6L=$(median c6l)
R6=$(calc %.2f "$C6P / $C6L")
RSS_MAX_KB=$(awk '$1 ~ /rss/ { if ($2 > m) m = $2 } END { print m + 0 }' "$RES")
table=$(
  rows_1_4
  echo "| 6 | coordinator pass, $MANY objects, $MANY_NEW new | $C6P | $(values c6p) | $R6 x listing | <= 1.50 | $(met "$R6 <= 1.5") |"
  echo "| 6 | bare ListObjectsV2 of the prefix | $C6L | $(values c6l) | 1.00 | | |"
)
small=$(
  echo "| workers (x4 slots) | Sluice files/s (median) | runs | bare loop files/s | runs | Sluice / bare | target >= 0.50 | moto CPU (Sluice, bare) | PostgreSQL CPU | workers' CPU | peak RSS |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
  for n in $WORKER_COUNTS; do
    s=$(median "c5s_$n") b=$(median "c5b_$n")
    rr=$(calc %.2f "$s / $b")
    echo "| $n | $s | $(values "c5s_$n") | $b | $(values "c5b_$n") | $rr | $(met "$rr >= 0.5") | $(median "c5s_moto_$n")%, $(median "c5b_moto_$n")% | $(median "c5s_pg_$n")% | $(median "c5s_worker_$n")% | $(calc %.0f "$(median "c5s_rss_$n") / 1024") MB |"
  done
)
breakdown=$(breakdown_1_4)
if [ "$BIG" = 1 ]; then
  big_line="One worker, \`--concurrency 4\`, four full-load files at once: a $(calc %.2f "$BIG_FILE_BYTES / 1073741824") GiB file ($BIG_ROWS rows) and three of $ROWS rows ($(calc %.2f "$BIG_BYTES / 1073741824") GiB in all): peak RSS **$(calc %.0f "$(last big_rss) / 1024") MB** (target < 200 MB: $(met "$(last big_rss) < 204800")), loaded in $(last big_secs) s ($(calc %.1f "$BIG_BYTES / 1048576 / $(last big_secs)") MB/s)."
else
  big_line="Not run (--no-big)."
fi
CPU_MODEL=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
MEM=$(free -h | awk '/^Mem:/ { print $2 }')
PGV=$(q -At -c "SHOW server_version")
MOTOV=$(python3 -c 'import moto; print(moto.__version__)')
RUSTV=$(rustc --version)
COMMIT=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . 2>/dev/null || echo "+changes")

{
  cat <<EOF
# Benchmarks

Written by \`bench/run.sh\` (issue 8); every figure below comes from one run of it, and all the
cases of a run are measured side by side on the same machine and services. Ratios, not absolute
times, are what to compare between machines.

- **Command:** \`bench/run.sh $ARGS\`
- **When:** $STARTED_AT to $(date -u +%Y-%m-%dT%H:%M:%SZ), commit $COMMIT
- **Machine:** $(nproc) CPUs ($CPU_MODEL), $MEM memory, $(uname -sr); load average $LOAD_BEFORE at the start, $LOAD_AFTER at the end (the machine is shared: other builds and test suites ran on it meanwhile)
- **Services:** PostgreSQL $PGV (the local stack's cluster, default settings), moto $MOTOV (a server of the benchmark's own, on :$MOTO_PORT, started by \`bench/moto_server.py\`: a DynamoDB Query on a table's key reads that partition instead of sorting the whole table, as DynamoDB does; see the file), $RUSTV, release build
- **Data:** full-load file of $ROWS rows, $LOAD_BYTES bytes (integers, numerics, timestamps, text with quotes, commas, LF/CRLF newlines, tabs, backslashes, non-ASCII, empty strings and the string "NULL", SQL NULLs); CDC stream of $CDC_OPS operations ($ops_mix) in $CDC_FILES files, $CDC_BYTES bytes; $SMALL_FILES CDC files of $SMALL_ROWS rows; $MANY small objects. Generated by \`sluice-bench gen-load\` / \`gen-cdc\` (fixed seed); runs per case: $RUNS, medians reported.

## Results

$table

Case 2's table equals case 1's, row for row over the user columns (count and md5 of every row's text in key order): **$IDENTICAL** (\`$C1_DIGEST\` / \`$C2_DIGEST\`). Case 4's Sluice table equals the hand MERGE's: **$CDC_IDENTICAL** (\`$C4S_DIGEST\` / \`$C4H_DIGEST\`).

### Where case 2 and case 4 spend their time (the worker's own phase timings, and CPU seconds)

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

$(cat "$PROFILE")

EOF
  if [ -f "$ROOT/bench/analysis.md" ]; then
    echo "## Analysis"
    echo
    cat "$ROOT/bench/analysis.md"
  fi
} >"$OUT"

echo
echo "$table"
echo
echo "$small"
echo
echo "case 6 calls: $CALLS"
echo "memory: $big_line"
echo
echo "report written to $OUT"
