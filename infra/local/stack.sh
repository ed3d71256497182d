#!/usr/bin/env bash
# Local stack for Sluice: the moto server (S3, SQS, DynamoDB, and the CloudFormation, IAM and ECS
# that the AWS template's test needs) and PostgreSQL 15, both on loopback; plus cfn-lint, which
# infra/local/test.sh runs on infra/aws/*.yaml, and pyarrow, with which the integration tests
# write the Parquet files they load (tests/it/write_parquet.py). PostgreSQL runs two clusters: `main` for
# everything, `faults` for the tests that stop and restart it; both offer TLS with a test CA.
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
# A second cluster that the fault tests stop, start and restart at will, so the tests running
# beside them on the main cluster never notice.
FAULTS_CLUSTER=faults
FAULTS_PORT="${SLUICE_FAULTS_PORT:-5433}"
# A role with nothing but LOGIN: the security tests grant it exactly what the README lists.
RESTRICTED_USER=sluice_restricted
RESTRICTED_PASSWORD="${SLUICE_RESTRICTED_PASSWORD:-restricted-local-only}"
TLS_DIR="$STATE_DIR/tls"
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

# A CA and a server certificate for "localhost", made once: the TLS tests verify the server
# against this CA (sslmode=verify-full), and connecting by another name must fail.
ensure_tls_files() {
  if [ -f "$TLS_DIR/server.crt" ]; then return; fi
  command -v openssl >/dev/null || { apt-get update -qq && apt-get install -y -qq openssl >/dev/null; }
  log "making a test CA and a server certificate for localhost in $TLS_DIR"
  mkdir -p "$TLS_DIR"
  openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=sluice local test CA" \
    -keyout "$TLS_DIR/ca.key" -out "$TLS_DIR/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
    -keyout "$TLS_DIR/server.key" -out "$TLS_DIR/server.csr" 2>/dev/null
  printf 'subjectAltName=DNS:localhost\nbasicConstraints=CA:FALSE\n' >"$TLS_DIR/server.ext"
  openssl x509 -req -in "$TLS_DIR/server.csr" -CA "$TLS_DIR/ca.crt" -CAkey "$TLS_DIR/ca.key" \
    -CAcreateserial -days 3650 -extfile "$TLS_DIR/server.ext" -out "$TLS_DIR/server.crt" 2>/dev/null
  chmod 0755 "$TLS_DIR"
  chown postgres:postgres "$TLS_DIR/server.key" "$TLS_DIR/server.crt"
  chmod 0600 "$TLS_DIR/server.key"
}

# Creates (if missing) and starts a cluster; prints its port.
ensure_cluster() {
  local cluster=$1 port=$2
  if ! pg_lsclusters -h | awk '{print $1" "$2}' | grep -qx "$PG_VERSION $cluster"; then
    log "creating cluster $PG_VERSION/$cluster"
    pg_createcluster "$PG_VERSION" "$cluster" -p "$port" >/dev/null
  fi
  if ! pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$cluster" '$1==v && $2==c {print $4}' | grep -qx online; then
    log "starting postgresql $PG_VERSION/$cluster"
    # Its chatter ("Removed stale pid file.") goes to stderr: stdout carries only the port.
    pg_ctlcluster "$PG_VERSION" "$cluster" start >&2
    touch "$STATE_DIR/started-postgres-$cluster"
  fi
  port="$(pg_lsclusters -h | awk -v v="$PG_VERSION" -v c="$cluster" '$1==v && $2==c {print $3}')"
  for _ in $(seq 1 60); do
    pg_isready -q -h 127.0.0.1 -p "$port" && break
    sleep 0.5
  done
  pg_isready -q -h 127.0.0.1 -p "$port" || { log "postgresql $cluster did not become ready"; exit 1; }
  # TLS on (clients choose; sslmode=disable still works), with the test certificate.
  as_postgres psql -q -p "$port" -v ON_ERROR_STOP=1 >/dev/null <<SQL
ALTER SYSTEM SET ssl = on;
ALTER SYSTEM SET ssl_cert_file = '$TLS_DIR/server.crt';
ALTER SYSTEM SET ssl_key_file = '$TLS_DIR/server.key';
SELECT pg_reload_conf();
SQL
  # A login role that is not a superuser and owns one database: what Sluice needs locally.
  as_postgres psql -q -p "$port" -v ON_ERROR_STOP=1 -v pw="$PG_PASSWORD" -v rpw="$RESTRICTED_PASSWORD" >/dev/null <<SQL
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', '$PG_USER', :'pw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$PG_USER') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', '$PG_USER', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', '$PG_DB', '$PG_USER')
 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$PG_DB') \gexec
SELECT format('CREATE ROLE %I LOGIN PASSWORD %L', '$RESTRICTED_USER', :'rpw')
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '$RESTRICTED_USER') \gexec
SELECT format('ALTER ROLE %I LOGIN PASSWORD %L', '$RESTRICTED_USER', :'rpw') \gexec
REVOKE ALL ON DATABASE $PG_DB FROM PUBLIC;
GRANT CONNECT ON DATABASE $PG_DB TO $PG_USER;
SQL
  echo "$port"
}

