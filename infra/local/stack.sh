#!/usr/bin/env bash
# Local stack for Sluice: the moto server (S3, SQS, DynamoDB, and the CloudFormation, IAM and ECS
# that the AWS template's test needs) and PostgreSQL 15, both on loopback; plus cfn-lint, which
# infra/local/test.sh runs on infra/aws/*.yaml.
#
#   infra/local/stack.sh up     install what is missing, start what is not running, write the env file
#   infra/local/stack.sh down   stop what `up` started (and nothing else)
#   infra/local/stack.sh env    print the env file (source it: `. "$(infra/local/stack.sh envfile)"`)
#
# State (pid files, logs, the env file) lives in $SLUICE_LOCAL_DIR (default /var/tmp/sluice-local),
# outside the clone. Safe to run `up` again: it only starts what is down.
set -euo pipefail

STATE_DIR="${SLUICE_LOCAL_DIR:-/var/tmp/sluice-local}"
MOTO_PORT="${SLUICE_MOTO_PORT:-5000}"
PG_VERSION=15
PG_CLUSTER=main
PG_PORT="${SLUICE_PG_PORT:-5432}"
PG_USER=sluice
PG_PASSWORD="${SLUICE_PG_PASSWORD:-sluice-local-only}"
PG_DB=sluice
ENV_FILE="$STATE_DIR/env"

log() { printf 'stack: %s\n' "$*" >&2; }

as_postgres() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else sudo -u postgres "$@"; fi
}

ensure_postgres_installed() {
  if [ -x "/usr/lib/postgresql/$PG_VERSION/bin/postgres" ] && command -v pg_ctlcluster >/dev/null; then
    return
  fi
  log "installing postgresql-$PG_VERSION from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "postgresql-$PG_VERSION" postgresql-client >/dev/null
}

ensure_postgres_running() {
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PG_VERSION $PG_CLUSTER"; then
    log "creating cluster $PG_VERSION/$PG_CLUSTER"
    pg_createcluster "$PG_VERSION" "$PG_CLUSTER" -p "$PG_PORT" >/dev/null
  fi
  if ! pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c {print $4}' | grep -qx online; then
    log "starting postgresql $PG_VERSION/$PG_CLUSTER"
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" start
    touch "$STATE_DIR/started-postgres"
  fi
  PG_PORT="$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$PG_CLUSTER" '$1==v && $2==c {print $3}')"
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$PG_PORT" && break
    sleep 0.5
  done
  pg_isready -q -h 127.0.0.1 -p "$PG_PORT" || { log "postgresql did not become ready"; exit 1; }
  # A login role that is not a superuser and owns one database: what Sluice needs locally.
  as_postgres psql -q -p "$PG_PORT" -v ON_ERROR_STOP=1 -v pw="$PG_PASSWORD" >/dev/null <<SQL
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', '$PG_USER', :'pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', '$PG_USER', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', '$PG_DB', '$PG_USER')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB') \gexec
SQL
}

moto_up() { curl -fsS -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" 2>/dev/null; }

ensure_moto() {
  if moto_up; then return; fi
  if ! python3 -c 'import moto.server, flask_cors' 2>/dev/null; then
    log "installing moto[server] from PyPI"
    python3 -m pip install -q 'moto[server]>=5,<6'
  fi
  log "starting moto on 127.0.0.1:$MOTO_PORT"
  # `python3 -m` rather than the `moto_server` script: no dependence on where pip put scripts.
  nohup python3 -m moto.server -H 127.0.0.1 -p "$MOTO_PORT" >"$STATE_DIR/moto.log" 2>&1 &
  echo $! >"$STATE_DIR/moto.pid"
  for _ in $(seq 1 120); do
    moto_up && return
    sleep 0.25
  done
  log "moto did not start; see $STATE_DIR/moto.log"
  exit 1
}

# cfn-lint checks the CloudFormation templates (infra/local/test.sh); its loader also reads the
# template for infra/aws/test_template.py and infra/aws/moto_stack.py.
ensure_cfn_lint() {
  if python3 -c 'import cfnlint.runner' 2>/dev/null; then return; fi
  log "installing cfn-lint from PyPI"
  python3 -m pip install -q 'cfn-lint>=1,<2'
}

write_env() {
  cat >"$ENV_FILE" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=sluice-local
export AWS_SECRET_ACCESS_KEY=sluice-local-secret
export SLUICE_DATABASE_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
export SLUICE_PG_PORT=$PG_PORT
ENV
}

up() {
  mkdir -p "$STATE_DIR"
  command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
  ensure_postgres_installed
  ensure_postgres_running
  ensure_moto
  ensure_cfn_lint
  write_env
  log "up: moto on :$MOTO_PORT, postgresql on :$PG_PORT; env in $ENV_FILE"
}

down() {
  if [ -f "$STATE_DIR/moto.pid" ]; then
    kill "$(cat "$STATE_DIR/moto.pid")" 2>/dev/null || true
    rm -f "$STATE_DIR/moto.pid"
    log "stopped moto"
  fi
  if [ -f "$STATE_DIR/started-postgres" ]; then
    pg_ctlcluster "$PG_VERSION" "$PG_CLUSTER" stop || true
    rm -f "$STATE_DIR/started-postgres"
    log "stopped postgresql"
  fi
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  env) cat "$ENV_FILE" ;;
  envfile) echo "$ENV_FILE" ;;
  *) echo "usage: $0 up|down|env|envfile" >&2; exit 2 ;;
esac
