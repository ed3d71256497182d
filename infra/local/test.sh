#!/usr/bin/env bash
# Every test of Sluice: the AWS template (cfn-lint, static checks), formatting, lints, unit tests
# and the integration tests against the local stack (moto + PostgreSQL), which this script
# installs and starts when missing.
# `.ci/run` calls exactly this.
set -euo pipefail
cd "$(dirname "$0")/../.."
# Outside the clone, so repeated runs on one machine stay fast; nothing depends on it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/sluice-target}"
export CARGO_TERM_COLOR=never

infra/local/stack.sh up
# shellcheck disable=SC1090
. "$(infra/local/stack.sh envfile)"

echo "== cfn-lint infra/aws/*.yaml"
# The cfn-lint command, run through python3 like moto: no dependence on where pip puts scripts.
python3 -c 'import sys; from cfnlint.runner import main; sys.exit(main())' infra/aws/*.yaml
echo "== template checks (least privilege against the code, secrets, table, timing, scaling)"
PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s infra/aws -p 'test_*.py'

rustup component add rustfmt clippy >/dev/null 2>&1 || true
echo "== cargo fmt --check"
cargo fmt --all -- --check
echo "== cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "== the test beds' schemas left by earlier runs (it_*), dropped one by one"
# Each test makes its own schemas (`it_<label>_<pid>_<n>_<random>`, `..._state`) and leaves
# them, for a look after a failure; the next run drops those the tests' role may drop (not the
# few a test makes as the restricted role), so a machine that runs the tests again and again keeps
# a small catalog. Schemas of a test process still running (another run on this database) stay.
live=$(ls /proc | grep -E '^[0-9]+$' | tr '\n' ' ')
psql -X -At -v ON_ERROR_STOP=1 "$SLUICE_DATABASE_URL" \
  -c "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname LIKE 'it\_%' AND pg_has_role(nspowner, 'USAGE')" |
  awk -v live="$live" '
    BEGIN { n = split(live, p, " "); for (i = 1; i <= n; i++) alive[p[i]] = 1 }
    match($0, /_[0-9]+_[0-9]+_[0-9]+(_[a-z_]+)?$/) { split(substr($0, RSTART + 1), f, "_"); if (f[1] in alive) next }
    { printf "DROP SCHEMA IF EXISTS \"%s\" CASCADE;\n", $0 }' |
  PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 "$SLUICE_DATABASE_URL" >/dev/null
echo "== build binaries (the integration tests start sluice-worker as a process)"
cargo build --workspace --bins --quiet
echo "== tests"
cargo test --workspace --no-fail-fast
