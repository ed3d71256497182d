#!/usr/bin/env bash
# What the version guard costs: the worker's merge of 200,000 staged operations (126k keys,
# 7k deletes) into a 131k-row table with a primary key, against the plain upsert it replaced,
# both in the same PostgreSQL, RUNS times each (each in a transaction rolled back). Prints the
# times and the median ratio. Starts the local stack if needed.
#
#   bench/merge_cost.sh [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-5}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sluice-target}"
infra/local/stack.sh up >/dev/null
# shellcheck disable=SC1090
. "$(infra/local/stack.sh envfile)"
guarded=$(cargo run -q -p sluice-worker --example merge_sql)
plain="WITH last AS MATERIALIZED (SELECT DISTINCT ON (id) * FROM pg_temp.sluice_stage ORDER BY id, _sluice_rec DESC),
 deleted AS (DELETE FROM bench.p AS t USING last AS s WHERE s._sluice_op = 'D' AND t.id = s.id RETURNING 1),
 upserted AS (INSERT INTO bench.p AS t (id, a, b, c) SELECT id, a, b, c FROM last WHERE _sluice_op <> 'D' ORDER BY id
   ON CONFLICT (id) DO UPDATE SET a = EXCLUDED.a, b = EXCLUDED.b, c = EXCLUDED.c RETURNING (xmax = 0) AS inserted)
SELECT (SELECT count(*) FROM upserted WHERE inserted), (SELECT count(*) FROM upserted WHERE NOT inserted), (SELECT count(*) FROM deleted);"
script=$(mktemp)
trap 'rm -f "$script"' EXIT
cat >"$script" <<SQL
DROP SCHEMA IF EXISTS bench CASCADE; CREATE SCHEMA bench;
CREATE TABLE bench.t (id int PRIMARY KEY, a text, b numeric(12,2), c timestamptz, _sluice_version timestamptz,
  _sluice_file_time timestamptz, _sluice_record bigint, _sluice_file bigint);
CREATE TABLE bench.tomb (id int PRIMARY KEY, _sluice_version timestamptz NOT NULL, _sluice_file_time timestamptz NOT NULL,
  _sluice_record bigint NOT NULL, _sluice_file bigint NOT NULL);
CREATE TABLE bench.p (id int PRIMARY KEY, a text, b numeric(12,2), c timestamptz);
CREATE TABLE bench.ops AS SELECT g AS _sluice_rec,
  (CASE WHEN g % 10 = 0 THEN 'D' WHEN g % 3 = 0 THEN 'I' ELSE 'U' END)::"char" AS _sluice_op,
  NULL::timestamptz AS _sluice_version, NULL::int2[] AS _sluice_keep, (hashint4(g) & 262143)::int AS id,
  md5(g::text) || ' some text, "quoted"' AS a, (g % 100000)::numeric(12,2) / 7 AS b, now() - (g || ' seconds')::interval AS c
  FROM generate_series(1, 200000) g;
INSERT INTO bench.t SELECT g, 'x', 1, now(), '2025-01-01', '2025-01-01', 1, 1 FROM generate_series(0, 262143, 2) g;
INSERT INTO bench.p SELECT g, 'x', 1, now() FROM generate_series(0, 262143, 2) g;
VACUUM ANALYZE bench.t; VACUUM ANALYZE bench.p;
SQL
for _ in $(seq "$RUNS"); do
  for sql in "$plain" "$guarded"; do
    printf 'BEGIN;\nCREATE TEMP TABLE sluice_stage ON COMMIT DROP AS SELECT * FROM bench.ops;\n\\timing on\n%s\n\\timing off\nROLLBACK;\n' "$sql" >>"$script"
  done
done
echo "DROP SCHEMA bench CASCADE;" >>"$script"
PGOPTIONS="-c client_min_messages=warning" psql -q -X "$SLUICE_DATABASE_URL" -f "$script" | awk '
  /^Time:/ { t = $2; if (n++ % 2 == 0) plain[++p] = t; else guarded[++g] = t }
  function median(a, k,   i, j, x) { for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (a[j] < a[i]) { x = a[i]; a[i] = a[j]; a[j] = x } return a[int((k + 1) / 2)] }
  END {
    for (i = 1; i <= p; i++) printf "run %d: plain upsert %.0f ms, guarded merge %.0f ms\n", i, plain[i], guarded[i]
    mp = median(plain, p); mg = median(guarded, g)
    printf "median: plain %.0f ms, guarded %.0f ms, ratio %.2f\n", mp, mg, mg / mp
  }'
