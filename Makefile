# Two commands matter: `make run` serves on 127.0.0.1:18888, `make test` runs the suite.
# Both create .venv and install the project into it; the install is skipped while
# pyproject.toml is unchanged (the stamp file records the last install).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test check test-slow chromium deploy-tools install migrate seed-demo bench bench-identity bench-ratio bench-workers profile soak bench-reports loadtest clean

install: $(STAMP)

# uv (from PyPI, put in .venv-tools by the system's pip) makes the virtualenv (with pip, for the
# bench targets) and installs the same versions as pip: ~10 s in all on a clean clone, against
# ~14 s when `python -m venv` (~4.5 s, ensurepip) made it and ~30 s for pip alone. pip does it
# when uv cannot (no uv wheel for the platform, or PyPI unreachable while pip's local mirror is not).
TOOLS := .venv-tools
$(STAMP): pyproject.toml
	((test -x $(TOOLS)/bin/uv || $(PYTHON) -m pip install --quiet --root-user-action=ignore --target $(TOOLS) uv) \
	  && (test -x $(BIN)/python || $(TOOLS)/bin/uv venv --quiet --seed --python $(PYTHON) $(VENV)) \
	  && $(TOOLS)/bin/uv pip install --quiet --python $(BIN)/python -e ".[test,load]") \
	  || ((test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)) && $(BIN)/python -m pip install --quiet --upgrade pip \
	      && $(BIN)/python -m pip install --quiet -e ".[test,load]")
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/analytics-api serve

migrate: $(STAMP)
	$(BIN)/analytics-api migrate

seed-demo: $(STAMP)
	$(BIN)/analytics-api seed-demo --events $(or $(EVENTS),1000000)

# The ingest server against its ceiling (wrk from Debian's package, installed when missing).
bench: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -c "import matplotlib" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m loadgen.bench $(if $(COMPARE),--compare $(COMPARE)) $(if $(STORED),--stored $(STORED))
	$(BIN)/python -m loadgen.bench_enrich
	$(BIN)/python -m loadgen.bench_rate_limit
	$(BIN)/python -m loadgen.bench_workers
	$(MAKE) bench-identity

# One person per human at 10 M demo events and 1 M identities: a stitch round's cost, a move of
# 1,000 new joins, the rollup round after it, the 30-day reports, the identity views at ingest (~8 min).
bench-identity: $(STAMP)
	$(BIN)/python -m loadgen.bench_identity $(if $(EVENTS),--events $(EVENTS))

# The single-event ratio, the one harness its figure comes from: ROUNDS (3) interleaved pairs of the bare
# endpoint and POST /events, one event a request; median, spread and the machine line (~1 min a round).
# SINGLE=1 adds the server as one process (WEB_CONCURRENCY=1) to each round, against the default.
bench-ratio: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m loadgen.bench_ratio --rounds $(or $(ROUNDS),3) $(if $(SINGLE),--single)

# Single-event POSTs with 1, 2 and auto (the default) HTTP workers against the bare endpoint with as many (~2 min).
bench-workers: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -m loadgen.bench_workers $(if $(WORKERS),--workers $(WORKERS))

# Where the CPU goes under wrk load, by stage (py-spy): BATCH events a request (1).
profile: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	test -x $(BIN)/py-spy || $(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m loadgen.profile --batch $(or $(BATCH),1)

# Memory under a held rate: MINUTES (10) at RATE requests/s (4500: half the highest rate held).
soak: $(STAMP)
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk)
	$(BIN)/python -c "import matplotlib" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m loadgen.soak --minutes $(or $(MINUTES),10) --rate $(or $(RATE),4500)

# The locust scenario against a running server (make run in another terminal): RPS, SECONDS.
loadtest: $(STAMP)
	$(BIN)/analytics-api loadtest --rps $(or $(RPS),300) --seconds $(or $(SECONDS),30)

