# linesync — two commands on a fresh machine: `make serve` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
DATA ?= ./data
HOST ?= 127.0.0.1
PORT ?= 8440

.PHONY: serve test lint typecheck unit unit-shared bench bench-peers load soak fuzz clean fuse

$(BIN)/linesync: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/linesync

serve: $(BIN)/linesync
	$(BIN)/linesync serve --data $(DATA) --host $(HOST) --port $(PORT)

lint: $(BIN)/linesync
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench

typecheck: $(BIN)/linesync
	$(BIN)/mypy src

# FUSE for the power-loss simulation, installed when missing (apt-get, as root).
fuse:
	@sh tests/support/ensure_fuse.sh

# litmus and rclone for the WebDAV tests (tests/dav), installed when missing (apt-get, as root).
.PHONY: dav-tools
dav-tools:
	@sh tests/support/ensure_dav_tools.sh

# Chromium and ChromeDriver for the web interface's browser tests (tests/web), when missing.
.PHONY: browser
browser:
	@sh tests/support/ensure_browser.sh

# The web interface's screenshots in docs/screenshots/ (README, docs/WEB.md), taken by
# its browser tests (which otherwise write them to $TMPDIR/linesync-screenshots/).
.PHONY: screenshots
screenshots: $(BIN)/linesync browser
	LINESYNC_SCREENSHOTS=docs $(BIN)/pytest -q tests/web/test_browser.py

unit: $(BIN)/linesync fuse dav-tools browser
	$(BIN)/pytest -q -n 2 --durations=30

# The hardening suite again, every server on a fresh PostgreSQL database and S3
# prefix: the tests that concern the stores (what is left out: tests/attack/conftest.py).
unit-shared: $(BIN)/linesync
	LINESYNC_TEST_STORES=postgres+s3 $(BIN)/pytest -q -n 2 --dist loadfile tests/attack

test: lint typecheck unit unit-shared

bench: $(BIN)/linesync
	$(BIN)/python bench/sync_wire.py
	$(BIN)/python bench/wire.py
	$(BIN)/python bench/watch_latency.py
	$(BIN)/python bench/chunking.py

# linesync side by side with rsync, Unison and Syncthing (installed when missing, as root),
# results in docs/BENCHMARKS.md and docs/bench/:  make bench-peers [PEERS_ARGS="--quick"]
PEERS_ARGS ?= --slow
bench-peers: $(BIN)/linesync
	@for t in rsync unison syncthing; do \
	  command -v $$t >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$t || exit 1; }; \
	done
	$(BIN)/pip install -q -e '.[dev,bench]'
	$(BIN)/python -m bench.peers $(PEERS_ARGS) --out docs/BENCHMARKS.md

# Scale-out (PostgreSQL + S3, several server processes): commits/s, long-polls held,
# S3 requests per MB synced, first sync against the embedded store, commit latency on a
# loaded database; results in docs/BENCHMARKS.md (scale section), about 10 minutes:
#   make bench-scale [SCALE_ARGS="--only commits,polls"]
# The big database (1 M namespaces, 100 M journal rows; about 40 GB and 30 minutes):
#   make bench-scale SCALE_ARGS="--only bigdb --big"
SCALE_ARGS ?=
.PHONY: bench-scale
bench-scale: $(BIN)/linesync
	$(BIN)/python -m bench.scale $(SCALE_ARGS) --out docs/BENCHMARKS.md

load: $(BIN)/linesync
	$(BIN)/python bench/load.py

# The whole-system simulation, as many seeds as asked:
#   make soak SEEDS=10000 [START=0] [SIM_ARGS="--steps 150 --clients 4"]
# With power cuts (every disk on a LazyFS; about 1 s a seed):
#   make soak SEEDS=500 SIM_ARGS=--power
SEEDS ?= 2000
START ?= 0
SIM_ARGS ?=
soak: $(BIN)/linesync fuse
	$(BIN)/python -m tests.sim --seeds $(SEEDS) --start $(START) $(SIM_ARGS)

# Coverage-guided fuzzing (atheris) of the frame decoder, the commit decoder and
# the path rules, TIME seconds each (make test runs a few seconds of each):
#   make fuzz TIME=600 [FUZZ_TARGETS=paths] [FUZZ_OUT=/tmp/linesync-fuzz]
# New inputs and crashes go to FUZZ_OUT/TARGET; add a crash to tests/fuzz/corpus.
TIME ?= 60
FUZZ_TARGETS ?= frames commit paths
FUZZ_OUT ?= /tmp/linesync-fuzz
fuzz: $(BIN)/linesync
	for t in $(FUZZ_TARGETS); do \
	  $(BIN)/python -m tests.fuzz $$t -max_total_time=$(TIME) --out $(FUZZ_OUT)/$$t || exit 1; \
	done

# A wheel of linesync in dist/ (both commands: `linesync` and `linesync-server`).
.PHONY: dist
dist: $(BIN)/linesync
	rm -rf dist build
	$(BIN)/pip wheel -q --no-deps --wheel-dir dist .
	@ls dist/*.whl

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache dist build
