# pgshard: `make demo` runs the walkthrough on a local cluster, `make test` runs every test.
# Every target installs what it needs on a fresh Debian machine (as root, or with sudo).

PG_CONFIG ?= /usr/lib/postgresql/15/bin/pg_config
PGRX_VERSION := 0.18.1
DEB_PACKAGES := postgresql-15 postgresql-server-dev-15 libclang-dev clang pkg-config sudo procps
export PATH := $(HOME)/.cargo/bin:$(PATH)
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PSQL := $(dir $(PG_CONFIG))psql

.PHONY: deps build install cluster cluster-stop cluster-clean demo test unit regress bench

## deps: Debian packages, cargo-pgrx $(PGRX_VERSION), and pgrx pointed at the system PostgreSQL 15
deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	@command -v cargo >/dev/null || { echo "Rust (cargo 1.95) is required: install it with rustup first" >&2; exit 1; }
	@if [ "$$(cargo pgrx --version 2>/dev/null)" != "cargo-pgrx $(PGRX_VERSION)" ]; then \
	  cargo install cargo-pgrx --version $(PGRX_VERSION) --locked; \
	fi
	@grep -qs '^pg15 = "$(PG_CONFIG)"' $(HOME)/.pgrx/config.toml || cargo pgrx init --pg15 $(PG_CONFIG)

## build: release build of the extension, packaged under target/
build: deps
	cargo pgrx package --pg-config $(PG_CONFIG) $(if $(FEATURES),--features "$(FEATURES)")

## install: copy the packaged files into PostgreSQL's directories. `install` replaces each file
## with a new inode, so servers that have the old library mapped keep running safely.
install: build
	@pkg=target/release/pgshard-pg15; \
	libdir=$$($(PG_CONFIG) --pkglibdir); extdir=$$($(PG_CONFIG) --sharedir)/extension; \
	$(SUDO) install -m 755 $$pkg$$libdir/pgshard.so $$libdir/pgshard.so && \
	$(SUDO) install -m 644 $$pkg$$extdir/pgshard.control $$pkg$$extdir/pgshard--*.sql $$extdir/ && \
	echo "installed pgshard into $$libdir and $$extdir"

## cluster: install, then start (or restart) the local cluster and register its workers
cluster: install
	tests/cluster.sh start

## cluster-stop: stop every server of the local cluster
cluster-stop:
	tests/cluster.sh stop

## cluster-clean: stop the local cluster and delete its data
cluster-clean:
	tests/cluster.sh clean

## demo: the walkthrough of sql/demo.sql on the local cluster
demo: cluster
	$(PSQL) -X -h 127.0.0.1 -p $${PGSHARD_PORT:-55432} -U postgres -d pgshard -v ON_ERROR_STOP=1 -f sql/demo.sql

## unit: Rust unit tests of the server-independent crates
unit: deps
	cargo test -p pgshard-core

## regress: pg_regress suites against a fresh cluster on their own ports, with the test-only
## fault points compiled in (pgshard.inject_fault)
regress: FEATURES = fault_injection
regress: install
	tests/regress.sh

## test: every test
test: unit regress

## bench: single server vs pgshard vs hash partitions over postgres_fdw, same data, one run on
## this machine (QUICK=1: shorter runs, under 10 minutes); writes docs/benchmarks.md and .svg
bench: install
	@command -v python3 >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3; }
	QUICK=$(QUICK) bench/run.sh

