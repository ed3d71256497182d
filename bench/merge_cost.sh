#!/usr/bin/env bash
# What the worker's version-guarded merge costs against a hand-written MERGE of the same
# operations (bench/run.sh's case 4 baseline: DISTINCT ON the key, newest record first, then
# one MERGE with no guard, no tombstones, no counts), and what each part of the guarded merge
# adds. Case 4c's sizes: 200,000 staged operations of one file (20% inserts of new keys, 70%
# updates, 10% deletes; 187,545 keys) on a 1,000,000-row table with a primary key.
#
# The statements, each RUNS times, interleaved, each in a transaction rolled back, after a
# VACUUM of the tables (and a CHECKPOINT where this user may run one as postgres, as
# bench/run.sh does before its timed runs: every statement then pays the same full-page writes):
#   hand      the hand MERGE into a table without Sluice's system columns (the baseline)
#   hand_sys  the same MERGE into the table with the four system columns, setting them
#   guarded   a MERGE with the version guard in its WHEN clauses, in key order (a nested loop:
#             PostgreSQL cannot see the order of a materialized CTE and would otherwise hash the
#             target and visit its rows at random); no tombstones, no counts. What any guarded
#             statement costs on PostgreSQL 15, whose MERGE has no RETURNING for counts per file
#   guarded_tombstones  the same with the deletes' rows found first and their tombstones written
#   worker    what `merge_stage` sends: the tombstone check, the merge statement (empty tombstone
#             table, as in case 4), the tombstone pruning
# Prints each run's wall time and the PostgreSQL backend's CPU time (from /proc, so only when
# PostgreSQL runs on this machine; CPU is the steadier figure on a shared machine), then the
# medians and their ratios to `hand`. Uses its own schema, bench_merge (bench/run.sh owns
# bench*). Starts the local stack if needed.
#
#   bench/merge_cost.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sluice-target}"
infra/local/stack.sh up >/dev/null
# shellcheck disable=SC1090
. "$(infra/local/stack.sh envfile)"
SIDES="hand hand_sys guarded guarded_tombstones worker"
declare -A SQL
# The example prints the merge for bench.t with bench.tomb; here they live in bench_merge.
guarded=$(cargo run -q -p sluice-worker --example merge_sql -- --no-tombstones |
  sed 's/"bench"\."t"/"bench_merge"."t"/g; s/bench\.tomb/bench_merge.tomb/g')
SQL[worker]="SELECT EXISTS (SELECT 1 FROM bench_merge.tomb);
$guarded
DELETE FROM bench_merge.tomb WHERE _sluice_version < '2025-12-31';"
hand_merge() { # target, extra SET, extra INSERT columns, extra VALUES
  cat <<SQL
MERGE INTO $1 AS t
USING (SELECT DISTINCT ON (id) * FROM pg_temp.sluice_stage ORDER BY id, _sluice_rec DESC) AS s ON t.id = s.id
WHEN MATCHED AND s._sluice_op = 'D' THEN DELETE
WHEN MATCHED THEN UPDATE SET a = s.a, b = s.b, c = s.c$2
WHEN NOT MATCHED AND s._sluice_op <> 'D' THEN INSERT (id, a, b, c$3) VALUES (s.id, s.a, s.b, s.c$4);
SQL
}
SYS_SET=", _sluice_version = s._sluice_file_time, _sluice_file_time = s._sluice_file_time, _sluice_record = s._sluice_rec, _sluice_file = s._sluice_file"
SYS_COLS=", _sluice_version, _sluice_file_time, _sluice_record, _sluice_file"
SYS_VALS=", s._sluice_file_time, s._sluice_file_time, s._sluice_rec, s._sluice_file"
SQL[hand]=$(hand_merge bench_merge.p "" "" "")
SQL[hand_sys]=$(hand_merge bench_merge.t "$SYS_SET" "$SYS_COLS" "$SYS_VALS")
# The worker's `last` (the newest operation per key), then the guarded MERGE.
last="last AS MATERIALIZED (
    SELECT DISTINCT ON (id) s._sluice_rec, s._sluice_op, s._sluice_file_time, s._sluice_file, s.id, s.a, s.b, s.c,
           coalesce(s._sluice_version, s._sluice_file_time) AS _v
      FROM pg_temp.sluice_stage AS s
     ORDER BY id, coalesce(s._sluice_version, s._sluice_file_time) DESC, s._sluice_file_time DESC, s._sluice_file DESC, s._sluice_rec DESC)"
