#!/usr/bin/env bash
# `make bench`: the same workloads, in one run on this machine, against three systems that are all
# PostgreSQL 15 with identical settings on loopback:
#   single   one plain server, tables local                       (database bench_single)
#   pgshard  pgshard coordinator + 2 workers, 8 shards             (database pgshard)
#   fdw      a plain coordinator with native PARTITION BY HASH tables whose 8 partitions are
#            postgres_fdw foreign tables on the same 2 workers     (database bench_fdw)
# Each figure is measured RUNS times (median reported). Raw results go to bench/results.tsv;
# bench/report.py turns them into docs/benchmarks.md and docs/benchmarks.svg.
#
#   QUICK=1   shorter runs and smaller loads (under 10 minutes)
set -euo pipefail

HERE=$(cd "$(dirname "$0")/.." && pwd)
PG_BIN=${PG_BIN:-/usr/lib/postgresql/15/bin}
QUICK=${QUICK:-0}
export PGSHARD_PORT=${BENCH_PORT:-57432}
export PGSHARD_WORKERS=2
export PGSHARD_CLUSTER_DIR=${BENCH_DIR:-/tmp/pgshard-bench}
PLAIN_PORT=$((PGSHARD_PORT + 10))
PLAIN_DIR="$PGSHARD_CLUSTER_DIR/plain"
RESULTS="$HERE/bench/results.tsv"

SCALE=10                        # pgbench scale: 100,000 accounts per unit (W1, W2, W5, W6)
RUNS=3
if [ "$QUICK" = 1 ]; then
  SECONDS_PER_RUN=5; LOAD_ROWS=500000; ENCRYPTED_ROWS=200000; QUERY_REPEATS=8
else
  SECONDS_PER_RUN=30; LOAD_ROWS=1000000; ENCRYPTED_ROWS=200000; QUERY_REPEATS=20
