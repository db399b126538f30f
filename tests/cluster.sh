#!/usr/bin/env bash
# The local pgshard cluster: one coordinator and N workers, each its own PostgreSQL 15 instance
# on loopback, run as the `postgres` system user.
#
#   tests/cluster.sh start    create what is missing, (re)start every node, register workers
#   tests/cluster.sh stop     stop every node of the cluster; no server process is left behind
#   tests/cluster.sh clean    stop, then delete the data directories
#   tests/cluster.sh start-node N   create and start worker node N (port PGSHARD_PORT + N) without
#                             registering it: for `pgshard.add_worker` to show growing the cluster
#
# Environment:
#   PGSHARD_PORT         coordinator port (default 55432); worker i listens on PGSHARD_PORT + i
#   PGSHARD_WORKERS      number of workers (default 2)
#   PGSHARD_CLUSTER_DIR  where the data directories live (default /tmp/pgshard-cluster-$PORT)
#   PGSHARD_EXTRA_HBA    extra pg_hba.conf lines for the workers, placed before the trust rules
#   PGSHARD_MASTER_KEY_HEX  the coordinator's master key (64 hex digits) when the cluster is
#                        created (default: random)
set -euo pipefail

PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
PORT=${PGSHARD_PORT:-55432}
WORKERS=${PGSHARD_WORKERS:-2}
DIR=${PGSHARD_CLUSTER_DIR:-/tmp/pgshard-cluster-$PORT}
DB=pgshard

# PostgreSQL refuses to run as root; the servers run as `postgres`. RUST_BACKTRACE is dropped so
# that Rust backtraces never leak into error details (and into expected test output).
as_pg() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- env -u RUST_BACKTRACE "$@"
  else
    env -u RUST_BACKTRACE "$@"
  fi
}

node_names() {
  echo coordinator
  for i in $(seq 1 "$WORKERS"); do echo "worker_$i"; done
}

