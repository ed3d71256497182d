#!/usr/bin/env bash
# Case 8 of issue 19: landing-to-loaded latency. N small CDC files (one row each) are put in S3
# at random moments over a window; each file's latency is the ledger's loaded_at (its COMMIT)
# minus the moment its PUT returned. Two modes, each with its own bucket, queues, manifest and
# schemas, one after the other:
#   events    the coordinator reads S3 events (EventBridge -> SQS, infra/local/eventbridge.py),
#             passes an hour apart (so the latency is the events' doing)
#   listing   no events: passes every --interval (the default 60s, as deployed without events)
# Each mode runs the coordinator and --workers workers (`--concurrency 2`, `--wait-time 1`).
# Prints p50, p90, p99 and max per mode. No timed assertion: the targets are reported, met or
# not. Uses the local stack (infra/local/stack.sh: moto on :5000, PostgreSQL) and debug
# binaries unless --release.
#
#   bench/latency.sh                             200 files over 60 s, 2 workers, both modes
#   bench/latency.sh --files 50 --over 20 --modes events
set -euo pipefail
cd "$(dirname "$0")/.."
FILES=200 OVER=60 WORKERS=2 INTERVAL=60s MODES="events listing" PROFILE=debug
while [ $# -gt 0 ]; do
  case "$1" in
    --files) FILES=$2; shift ;;
    --over) OVER=$2; shift ;;
    --workers) WORKERS=$2; shift ;;
    --interval) INTERVAL=$2; shift ;;
    --modes) MODES=$2; shift ;;
    --release) PROFILE=release ;;
    *) echo "usage: bench/latency.sh [--files N] [--over SECONDS] [--workers N] [--interval 60s] [--modes \"events listing\"] [--release]" >&2; exit 2 ;;
  esac
  shift
done

infra/local/stack.sh up >&2
# shellcheck disable=SC1090
. "$(infra/local/stack.sh envfile)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sluice-target}"
if [ "$PROFILE" = release ]; then cargo build --release --bins --quiet; else cargo build --bins --quiet; fi
BIN="$CARGO_TARGET_DIR/$PROFILE"
WORK="$(mktemp -d /tmp/sluice-latency.XXXXXX)"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT

run_mode() {
  local mode=$1 run schema
  run="lat-$mode-$(date +%s)-$RANDOM"
  schema="lat_${mode}_$RANDOM"
  export SLUICE_SOURCE="s3://$run/dms/" SLUICE_MANIFEST_TABLE="$run" SLUICE_STATE_SCHEMA="${schema}_state"
  export SLUICE_SCHEMAS="$schema" SLUICE_LOG_FORMAT=json RUST_LOG="${RUST_LOG:-warn}"
  psql -q "$SLUICE_DATABASE_URL" -v ON_ERROR_STOP=1 \
    -c "CREATE SCHEMA $schema; CREATE TABLE $schema.t (id int PRIMARY KEY, v text)"
  local out
  out="$("$BIN/sluice-coordinator" bootstrap --create-queue "$run")"
  export SLUICE_QUEUE_URL; SLUICE_QUEUE_URL="$(echo "$out" | sed -n 's/^queue: //p')"
  python3 - "$run" <<'PY'
import boto3, os, sys
boto3.client("s3", region_name=os.environ["AWS_REGION"]).create_bucket(Bucket=sys.argv[1])
PY
  local coordinator_args=(run --interval "$INTERVAL")
  if [ "$mode" = events ]; then
    out="$("$BIN/sluice-coordinator" bootstrap --create-queue "$run-events" --max-receive-count 5)"
    local events_url; events_url="$(echo "$out" | sed -n 's/^queue: //p')"
    python3 infra/local/eventbridge.py "$run" dms/ "$events_url" "$run" >/dev/null
    coordinator_args=(run --interval 1h --events-queue-url "$events_url")
  fi
  "$BIN/sluice-coordinator" "${coordinator_args[@]}" 2>"$WORK/$mode-coordinator.log" &
  PIDS+=($!)
  for i in $(seq 1 "$WORKERS"); do
    "$BIN/sluice-worker" run --concurrency 2 --wait-time 1 --worker-id "lat-$i" 2>"$WORK/$mode-worker-$i.log" &
    PIDS+=($!)
  done
  sleep 3
  # Puts at random moments over the window; writes key -> epoch seconds when the PUT returned.
  python3 - "$run" "dms/$schema/t/" "$FILES" "$OVER" "$WORK/$mode-puts.json" <<'PY'
import boto3, datetime, json, os, random, sys, threading, time
bucket, folder, n, over, out = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
s3 = boto3.client("s3", region_name=os.environ["AWS_REGION"])
start = time.time()
moments = sorted(random.uniform(0, over) for _ in range(n))
puts, used, lock = {}, set(), threading.Lock()
def put(i, at):
    time.sleep(max(0.0, start + at - time.time()))
    with lock:  # DMS's CDC names (YYYYMMDD-HHMMSSmmm), one millisecond apart at least
        ms = int(time.time() * 1000)
        while ms in used:
            ms += 1
        used.add(ms)
    t = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    key = f"{folder}{t.strftime('%Y%m%d-%H%M%S')}{ms % 1000:03d}.csv"
    s3.put_object(Bucket=bucket, Key=key, Body=f"I,{i},x\n".encode())
    with lock:
        puts[key] = time.time()
threads = [threading.Thread(target=put, args=(i, at)) for i, at in enumerate(moments)]
for t in threads: t.start()
for t in threads: t.join()
json.dump(puts, open(out, "w"))
PY
  local deadline=$((SECONDS + 300)) loaded=0
  while [ "$SECONDS" -lt "$deadline" ]; do
    loaded=$(psql -At "$SLUICE_DATABASE_URL" -c "SELECT count(*) FROM ${schema}_state.ledger" 2>/dev/null || echo 0)
    [ "$loaded" -ge "$FILES" ] && break
    sleep 1
  done
  psql -At -F ' ' "$SLUICE_DATABASE_URL" \
    -c "SELECT key, extract(epoch FROM loaded_at) FROM ${schema}_state.ledger" >"$WORK/$mode-loaded.txt"
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
  python3 - "$mode" "$FILES" "$WORK/$mode-puts.json" "$WORK/$mode-loaded.txt" <<'PY'
import json, sys
mode, n, puts = sys.argv[1], int(sys.argv[2]), json.load(open(sys.argv[3]))
loaded = dict(l.split(" ") for l in open(sys.argv[4]).read().split("\n") if l)
lat = sorted(float(loaded[k]) - puts[k] for k in puts if k in loaded)
q = lambda p: lat[min(len(lat) - 1, int(round(p * (len(lat) - 1))))] if lat else float("nan")
print(f"{mode:8} files {len(lat)}/{n} loaded | p50 {q(0.5):.2f} s | p90 {q(0.9):.2f} s | p99 {q(0.99):.2f} s | max {q(1.0):.2f} s")
PY
}

echo "case 8: landing-to-loaded latency, $FILES files over ${OVER}s, $WORKERS workers ($PROFILE binaries; logs in $WORK)"
for mode in $MODES; do run_mode "$mode"; done