fi
SYSTEMS="single pgshard fdw"
# In pgbench runs, a statement stuck on a cross-server lock wait (fdw cannot detect those
# deadlocks) fails instead of hanging the benchmark.
PGBENCH_OPTIONS="-c statement_timeout=20s"

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- env -u RUST_BACKTRACE "$@"; else "$@"; fi
}
port_of() { case "$1" in single|fdw) echo "$PLAIN_PORT" ;; pgshard) echo "$PGSHARD_PORT" ;; esac; }
db_of() { case "$1" in single) echo bench_single ;; fdw) echo bench_fdw ;; pgshard) echo pgshard ;; esac; }
sql() { local system=$1; shift; as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$(port_of "$system")" -U postgres -d "$(db_of "$system")" "$@"; }
worker_sql() { as_pg "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$((PGSHARD_PORT + $1))" -U postgres "${@:2}"; }
pgbench_on() { local system=$1; shift; as_pg env PGOPTIONS="$PGBENCH_OPTIONS" "$PG_BIN/pgbench" -h 127.0.0.1 -p "$(port_of "$system")" -U postgres "$@" "$(db_of "$system")" 2>&1 || true; }
record() { printf '%s\t%s\t%s\t%s\n' "$@" >> "$RESULTS"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.6f\", $1 }"; }
log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

stop_all() {
  as_pg "$PG_BIN/pg_ctl" -D "$PLAIN_DIR" -w -m fast stop >/dev/null 2>&1 || true
  "$HERE/tests/cluster.sh" stop >/dev/null 2>&1 || true
}
trap stop_all EXIT

# ---- the servers ----
log "starting the pgshard cluster (ports $PGSHARD_PORT-$((PGSHARD_PORT + 2))) and the plain server ($PLAIN_PORT)"
"$HERE/tests/cluster.sh" clean >/dev/null
"$HERE/tests/cluster.sh" start >/dev/null
mkdir -p "$PLAIN_DIR"; chown postgres: "$PLAIN_DIR" "$PGSHARD_CLUSTER_DIR" 2>/dev/null || true
as_pg "$PG_BIN/initdb" -D "$PLAIN_DIR" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >/dev/null
# The settings tests/cluster.sh gives every node, without pgshard.
cat >> "$PLAIN_DIR/postgresql.conf" <<CONF
port = $PLAIN_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGSHARD_CLUSTER_DIR'
max_connections = 200
max_prepared_transactions = 100
logging_collector = off
wal_level = logical
CONF
as_pg "$PG_BIN/pg_ctl" -D "$PLAIN_DIR" -l "$PLAIN_DIR/server.log" -w start >/dev/null
as_pg "$PG_BIN/psql" -X -q -h 127.0.0.1 -p "$PLAIN_PORT" -U postgres -d postgres \
  -c "CREATE DATABASE bench_single" -c "CREATE DATABASE bench_fdw"
for w in 1 2; do worker_sql "$w" -d postgres -c "CREATE DATABASE bench_fdw"; done

: > "$RESULTS"
record meta machine cpu "$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')"
record meta machine cores "$(nproc)"
record meta machine memory "$(awk '/MemTotal/ {printf "%.0f GiB", $2 / 1048576}' /proc/meminfo)"
record meta machine kernel "$(uname -r)"
record meta machine postgres "$("$PG_BIN/postgres" --version)"
record meta machine commit "$(git -C "$HERE" rev-parse --short HEAD 2>/dev/null || echo unknown)"
record meta machine mode "$([ "$QUICK" = 1 ] && echo quick || echo full)"
record meta machine seconds_per_run "$SECONDS_PER_RUN"
record meta machine load_rows "$LOAD_ROWS"
record meta machine encrypted_rows "$ENCRYPTED_ROWS"
record meta machine scale "$SCALE"

# ---- the data: pgbench tables at SCALE on every system ----
log "loading pgbench scale $SCALE into single and pgshard"
pgbench_on single -i -q -s "$SCALE" >/dev/null
pgbench_on pgshard -i -q -s "$SCALE" >/dev/null
sql pgshard <<'SQL' >/dev/null
SELECT pgshard.shard_table('pgbench_accounts', 'aid', shard_count => 8);
SELECT pgshard.shard_table('pgbench_tellers', 'tid', shard_count => 8);
SELECT pgshard.shard_table('pgbench_branches', 'bid', shard_count => 8);
SELECT pgshard.shard_table('pgbench_history', 'aid', shard_count => 8);
-- pgbench -i vacuumed and analyzed the tables before they were sharded; the shards get the
-- same, as single's tables and fdw's partitions do.
VACUUM ANALYZE pgbench_accounts, pgbench_branches, pgbench_tellers, pgbench_history;
SQL

log "building the fdw system: 8 hash partitions per table as foreign tables on the 2 workers"
fdw_tables() {
  # name, columns, partition key
  echo "pgbench_accounts|aid int NOT NULL, bid int, abalance int, filler char(84)|aid"
  echo "pgbench_branches|bid int NOT NULL, bbalance int, filler char(88)|bid"
  echo "pgbench_tellers|tid int NOT NULL, bid int, tbalance int, filler char(84)|tid"
  echo "pgbench_history|tid int, bid int, aid int, delta int, mtime timestamp, filler char(22)|aid"
  echo "load_target|aid int NOT NULL, bid int, abalance int, filler char(84)|aid"
}
{
  echo "CREATE EXTENSION postgres_fdw;"
  for w in 1 2; do
    echo "CREATE SERVER w$w FOREIGN DATA WRAPPER postgres_fdw OPTIONS (host '127.0.0.1', port '$((PGSHARD_PORT + w))', dbname 'bench_fdw', async_capable 'true', batch_size '1000');"
    echo "CREATE USER MAPPING FOR postgres SERVER w$w OPTIONS (user 'postgres');"
  done
  while IFS='|' read -r name columns key; do
    echo "CREATE TABLE $name ($columns) PARTITION BY HASH ($key);"
    for p in 0 1 2 3 4 5 6 7; do
      echo "CREATE FOREIGN TABLE ${name}_$p PARTITION OF $name FOR VALUES WITH (MODULUS 8, REMAINDER $p) SERVER w$((p % 2 + 1)) OPTIONS (table_name '${name}_$p');"
    done
  done < <(fdw_tables)
} | sql fdw
for w in 1 2; do
  while IFS='|' read -r name columns key; do
    for p in 0 1 2 3 4 5 6 7; do
      [ $((p % 2 + 1)) = "$w" ] || continue
      pk=""; [ "$name" != pgbench_history ] && [ "$name" != load_target ] && pk=", PRIMARY KEY ($key)"
      echo "CREATE TABLE ${name}_$p ($columns$pk);"
    done
  done < <(fdw_tables) | worker_sql "$w" -d bench_fdw
done
sql fdw <<SQL
INSERT INTO pgbench_branches SELECT b, 0, '' FROM generate_series(1, $SCALE) b;
INSERT INTO pgbench_tellers SELECT t, (t - 1) / 10 + 1, 0, '' FROM generate_series(1, $SCALE * 10) t;
INSERT INTO pgbench_accounts SELECT a, (a - 1) / 100000 + 1, 0, '' FROM generate_series(1, $SCALE * 100000) a;
SQL
for w in 1 2; do worker_sql "$w" -d bench_fdw -c "VACUUM ANALYZE"; done
sql fdw -c "ANALYZE"

# ---- W1: point SELECT by key (pgbench -S -M prepared), 1 and 4 clients ----
pgbench_figures() {
  # workload, system, run, pgbench output on stdin: tps, mean latency (ms), failed transactions
  local out tps latency failed aborted
  out=$(cat)
  tps=$(grep -oP 'tps = \K[0-9.]+(?= \(without)' <<< "$out" || echo 0)
  latency=$(grep -oP 'latency average = \K[0-9.]+' <<< "$out" || echo 0)
  failed=$(grep -oP 'number of failed transactions: \K[0-9]+' <<< "$out" || echo 0)
  aborted=$(grep -c 'aborted in command' <<< "$out" || true)
  record "$1" "$2" tps "${tps:-0}"
  record "$1" "$2" latency_ms "${latency:-0}"
  record "$1" "$2" failed "$((${failed:-0} + aborted))"
}
for clients in 1 4; do
  for run in $(seq 1 "$RUNS"); do
    for system in $SYSTEMS; do
      log "W1 $clients client(s), $system, run $run"
      pgbench_on "$system" -n -S -M prepared -c "$clients" -j "$clients" -T "$SECONDS_PER_RUN" |
        pgbench_figures "W1_c$clients" "$system"
    done
  done
done

# ---- W2: fan-out aggregates over all accounts ----
echo 'SELECT count(*), sum(abalance) FROM pgbench_accounts;' > "$PGSHARD_CLUSTER_DIR/w2_count.sql"
echo 'SELECT bid, count(*), sum(abalance) FROM pgbench_accounts GROUP BY bid;' > "$PGSHARD_CLUSTER_DIR/w2_group.sql"
chown postgres: "$PGSHARD_CLUSTER_DIR"/w2_*.sql 2>/dev/null || true
for query in count group; do
  for run in $(seq 1 "$RUNS"); do
    for system in $SYSTEMS; do
      log "W2 $query, $system, run $run"
      pgbench_on "$system" -n -f "$PGSHARD_CLUSTER_DIR/w2_$query.sql" -t "$QUERY_REPEATS" |
        pgbench_figures "W2_$query" "$system"
    done
  done
done

# ---- W3: bulk load with COPY ----
load_file="$PGSHARD_CLUSTER_DIR/load.csv"
seq 1 "$LOAD_ROWS" | awk '{printf "%d,%d,%d,row %d with some filler text\n", $1, ($1 - 1) % 100 + 1, $1 % 1000, $1}' > "$load_file"
chown postgres: "$load_file" 2>/dev/null || true
sql single -c "CREATE TABLE load_target (aid int NOT NULL, bid int, abalance int, filler char(84))"
sql pgshard -c "CREATE TABLE load_target (aid int NOT NULL, bid int, abalance int, filler char(84))" \
  -c "SELECT pgshard.shard_table('load_target', 'aid', shard_count => 8)" >/dev/null
for run in $(seq 1 "$RUNS"); do
  for system in $SYSTEMS; do
    log "W3 COPY of $LOAD_ROWS rows, $system, run $run"
    sql "$system" -c "TRUNCATE load_target"
    start=$(now)
    sql "$system" -c "COPY load_target FROM '$load_file' (FORMAT csv)"
    record W3_copy "$system" rows_per_s "$(calc "$LOAD_ROWS / ($(now) - $start)")"
  done
done

# ---- W4: encrypted column vs plain text, on pgshard: load, then read every row back ----
enc_file="$PGSHARD_CLUSTER_DIR/contacts.csv"
seq 1 "$ENCRYPTED_ROWS" | awk '{printf "%d,+1-555-%07d\n", $1, $1}' > "$enc_file"
chown postgres: "$enc_file" 2>/dev/null || true
sql pgshard <<'SQL' >/dev/null
CREATE TABLE contacts_plain (id bigint PRIMARY KEY, tel text);
CREATE TABLE contacts_encrypted (id bigint PRIMARY KEY, tel pgshard.encrypted_text);
SELECT pgshard.shard_table('contacts_plain', 'id', shard_count => 8);
SELECT pgshard.shard_table('contacts_encrypted', 'id', shard_count => 8);
SQL
for run in $(seq 1 "$RUNS"); do
  for kind in plain encrypted; do
    log "W4 $kind, $ENCRYPTED_ROWS rows, run $run"
    sql pgshard -c "TRUNCATE contacts_$kind"
    start=$(now)
    sql pgshard -c "COPY contacts_$kind FROM '$enc_file' (FORMAT csv)"
    middle=$(now)
    sql pgshard -c "COPY (SELECT id, tel FROM contacts_$kind) TO STDOUT" > /dev/null
    finish=$(now)
    record "W4_$kind" pgshard insert_s "$(calc "$middle - $start")"
    record "W4_$kind" pgshard read_s "$(calc "$finish - $middle")"
    record "W4_$kind" pgshard total_s "$(calc "$finish - $start")"
  done
done

# ---- W5: pgbench TPC-B, 4 clients; the bank invariant afterwards ----
invariant='SELECT (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(bbalance) FROM pgbench_branches)
  AND (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT sum(tbalance) FROM pgbench_tellers)
  AND (SELECT sum(abalance) FROM pgbench_accounts) = (SELECT coalesce(sum(delta), 0) FROM pgbench_history)'
for run in $(seq 1 "$RUNS"); do
  for system in $SYSTEMS; do
    log "W5 TPC-B 4 clients, $system, run $run"
    pgbench_on "$system" -n -c 4 -j 2 -T "$SECONDS_PER_RUN" | pgbench_figures W5_tpcb "$system"
    holds=$(sql "$system" -tA -c "$invariant")
    record W5_tpcb "$system" invariant_holds "$([ "$holds" = t ] && echo 1 || echo 0)"
  done
done

# ---- W6: one UPDATE of 10% of the accounts (every shard) ----
echo 'UPDATE pgbench_accounts SET abalance = abalance + 1 WHERE aid % 10 = 0;' > "$PGSHARD_CLUSTER_DIR/w6.sql"
chown postgres: "$PGSHARD_CLUSTER_DIR/w6.sql" 2>/dev/null || true
for run in $(seq 1 "$RUNS"); do
  for system in $SYSTEMS; do
    log "W6 UPDATE of 10% of rows, $system, run $run"
    pgbench_on "$system" -n -f "$PGSHARD_CLUSTER_DIR/w6.sql" -t 1 | pgbench_figures W6_update "$system"
  done
done

log "raw results in $RESULTS; writing docs/benchmarks.md and docs/benchmarks.svg"
python3 "$HERE/bench/report.py" "$RESULTS" "$HERE/docs/benchmarks.md" "$HERE/docs/benchmarks.svg"