node_port() {
  case "$1" in
    coordinator) echo "$PORT" ;;
    worker_*) echo $((PORT + ${1#worker_})) ;;
  esac
}

psql_node() {
  local port=$1; shift
  as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U postgres "$@"
}

# The coordinator's master key for encrypted columns: 32 random bytes as hex (or
# PGSHARD_MASTER_KEY_HEX, which the tests fix so that blind-index tags are stable), made once
# per cluster, readable by the server's user only (pgshard refuses a key file others can read).
master_key_file() {
  local file="$DIR/master.key"
  if [ ! -s "$file" ]; then
    (umask 077
     if [ -n "${PGSHARD_MASTER_KEY_HEX:-}" ]; then
       printf '%s\n' "$PGSHARD_MASTER_KEY_HEX" > "$file"
     else
       head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$file"
     fi)
  fi
  chown postgres: "$file" 2>/dev/null || true
  chmod 600 "$file"
  echo "$file"
}

write_config() {
  local name=$1 data=$2 port
  port=$(node_port "$name")
  {
    echo "# written by tests/cluster.sh on every start"
    echo "port = $port"
    echo "listen_addresses = '127.0.0.1'"
    echo "unix_socket_directories = '$DIR'"
    echo "max_connections = 200"
    echo "max_prepared_transactions = 100"
    echo "logging_collector = off"
    # Shard moves copy with logical replication between workers.
    echo "wal_level = logical"
    if [ "$name" = coordinator ]; then
      echo "shared_preload_libraries = 'pgshard'"
      echo "pgshard.key_file = '$(master_key_file)'"
    fi
  } > "$data/pgshard_cluster.conf"
  grep -q "^include_if_exists = 'pgshard_cluster.conf'" "$data/postgresql.conf" ||
    echo "include_if_exists = 'pgshard_cluster.conf'" >> "$data/postgresql.conf"
  {
    echo "# written by tests/cluster.sh on every start"
    echo "local all all trust"
    if [ "$name" != coordinator ] && [ -n "${PGSHARD_EXTRA_HBA:-}" ]; then
      printf '%s\n' "$PGSHARD_EXTRA_HBA"
    fi
    echo "host all all 127.0.0.1/32 trust"
    echo "host all all ::1/128 trust"
  } > "$data/pg_hba.conf"
  chown postgres: "$data/pgshard_cluster.conf" "$data/pg_hba.conf" 2>/dev/null || true
}

start_node() {
  local name=$1 data="$DIR/$1"
  if [ ! -f "$data/PG_VERSION" ]; then
    as_pg "$PG_BIN/initdb" -D "$data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
  fi
  write_config "$name" "$data"
  if as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    # Restart so that a freshly installed pgshard library and the settings above take effect.
    as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w -m fast restart >/dev/null
  else
    as_pg "$PG_BIN/pg_ctl" -D "$data" -l "$data/server.log" -w start >/dev/null
  fi
}

# Whether a process exists and is not a zombie waiting to be reaped.
alive() {
  [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null
}

stop_node() {
  local data="$DIR/$1" pid
  [ -f "$data/postmaster.pid" ] || return 0
  pid=$(head -n 1 "$data/postmaster.pid")
  # Only a running server of this data directory is touched: after a crash the pid in a stale
  # postmaster.pid may belong to an unrelated process.
  as_pg "$PG_BIN/pg_ctl" -D "$data" status >/dev/null 2>&1 || return 0
  # A test may have paused a node (SIGSTOP) to simulate a hung host; a paused server cannot
  # act on a shutdown request.
  kill -CONT "$pid" 2>/dev/null || true
  pkill -CONT -P "$pid" 2>/dev/null || true
  as_pg "$PG_BIN/pg_ctl" -D "$data" -w -t 30 -m fast stop >/dev/null 2>&1 ||
    as_pg "$PG_BIN/pg_ctl" -D "$data" -w -m immediate stop >/dev/null 2>&1 || true
  # The postmaster was re-parented to init when pg_ctl started it; wait (bounded) until it is
  # gone and, where init reaps promptly, reaped too.
  for _ in $(seq 1 100); do
    [ -e "/proc/$pid" ] || break
    sleep 0.1
  done
  if alive "$pid"; then
    echo "server of $data (pid $pid) did not stop" >&2
    return 1
  fi
}

# The extension's SQL changes between builds of one version (0.1.0 has no upgrade scripts yet):
# when the installed script differs from the one the coordinator's extension was created from,
# the extension is re-created. Development clusters only; it drops pgshard's metadata.
refresh_extension() {
  local script sum stamp="$DIR/coordinator/pgshard_script.md5"
  script=$(ls "$($PG_BIN/pg_config --sharedir)"/extension/pgshard--*.sql 2>/dev/null | head -n 1)
  [ -n "$script" ] || { echo "pgshard is not installed (run make install)" >&2; exit 1; }
  sum=$(md5sum "$script" | cut -d' ' -f1)
  local existing
  existing=$(psql_node "$PORT" -d "$DB" -tAc "SELECT 1 FROM pg_extension WHERE extname = 'pgshard'")
  if [ -n "$existing" ] && [ "$(cat "$stamp" 2>/dev/null)" != "$sum" ]; then
    echo "pgshard's SQL changed since this cluster was created: re-creating the extension"
    psql_node "$PORT" -d "$DB" -c "DROP EXTENSION IF EXISTS pgshard CASCADE"
    # The metadata is gone, so the workers' shard tables and prepared transactions are strays:
    # start the workers' databases afresh too.
    local data i wport gid
    for data in "$DIR"/worker_*/; do
      [ -f "$data/PG_VERSION" ] || continue
      i=$(basename "$data"); i=${i#worker_}
      wport=$((PORT + i))
      for gid in $(psql_node "$wport" -d "$DB" -tAc "SELECT gid FROM pg_prepared_xacts WHERE database = current_database()" 2>/dev/null); do
        psql_node "$wport" -d "$DB" -c "ROLLBACK PREPARED '$gid'" >/dev/null
      done
      psql_node "$wport" -d postgres -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" >/dev/null
      psql_node "$wport" -d postgres -c "CREATE DATABASE $DB" >/dev/null
    done
  fi
  psql_node "$PORT" -d "$DB" -c "CREATE EXTENSION IF NOT EXISTS pgshard" 2>&1 | grep -v 'already exists' || true
  echo "$sum" > "$stamp"
}

start() {
  mkdir -p "$DIR"
  chown postgres: "$DIR" 2>/dev/null || true
  for name in $(node_names); do
    start_node "$name"
    local port
    port=$(node_port "$name")
    if [ -z "$(psql_node "$port" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
      psql_node "$port" -d postgres -c "CREATE DATABASE $DB"
    fi
  done
  # Worker nodes added later with start-node (registered by hand) start with the cluster.
  for data in "$DIR"/worker_*/; do
    local extra
    extra=$(basename "$data")
    [ -f "$data/PG_VERSION" ] && [ "${extra#worker_}" -gt "$WORKERS" ] && start_node "$extra"
  done
  refresh_extension
  for i in $(seq 1 "$WORKERS"); do
    psql_node "$PORT" -d "$DB" -tAc "
      SELECT pgshard.add_worker('w$i', 'host=127.0.0.1 port=$((PORT + i)) dbname=$DB user=postgres')
      WHERE NOT EXISTS (SELECT FROM pgshard.workers WHERE name = 'w$i')" >/dev/null
  done
  echo "pgshard cluster is up: coordinator on 127.0.0.1:$PORT, $WORKERS workers on ports $((PORT + 1))-$((PORT + WORKERS)), data in $DIR"
  echo "connect with: psql -h 127.0.0.1 -p $PORT -U postgres $DB"
}

stop() {
  [ -d "$DIR" ] || return 0
  for name in $(node_names); do stop_node "$name"; done
  # Nodes beyond the current PGSHARD_WORKERS (a cluster once started with more workers).
  for data in "$DIR"/*/; do
    [ -f "$data/postmaster.pid" ] && stop_node "$(basename "$data")"
  done
  echo "pgshard cluster in $DIR is stopped"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  clean) stop; rm -rf "$DIR" ;;
  start-node)
    [ -n "${2:-}" ] || { echo "usage: $0 start-node N" >&2; exit 2; }
    start_node "worker_$2"
    port=$(node_port "worker_$2")
    if [ -z "$(psql_node "$port" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$DB'")" ]; then
      psql_node "$port" -d postgres -c "CREATE DATABASE $DB"
    fi
    echo "worker node $2 is up on 127.0.0.1:$port (not registered)" ;;
  *) echo "usage: $0 start|stop|clean|start-node N" >&2; exit 2 ;;
esac
