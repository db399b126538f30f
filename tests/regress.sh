#!/usr/bin/env bash
# Runs the pg_regress suites of pg_regress/ against a fresh local cluster on its own ports (so it
# never clashes with a cluster started by `make cluster`), then stops that cluster, also when a
# test failed. Exit status: 0 only when every test passed.
#
# Tests get psql variables :coordinator_port, :worker_1_port … :worker_N_port, and the
# environment variables PGSHARD_CLUSTER_DIR, PGSHARD_PORT and PATH (with pg_ctl) for `\!`.
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PG_REGRESS=${PG_REGRESS:-/usr/lib/postgresql/15/lib/pgxs/src/test/regress/pg_regress}
export PGSHARD_PORT=${PGSHARD_TEST_PORT:-56432}
export PGSHARD_WORKERS=${PGSHARD_TEST_WORKERS:-2}
export PGSHARD_CLUSTER_DIR=${PGSHARD_TEST_CLUSTER_DIR:-/tmp/pgshard-test-$PGSHARD_PORT}
# A role that must authenticate with a password on the workers, for the auth-failure tests.
# A fixed master key (a test key, never used elsewhere): blind-index tags in EXPLAIN output are
# then the same on every run.
export PGSHARD_MASTER_KEY_HEX=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
export PGSHARD_EXTRA_HBA="host all regress_password_user 127.0.0.1/32 scram-sha-256"

cluster() { "$HERE/tests/cluster.sh" "$@"; }

cluster clean >/dev/null
trap 'cluster stop >/dev/null' EXIT
cluster start

run_dir="$PGSHARD_CLUSTER_DIR/regress"
rm -rf "$run_dir"
mkdir -p "$run_dir/bin"
cp -r "$HERE/pg_regress/sql" "$HERE/pg_regress/expected" "$HERE/pg_regress/schedule" "$run_dir/"

# pg_regress runs `<bindir>/psql`; this wrapper hands every test the cluster's ports.
vars="-v coordinator_port=$PGSHARD_PORT"
for i in $(seq 1 "$PGSHARD_WORKERS"); do
  vars="$vars -v worker_${i}_port=$((PGSHARD_PORT + i))"
done
cat > "$run_dir/bin/psql" <<EOF
#!/bin/sh
exec "$PG_BIN/psql" $vars "\$@"
EOF
chmod 755 "$run_dir/bin/psql"
[ "$(id -u)" = 0 ] && chown -R postgres: "$run_dir"

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

set +e
as_pg env -u RUST_BACKTRACE PATH="$PG_BIN:$PATH" \
  PGSHARD_CLUSTER_DIR="$PGSHARD_CLUSTER_DIR" PGSHARD_PORT="$PGSHARD_PORT" \
  "$PG_REGRESS" --use-existing --host=127.0.0.1 --port="$PGSHARD_PORT" --user=postgres \
  --dbname=pgshard --bindir="$run_dir/bin" --inputdir="$run_dir" --outputdir="$run_dir" \
  --schedule="$run_dir/schedule" "$@" | tee "$run_dir/summary.log"
status=${PIPESTATUS[0]}
set -e

if [ "$status" != 0 ] && [ -f "$run_dir/regression.diffs" ]; then
  echo "---- regression.diffs ----"
  cat "$run_dir/regression.diffs"
  # Keep the actual output where a developer can copy it over expected/ after review.
  rm -rf "$HERE/pg_regress/results"
  cp -r "$run_dir/results" "$HERE/pg_regress/results" 2>/dev/null || true
fi
# One plain closing line for CI: "N passed, N failed".
total=$(grep -c ' \.\.\. ' "$run_dir/summary.log" || true)
failed=$(grep -c ' \.\.\. FAILED' "$run_dir/summary.log" || true)
echo "pg_regress: $((total - failed)) passed, $failed failed"
exit "$status"