# Every report's median latency through the API at 1 M and 10 M demo events (EVENTS=a,b,c for
# other sizes, e.g. EVENTS=1000000,10000000,100000000), with a chart; about 3 minutes.
bench-reports: $(STAMP)
	$(BIN)/python -c "import matplotlib" 2>/dev/null || $(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python -m loadgen.bench_reports $(if $(EVENTS),--events $(EVENTS))

# Chromium for the browser tests comes from Debian's package (Playwright cannot download
# browsers here); when it cannot be installed, those tests are reported as skipped.
# pytest runs in three processes (pytest-xdist), each with its own embedded engine, a test file
# each at a time (module fixtures such as demo data are made once). Three on two cores: a third of
# the suite's time is spent waiting (servers starting, browsers, log consumers), which a third
# process fills (about 97 s -> 85 s; worksteal balances no better and repeats module fixtures).
# Files go out slowest first (tests/conftest.py's SLOWEST_FILES; --no-loadscope-reorder keeps that order).
# The tests' files (engine data directories, logs, servers' data) go to tmpfs when /dev/shm is
# writable with 1 GB free (a run peaks at ~170 MB): creating the engine's many small part files on
# this machine's ext4 cost ~20 s of kernel CPU a run (pytest 85 s -> 69 s). The tests that need a
# full disk mount their own tmpfs; none relies on fdatasync reaching a device.
TEST_TMPDIR := $(shell test -w /dev/shm && test "$$(df --output=avail -k /dev/shm 2>/dev/null | tail -1)" -gt 1048576 2>/dev/null && echo /dev/shm)
# Bytecode is written (to the git-ignored __pycache__ directories) even where the environment says
# PYTHONDONTWRITEBYTECODE, as this machine's does: otherwise each of the ~100 Python processes a run
# starts (servers, engines, queries in a process) compiles server/ again (~0.1 s each).
# Those the tests start themselves are forked from a process that has imported the server already
# (tests/forkserver.py: a server's start 0.53 -> 0.32 s of CPU); PYTHON_FORKSERVER=0 starts them fresh.
PYTEST := $(if $(TEST_TMPDIR),TMPDIR=$(TEST_TMPDIR)) PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest

# mypy runs beside pytest (~7 s of CPU on a clean clone, no cache: ~3 s more of the run's time
# instead of ~8 s before it); its report is printed after pytest's, and either failing fails the target.
test: $(STAMP) chromium deploy-tools
	$(BIN)/ruff check .
	@$(BIN)/mypy > $(VENV)/mypy.out 2>&1 & mypy=$$!; \
	  echo "$(PYTEST) -n 3 --dist loadfile --no-loadscope-reorder"; \
	  $(PYTEST) -n 3 --dist loadfile --no-loadscope-reorder; tests=$$?; \
	  wait $$mypy; checked=$$?; echo "$(BIN)/mypy"; cat $(VENV)/mypy.out; test $$tests = 0 && test $$checked = 0

# The quick loop while working: the same checks without the browser tests (and, as always, the slow ones).
check: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(PYTEST) -n 3 --dist loadfile --no-loadscope-reorder -m "not slow and not browser"

# The long runs: 25 SIGKILLs of one process under load, 12 of a group's engine or workers, and 32
# during the background jobs (rollup rounds, late events, erasures, imports) with every report
# checked against the reference after each, and the fuzzing of every operation with 100 generated
# requests each instead of make test's 5 (~1 min of the ~7 min in all).
test-slow: $(STAMP)
	$(PYTEST) -m slow

# The deployment's validators (tests/deploy/test_cluster_config.py): Debian's docker-compose checks
# the Compose file, promtool the Prometheus configuration; those tests are skipped without them.
deploy-tools:
	@(command -v docker-compose >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1) \
	  || (apt-get update -qq && apt-get install -y -qq docker-compose prometheus >/dev/null) \
	  || echo "docker-compose/promtool could not be installed: their checks will be skipped"

chromium:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium chromium-driver >/dev/null) \
	  || echo "Chromium could not be installed: the browser tests will be skipped"

clean:
	rm -rf $(VENV) $(TOOLS) var .pytest_cache
