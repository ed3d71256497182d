#!/usr/bin/env bash
# What the worker's version-guarded merge costs against a hand-written MERGE of the same
# operations (bench/run.sh's case 4 baseline: DISTINCT ON the key, newest record first, then
# one MERGE with no guard, no tombstones, no counts). Case 4c's sizes: 200,000 staged
# operations of one file (20% inserts of new keys, 70% updates, 10% deletes; 187,545 keys) on a
# 1,000,000-row table with a primary key. The worker's side is what `merge_stage` sends for
# that stage: the tombstone check, the merge statement (empty tombstone table, as in case 4),
# the tombstone pruning. Both run RUNS times, interleaved, each in a transaction rolled back,
# with a VACUUM of the tables before each. Prints each run's wall time and the PostgreSQL
# backend's CPU time (from /proc, so only when PostgreSQL runs on this machine; CPU is the
# steadier figure on a shared machine), then the medians and their ratios.
# Uses its own schema, bench_merge (bench/run.sh owns bench*). Starts the local stack if needed.
#
#   bench/merge_cost.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sluice-target}"
infra/local/stack.sh up >/dev/null
# shellcheck disable=SC1090
. "$(infra/local/stack.sh envfile)"
# The example prints the merge for bench.t with bench.tomb; here they live in bench_merge.
guarded=$(cargo run -q -p sluice-worker --example merge_sql -- --no-tombstones |
  sed 's/"bench"\."t"/"bench_merge"."t"/g; s/bench\.tomb/bench_merge.tomb/g')
worker="SELECT EXISTS (SELECT 1 FROM bench_merge.tomb);
$guarded
DELETE FROM bench_merge.tomb WHERE _sluice_version < '2025-12-31';"
hand="MERGE INTO bench_merge.p AS t
USING (SELECT DISTINCT ON (id) * FROM pg_temp.sluice_stage ORDER BY id, _sluice_rec DESC) AS s ON t.id = s.id
WHEN MATCHED AND s._sluice_op = 'D' THEN DELETE
WHEN MATCHED THEN UPDATE SET a = s.a, b = s.b, c = s.c
WHEN NOT MATCHED AND s._sluice_op <> 'D' THEN INSERT (id, a, b, c) VALUES (s.id, s.a, s.b, s.c);"
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
  for side in hand worker; do
    sql=$hand
    [ "$side" = worker ] && sql=$worker
    printf 'VACUUM bench_merge.t, bench_merge.p, bench_merge.tomb;\nBEGIN;\n' >>"$script"
    printf 'CREATE TEMP TABLE sluice_stage ON COMMIT DROP AS SELECT * FROM bench_merge.ops;\n' >>"$script"
    printf '\\echo @%s\n%s\n\\timing on\n%s\n\\timing off\n%s\nROLLBACK;\n' "$side" "$cpu" "$sql" "$cpu" >>"$script"
  done
done
echo "DROP SCHEMA bench_merge CASCADE;" >>"$script"
PGOPTIONS="-c client_min_messages=warning" psql -q -X -At -v ON_ERROR_STOP=1 "$SLUICE_DATABASE_URL" -f "$script" | awk '
  function median(a, k,   i, j, x) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { x = a[i]; a[i] = a[j]; a[j] = x } return a[int((k + 1) / 2)] }
  /^@/ { side = substr($0, 2); n[side]++; wall = 0; c0 = ""; next }
  /^cpu/ { if (c0 == "") { c0 = $2; next } k = n[side]; w[side, k] = wall; c[side, k] = ($2 < 0 || c0 < 0) ? -1 : ($2 - c0) * 10; next }
  /^Time:/ { wall += $2; next }
  END {
    for (i = 1; i <= n["hand"]; i++) {
      printf "run %d: hand MERGE %.0f ms wall, %d ms CPU; worker merge %.0f ms wall, %d ms CPU\n", i, w["hand", i], c["hand", i], w["worker", i], c["worker", i]
      hw[i] = w["hand", i]; ww[i] = w["worker", i]; hc[i] = c["hand", i]; wc[i] = c["worker", i]
    }
    k = n["hand"]; mhw = median(hw, k); mww = median(ww, k); mhc = median(hc, k); mwc = median(wc, k)
    printf "median wall: hand %.0f ms, worker %.0f ms, ratio %.2f\n", mhw, mww, mww / mhw
    if (mhc > 0) printf "median backend CPU: hand %d ms, worker %d ms, ratio %.2f\n", mhc, mwc, mwc / mhc
  }'
