#!/usr/bin/env bash
# The Sluice demo, from nothing: starts the local stack (moto + PostgreSQL, installed if
# missing), creates a sample warehouse, uploads DMS-style files, runs the coordinator (a pass
# for the full load, S3 events through EventBridge for the CDC files) and two workers until
# drained, and prints the manifest summary and the row counts.
set -euo pipefail
cd "$(dirname "$0")/../.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sluice-target}"

infra/local/stack.sh up
# shellcheck disable=SC1090
. "$(infra/local/stack.sh envfile)"
echo "== building (first build takes a few minutes)"
cargo build --workspace --bins --quiet
BIN="$CARGO_TARGET_DIR/debug"

RUN="demo-$(date +%s)"
export SLUICE_SOURCE="s3://sluice-$RUN/dms/"
export SLUICE_MANIFEST_TABLE="sluice-$RUN"
export SLUICE_STATE_SCHEMA=sluice
export SLUICE_LOG_FORMAT=text RUST_LOG="${RUST_LOG:-warn}"

echo "== warehouse tables (schema demo)"
psql -q "$SLUICE_DATABASE_URL" -v ON_ERROR_STOP=1 -f infra/local/demo/warehouse.sql

echo "== bootstrap: manifest table and queue with dead-letter queue"
out="$("$BIN/sluice-coordinator" bootstrap --create-queue "sluice-$RUN")"
echo "$out"
SLUICE_QUEUE_URL="$(echo "$out" | sed -n 's/^queue: //p')"
export SLUICE_QUEUE_URL

drain() {
  "$BIN/sluice-worker" run --concurrency 2 --wait-time 1 --exit-when-idle 3 --worker-id worker-a &
  local a=$!
  "$BIN/sluice-worker" run --concurrency 2 --wait-time 1 --exit-when-idle 3 --worker-id worker-b &
  local b=$!
  wait "$a" "$b"
}

echo "== full load files land in s3://sluice-$RUN/dms/"
python3 infra/local/demo/upload_sample.py "sluice-$RUN" dms/ full
"$BIN/sluice-coordinator" scan
drain

echo "== S3 events on: the bucket's ObjectCreated events under dms/, through EventBridge, to an events queue"
out="$("$BIN/sluice-coordinator" bootstrap --create-queue "sluice-$RUN-events" --max-receive-count 5)"
SLUICE_EVENTS_QUEUE_URL="$(echo "$out" | sed -n 's/^queue: //p')"
python3 infra/local/eventbridge.py "sluice-$RUN" dms/ "$SLUICE_EVENTS_QUEUE_URL" "sluice-$RUN" >/dev/null
# The coordinator as it runs deployed: events between passes (an hour apart here, so what
# follows is the events' doing).
"$BIN/sluice-coordinator" run --interval 1h --events-queue-url "$SLUICE_EVENTS_QUEUE_URL" &
coordinator=$!
trap 'kill "$coordinator" 2>/dev/null || true' EXIT
sleep 2

echo "== CDC files land (in DMS date folders); their events enqueue them, no listing pass"
python3 infra/local/demo/upload_sample.py "sluice-$RUN" dms/ cdc
sleep 3
drain
kill "$coordinator" && wait "$coordinator" || true
trap - EXIT

echo "== a listing pass finds nothing new: the events found every file"
"$BIN/sluice-coordinator" scan

echo "== manifest summary"
"$BIN/sluice-coordinator" manifest summary
echo "== files not loaded"
"$BIN/sluice-coordinator" manifest list

echo "== row counts"
psql -q "$SLUICE_DATABASE_URL" -c "SELECT 'demo.customers' AS table_name, count(*) FROM demo.customers UNION ALL SELECT 'demo.orders', count(*) FROM demo.orders"
echo "== customers, byte for byte (special characters survive)"
psql -q "$SLUICE_DATABASE_URL" -c "SELECT id, name, email, note, balance, updated_at FROM demo.customers ORDER BY id"
