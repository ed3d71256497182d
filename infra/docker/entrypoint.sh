#!/bin/bash
# Entrypoint of the Sluice image: runs the command it is given (`sluice-worker run`,
# `sluice-coordinator run --interval 60s`, ...) with `exec`, so the binary becomes PID 1 and
# receives ECS's SIGTERM itself.
#
# On ECS the database password arrives alone, from Secrets Manager through the task definition's
# `Secrets` (SLUICE_DB_PASSWORD), next to plain SLUICE_DB_HOST, SLUICE_DB_PORT, SLUICE_DB_NAME and
# SLUICE_DB_USER (and SLUICE_DB_SSLMODE, SLUICE_DB_SSLROOTCERT for TLS). The worker takes one connection URL (SLUICE_DATABASE_URL), so this script
# assembles it, percent-encoding user, password and database name so that any character in them
# survives (tokio-postgres decodes them). The URL form also keeps the password out of logs: the
# worker logs its settings with `postgres://user:***@host/db`. A SLUICE_DATABASE_URL that is
# already set is used as it is. Nothing here prints a value.
set -euo pipefail

urlencode() {
  local LC_ALL=C
  local s=$1 out='' c i
  for ((i = 0; i < ${#s}; i++)); do
    c=${s:i:1}
    case $c in
      [A-Za-z0-9._~-]) out+=$c ;;
      *) printf -v c '%%%02X' "'$c"; out+=$c ;;
    esac
  done
  printf '%s' "$out"
}

if [ -z "${SLUICE_DATABASE_URL:-}" ] && [ -n "${SLUICE_DB_PASSWORD+set}" ]; then
  for v in SLUICE_DB_HOST SLUICE_DB_NAME SLUICE_DB_USER; do
    if [ -z "${!v:-}" ]; then
      echo "sluice-entrypoint: SLUICE_DB_PASSWORD is set but $v is not" >&2
      exit 2
    fi
  done
  port=${SLUICE_DB_PORT:-5432}
  case $port in
    '' | *[!0-9]*) echo "sluice-entrypoint: SLUICE_DB_PORT must be a number" >&2; exit 2 ;;
  esac
  SLUICE_DATABASE_URL="postgres://$(urlencode "$SLUICE_DB_USER"):$(urlencode "$SLUICE_DB_PASSWORD")@${SLUICE_DB_HOST}:${port}/$(urlencode "$SLUICE_DB_NAME")"
  # TLS (libpq's sslmode and sslrootcert; see the README): verify-full with the RDS bundle on ECS.
  query=''
  if [ -n "${SLUICE_DB_SSLMODE:-}" ]; then query+="sslmode=$(urlencode "$SLUICE_DB_SSLMODE")"; fi
  if [ -n "${SLUICE_DB_SSLROOTCERT:-}" ]; then query+="${query:+&}sslrootcert=$(urlencode "$SLUICE_DB_SSLROOTCERT")"; fi
  if [ -n "$query" ]; then SLUICE_DATABASE_URL+="?$query"; fi
  export SLUICE_DATABASE_URL
  unset SLUICE_DB_PASSWORD
fi

if [ "$#" -eq 0 ]; then
  echo "usage: sluice-entrypoint sluice-worker run | sluice-coordinator COMMAND ..." >&2
  exit 2
fi
exec "$@"