tv="(t._sluice_version, t._sluice_file_time, t._sluice_record)"
sv="(s._v, s._sluice_file_time, s._sluice_rec)"
guard="(t._sluice_version IS NULL OR $tv <= $sv)"
guarded_merge() { # more CTEs
  cat <<SQL
SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off;
WITH $last$1
MERGE INTO bench_merge.t AS t USING last AS s ON t.id = s.id
WHEN MATCHED AND s._sluice_op = 'D' AND $guard THEN DELETE
WHEN MATCHED AND s._sluice_op <> 'D' AND $guard THEN UPDATE SET a = s.a, b = s.b, c = s.c,
     _sluice_version = s._v, _sluice_file_time = s._sluice_file_time, _sluice_record = s._sluice_rec, _sluice_file = s._sluice_file
WHEN NOT MATCHED AND s._sluice_op <> 'D' THEN INSERT (id, a, b, c$SYS_COLS) VALUES (s.id, s.a, s.b, s.c, s._v, s._sluice_file_time, s._sluice_rec, s._sluice_file);
SQL
}
SQL[guarded]=$(guarded_merge "")
SQL[guarded_tombstones]=$(guarded_merge ",
dels AS MATERIALIZED (
    SELECT s.id, s._v, s._sluice_file_time, s._sluice_rec, s._sluice_file,
           NOT coalesce($tv > $sv, false) AS _bury
      FROM last AS s LEFT JOIN bench_merge.t AS t ON t.id = s.id
     WHERE s._sluice_op = 'D'),
buried AS (
    INSERT INTO bench_merge.tomb (id$SYS_COLS)
    SELECT s.id, s._v, s._sluice_file_time, s._sluice_rec, s._sluice_file FROM dels AS s WHERE s._bury
    RETURNING 1)")
checkpoint=":"
if [ "$(id -u)" = 0 ]; then
  checkpoint="runuser -u postgres -- psql -X -q -p $SLUICE_PG_PORT -c CHECKPOINT"
elif sudo -n -u postgres true 2>/dev/null; then
  checkpoint="sudo -n -u postgres psql -X -q -p $SLUICE_PG_PORT -c CHECKPOINT"
else
  echo "merge_cost: cannot run CHECKPOINT as postgres here; the statements run without one" >&2
fi
script=$(mktemp)
trap 'rm -f "$script"' EXIT
cat >"$script" <<SQL
DROP SCHEMA IF EXISTS bench_merge CASCADE; CREATE SCHEMA bench_merge;
CREATE TABLE bench_merge.t (id int PRIMARY KEY, a text, b numeric(12,2), c timestamptz, _sluice_version timestamptz,
  _sluice_file_time timestamptz, _sluice_record bigint, _sluice_file bigint);
CREATE TABLE bench_merge.tomb (id int PRIMARY KEY, _sluice_version timestamptz NOT NULL, _sluice_file_time timestamptz NOT NULL,
  _sluice_record bigint NOT NULL, _sluice_file bigint NOT NULL);
CREATE INDEX ON bench_merge.tomb (_sluice_version);
CREATE TABLE bench_merge.p (id int PRIMARY KEY, a text, b numeric(12,2), c timestamptz);
CREATE TABLE bench_merge.ops AS SELECT g::bigint AS _sluice_rec,
  (CASE WHEN g % 10 = 0 THEN 'D' WHEN g % 5 = 1 THEN 'I' ELSE 'U' END)::"char" AS _sluice_op,
  NULL::timestamptz AS _sluice_version, NULL::int2[] AS _sluice_keep,
  '2026-01-01'::timestamptz AS _sluice_file_time, 7::bigint AS _sluice_file,
  CASE WHEN g % 5 = 1 THEN 1000000 + g ELSE (hashint4(g) & 1048575) % 1000000 END AS id,
  repeat(md5(g::text), 4) || ' some text, "quoted"' AS a, (g % 100000)::numeric(12,2) / 7 AS b,
  now() - (g || ' seconds')::interval AS c
  FROM generate_series(1, 200000) g;
ALTER TABLE bench_merge.ops ALTER _sluice_file_time SET NOT NULL, ALTER _sluice_file SET NOT NULL;
INSERT INTO bench_merge.t SELECT g, repeat(md5((-g)::text), 4), 1, now(), '2025-01-01', '2025-01-01', 1, 1
  FROM generate_series(0, 999999) g;
INSERT INTO bench_merge.p SELECT id, a, b, c FROM bench_merge.t;
VACUUM ANALYZE bench_merge.t; VACUUM ANALYZE bench_merge.p;
SELECT pg_backend_pid() AS pid \gset
\setenv PID :pid
SQL
cpu='\! awk "{print \"cpu\", \$14 + \$15}" /proc/$PID/stat 2>/dev/null || echo cpu -1'
for _ in $(seq "$RUNS"); do
  for side in $SIDES; do
    printf 'VACUUM bench_merge.t, bench_merge.p, bench_merge.tomb;\n\\! %s >/dev/null\nBEGIN;\n' "$checkpoint" >>"$script"
    printf 'CREATE TEMP TABLE sluice_stage ON COMMIT DROP AS SELECT * FROM bench_merge.ops;\n' >>"$script"
    printf '\\echo @%s\n%s\n\\timing on\n%s\n\\timing off\n%s\nROLLBACK;\n' "$side" "$cpu" "${SQL[$side]}" "$cpu" >>"$script"
  done
done
echo "DROP SCHEMA bench_merge CASCADE;" >>"$script"
PGOPTIONS="-c client_min_messages=warning" psql -q -X -At -v ON_ERROR_STOP=1 "$SLUICE_DATABASE_URL" -f "$script" | awk -v sides="$SIDES" '
  function median(a, k,   i, j, x) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { x = a[i]; a[i] = a[j]; a[j] = x } return a[int((k + 1) / 2)] }
  /^@/ { side = substr($0, 2); n[side]++; wall = 0; c0 = ""; next }
  /^cpu/ { if (c0 == "") { c0 = $2; next } k = n[side]; w[side, k] = wall; c[side, k] = ($2 < 0 || c0 < 0) ? -1 : ($2 - c0) * 10; next }
  /^Time:/ { wall += $2; next }
  END {
    m = split(sides, s, " ")
    for (i = 1; i <= n["hand"]; i++) {
      line = sprintf("run %d:", i)
      for (j = 1; j <= m; j++) line = line sprintf(" %s %.0f ms (CPU %d)", s[j], w[s[j], i], c[s[j], i])
      print line
    }
    for (j = 1; j <= m; j++) {
      delete ww; delete cc
      for (i = 1; i <= n[s[j]]; i++) { ww[i] = w[s[j], i]; cc[i] = c[s[j], i] }
      mw[s[j]] = median(ww, n[s[j]]); mc[s[j]] = median(cc, n[s[j]])
    }
    for (j = 1; j <= m; j++) {
      printf "median %-19s wall %5.0f ms (%.2fx hand)", s[j], mw[s[j]], mw[s[j]] / mw["hand"]
      if (mc["hand"] > 0) printf ", backend CPU %5d ms (%.2fx hand)", mc[s[j]], mc[s[j]] / mc["hand"]
      printf "\n"
    }
  }'
