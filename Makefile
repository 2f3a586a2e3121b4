# chainsync: `make run` and `make test` work on a fresh clone; each installs
# what it needs first (venv, Python packages, npm packages, generated stubs)
# and skips what is already done (stamp files).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMPS := .stamps

.PHONY: install run test devnet devnet-bench devnet-clean proto contracts contracts-check bench bench-memory lint clean soak loadtest

install: $(STAMPS)/python $(STAMPS)/npm $(STAMPS)/npm-ts $(STAMPS)/proto

$(STAMPS)/python: pyproject.toml
	@mkdir -p $(STAMPS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $@

$(STAMPS)/npm: package.json package-lock.json
	@mkdir -p $(STAMPS)
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# clients/typescript has its own package.json and lock (the TypeScript client,
# its tests, and the Node gRPC packages tests/js uses).
$(STAMPS)/npm-ts: clients/typescript/package.json clients/typescript/package-lock.json
	@mkdir -p $(STAMPS)
	cd clients/typescript && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

# Debian's Chromium for tests/test_page.py (driven by playwright; no browser download).
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
$(STAMPS)/chromium:
	@mkdir -p $(STAMPS)
	command -v chromium >/dev/null || ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq chromium)
	@touch $@

$(STAMPS)/proto: $(STAMPS)/python $(shell find proto -name '*.proto') proto/generate.py
	rm -rf gen
	$(BIN)/python proto/generate.py gen
	@touch $@

proto: $(STAMPS)/proto

contracts: $(STAMPS)/npm
	node contracts/compile.mjs

contracts-check: $(STAMPS)/npm
	node contracts/compile.mjs --check

run: install
	$(BIN)/chainsync up

devnet: install
	$(BIN)/chainsync devnet

devnet-bench: install
	$(BIN)/chainsync devnet --scale bench --port 8546

devnet-clean:
	rm -rf .devnet

test: install $(STAMPS)/chromium  # chromium: only the jobs page test needs it
	$(BIN)/pytest $(PYTEST_ARGS)

soak: install  # the reliability suite, longer (tests/reliability, docs/reliability.md): a few minutes, loopback only
	CHAINSYNC_SOAK=1 $(BIN)/pytest tests/reliability -q --timeout=900 $(PYTEST_ARGS)

bench: install
	$(BIN)/python bench/bench.py

bench-memory: install
	$(BIN)/python bench/bench.py --memory

# Debian's wrk and h2load (nghttp2-client) for make loadtest (C load tools: the clients must not be the limit).
$(STAMPS)/loadtools:
	@mkdir -p $(STAMPS)
	command -v wrk >/dev/null && command -v h2load >/dev/null || ($(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq wrk nghttp2-client)
	@touch $@

loadtest: install $(STAMPS)/loadtools  # the status path while 4 jobs run (wrk, open-loop pollers, h2load, replica lag) and job throughput (1, 2, 4 replicas on PostgreSQL), about 2 min: docs/load.md
	$(BIN)/python bench/loadtest.py $(LOADTEST_ARGS)

lint: install
	$(BIN)/ruff check server rest_bridge devnet clients tests proto bench
	$(BIN)/ruff format --check server rest_bridge devnet clients tests proto bench

clean:
	rm -rf $(STAMPS) gen .pytest_cache
