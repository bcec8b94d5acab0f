# Two commands on a fresh clone: `make demo` and `make test`. Only Python 3.11+ and make needed.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# The dashboard tests drive Debian's Chromium through playwright (browser downloads are
# impossible here); another Chromium or Chrome binary: `make test CHROMIUM=/path/to/it`.
CHROMIUM ?= /usr/bin/chromium
export CONVEYOR_CHROMIUM := $(CHROMIUM)

.PHONY: demo test soak lint docs postgres pgbouncer fuse nftables bench bench-postgres plots clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/conveyor demo

lint: $(STAMP)
	$(BIN)/ruff check src tests examples benchmarks docs
	$(BIN)/ruff format --check src tests examples benchmarks docs
	$(BIN)/mypy

# The documentation site, offline (no fonts or plugins that reach the network), into site/
# (git-ignored): the CLI reference is generated from the parser first. `make test` builds
# it too, --strict, in tests/e2e/test_docs.py, so a broken link fails CI.
docs: $(STAMP)
	$(BIN)/python docs/gen_cli.py
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site

test: lint $(CHROMIUM) postgres pgbouncer fuse nftables
	$(BIN)/pytest

# The fault suite at full size (tests/reliability/: kill -9 and PostgreSQL rounds, the
# power cut, load, and an hour of endurance); `pytest -s` prints each test's FIGURE line.
soak: $(STAMP) postgres fuse nftables
	CONVEYOR_SOAK=1 $(BIN)/pytest tests/reliability -p no:cacheprovider -s -q

# The network-fault tests drop packets with nftables in network namespaces of their own:
# Debian's nftables, installed when missing (as root); without it they skip and say why.
nftables:
	@if ! command -v nft >/dev/null && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  echo "installing Debian's nftables for the network-fault tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get install -y -qq --no-install-recommends nftables >/dev/null 2>&1 || \
	  { apt-get update -qq && apt-get install -y -qq --no-install-recommends nftables >/dev/null; }; \
	fi

# The PostgreSQL store's contract suite also runs through a connection pooler: Debian's
# PgBouncer, installed when missing (as root or through sudo), which the tests start on a
# loopback port of their own (its packaged service is not used); without it they skip.
pgbouncer:
	@if ! command -v pgbouncer >/dev/null && ! [ -x /usr/sbin/pgbouncer ] && command -v apt-get >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo=sudo; \
	  else echo "the pooler tests need PgBouncer: sudo apt-get install pgbouncer"; exit 0; fi; \
	  echo "installing Debian's pgbouncer for the pooler tests"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null 2>&1 || \
	  { $$sudo apt-get update -qq && \
	    $$sudo apt-get install -y -qq --no-install-recommends pgbouncer >/dev/null; }; \
	fi

# The power-cut test mounts a FUSE filesystem: Debian's fuse3 (fusermount3, libfuse3),
# installed when missing, as root or through sudo; without it that test skips and says why.
fuse:
	@if [ -e /dev/fuse ] && ! command -v fusermount3 >/dev/null && command -v apt-get >/dev/null; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo=sudo; \
	  else echo "the power-cut test needs fuse3: sudo apt-get install fuse3"; exit 0; fi; \
	  echo "installing Debian's fuse3 for the power-cut test"; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  $$sudo apt-get install -y -qq --no-install-recommends fuse3 >/dev/null 2>&1 || \
	  { $$sudo apt-get update -qq && \
	    $$sudo apt-get install -y -qq --no-install-recommends fuse3 >/dev/null; }; \
	fi

# The PostgreSQL store's tests use the server at $$CONVEYOR_TEST_POSTGRES (default
# postgresql://postgres@127.0.0.1:5432/test), each in a schema of its own. A Debian
# cluster that is installed but stopped is started here; with no server at all those
# tests skip (CI sets CONVEYOR_REQUIRE_POSTGRES=1, which makes that a failure).
postgres:
	@if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1; then \
	  for version in $$(ls /etc/postgresql 2>/dev/null); do \
	    pg_ctlcluster --skip-systemctl-redirect $$version main start || true; done; \
	  for i in $$(seq 50); do pg_isready -q -h 127.0.0.1 && break; sleep 0.2; done; \
	fi

# Installed when missing, as root or through sudo without a password; otherwise it says how.
$(CHROMIUM):
	@if [ "$$(id -u)" = 0 ]; then sudo=; elif sudo -n true 2>/dev/null; then sudo=sudo; \
	else echo "make test needs Chromium at $(CHROMIUM): sudo apt-get install chromium" \
	     "(or make test CHROMIUM=/path/to/chromium)"; exit 1; fi; \
	command -v apt-get >/dev/null || { echo "no apt-get: install Chromium at $(CHROMIUM)"; exit 1; }; \
	echo "installing Debian's chromium for the dashboard tests"; \
	export DEBIAN_FRONTEND=noninteractive; \
	$$sudo apt-get update -qq && \
	$$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null

# Each run writes its figures to benchmarks/results/STORE.json, its table and issue 16's
# bars to STORE.md, and redraws the plots that docs/benchmarks.md shows (docs/img/*.png,
# each naming the run it comes from). conveyor runs on asyncio and on uvloop; BullMQ needs
# Node 20 and npm (installed from the npm registry on first use). procrastinate runs e2e
# only here: at about 100 jobs/s on this machine each of its runs takes minutes (all its
# scenarios: --peers procrastinate).
bench: $(STAMP)
	$(BIN)/python benchmarks/throughput.py --loop asyncio,uvloop \
	    --peers huey,arq,saq,taskiq,procrastinate:e2e,pgqueuer,bullmq \
	    --json benchmarks/results/sqlite.json --markdown benchmarks/results/sqlite.md
	$(BIN)/python benchmarks/fanout.py
	$(MAKE) plots

bench-postgres: $(STAMP) postgres
	$(BIN)/python benchmarks/throughput.py --store postgres --jobs 5000 \
	    --peers pgqueuer,procrastinate --json benchmarks/results/postgres.json \
	    --markdown benchmarks/results/postgres.md
	$(BIN)/python benchmarks/throughput.py --store postgres --processes 1,2,4 --peers graphile
	$(MAKE) plots

plots: $(STAMP)
	$(BIN)/python benchmarks/plots.py benchmarks/results/sqlite.json benchmarks/results/postgres.json

clean:
	rm -rf $(VENV) site .pytest_cache .mypy_cache .ruff_cache conveyor.db conveyor.db-wal conveyor.db-shm