ensure_postgres_running() {
  ensure_tls_files
  PG_PORT="$(ensure_cluster "$PG_CLUSTER" "$PG_PORT")"
  FAULTS_PORT="$(ensure_cluster "$FAULTS_CLUSTER" "$FAULTS_PORT")"
  local p
  for p in "$PG_PORT" "$FAULTS_PORT"; do
    [[ "$p" =~ ^[0-9]+$ ]] || { log "could not read a cluster's port (got: $p)"; exit 1; }
  done
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

# pyarrow writes the Parquet files of tests/it/parquet.rs, as DMS would (tests only: the worker
# reads Parquet with the Rust `parquet` crate).
ensure_pyarrow() {
  if python3 -c 'import pyarrow.parquet' 2>/dev/null; then return; fi
  log "installing pyarrow from PyPI"
  python3 -m pip install -q 'pyarrow>=15'
}

write_env() {
  cat >"$ENV_FILE" <<ENV
export AWS_ENDPOINT_URL=http://127.0.0.1:$MOTO_PORT
export AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=sluice-local
export AWS_SECRET_ACCESS_KEY=sluice-local-secret
export SLUICE_DATABASE_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
export SLUICE_PG_PORT=$PG_PORT
export SLUICE_TEST_PG_CA=$TLS_DIR/ca.crt
export SLUICE_TEST_RESTRICTED_URL=postgres://$RESTRICTED_USER:$RESTRICTED_PASSWORD@127.0.0.1:$PG_PORT/$PG_DB
export SLUICE_TEST_FAULTS_CLUSTER="$PG_VERSION $FAULTS_CLUSTER"
export SLUICE_TEST_FAULTS_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$FAULTS_PORT/$PG_DB
ENV
}

up() {
  mkdir -p "$STATE_DIR"
  command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl >/dev/null; }
  ensure_postgres_installed
  ensure_postgres_running
  ensure_moto
  ensure_cfn_lint
  ensure_pyarrow
  write_env
  log "up: moto on :$MOTO_PORT, postgresql on :$PG_PORT (fault tests: :$FAULTS_PORT); env in $ENV_FILE"
}

down() {
  if [ -f "$STATE_DIR/moto.pid" ]; then
    kill "$(cat "$STATE_DIR/moto.pid")" 2>/dev/null || true
    rm -f "$STATE_DIR/moto.pid"
    log "stopped moto"
  fi
  for cluster in "$PG_CLUSTER" "$FAULTS_CLUSTER"; do
    if [ -f "$STATE_DIR/started-postgres-$cluster" ]; then
      pg_ctlcluster "$PG_VERSION" "$cluster" stop || true
      rm -f "$STATE_DIR/started-postgres-$cluster"
      log "stopped postgresql $cluster"
    fi
  done
}

case "${1:-up}" in
  up) up ;;
  down) down ;;
  env) cat "$ENV_FILE" ;;
  envfile) echo "$ENV_FILE" ;;
  *) echo "usage: $0 up|down|env|envfile" >&2; exit 2 ;;
esac
