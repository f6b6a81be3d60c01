# Switchboard: `make run` starts the platform with a demo tenant; `make test` runs the whole suite.
# Both only need Python 3.11+ (and, for the test peers, Debian packages installed when running as root).

SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TEST_PEERS := sip-tester chromium espeak-ng sox coturn
PYTEST_ARGS ?=

UV_VERSION := 0.13.9
UV := $(BIN)/uv
RUNTIME_STAMP := $(VENV)/.installed-runtime

.PHONY: setup setup-runtime native system-postgres lock run test test-serial test-peers bytecode lint format bench clean

# Every install comes from uv.lock (exact versions and hashes, Linux x86_64/aarch64, CPython 3.11-3.13):
# `make setup-runtime` the platform's runtime set (what `make run` needs), `make setup` adds the dev/test
# set. `--locked` refuses to install when pyproject.toml changed without `make lock`.
setup: $(STAMP) native
setup-runtime: $(RUNTIME_STAMP) native

# The media path's per-packet modules compiled with mypyc (from the locked mypy) into services/media/_native/,
# when a C compiler and Python's headers are present; otherwise one line says they run as pure Python. Rebuilt
# only when a compiled module's source changed (its manifest of hashes; a no-op costs about 0.3 s), and the
# worker refuses a build older than its sources. `SB_MEDIA_PURE=1` skips the build and runs pure Python.
native: | $(RUNTIME_STAMP)
	@$(BIN)/python -m services.media.native_build

$(UV):
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "Switchboard needs Python 3.11 or newer")'
	@if [ ! -x $(BIN)/python ]; then \
		echo "creating the virtualenv $(VENV)"; \
		$(PYTHON) -m venv --without-pip $(VENV) 2>/dev/null || { \
			if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
				echo "installing python3-venv"; \
				apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv >/dev/null; \
				rm -rf $(VENV); $(PYTHON) -m venv --without-pip $(VENV); \
			else echo "error: '$(PYTHON) -m venv' failed: install python3-venv" >&2; exit 1; fi; }; \
	fi
	@echo "installing uv $(UV_VERSION) (the installer that reads uv.lock)"
	@# The virtualenv has no pip of its own (ensurepip took most of the set-up time): the machine's pip
	@# installs uv into it (--python, pip >= 22.3); without one, the virtualenv gets pip first.
	@{ $(PYTHON) -m pip --python $(BIN)/python install -q --disable-pip-version-check 'uv==$(UV_VERSION)' 2>/dev/null \
		|| { $(BIN)/python -m ensurepip -q >/dev/null && $(BIN)/python -m pip install -q --disable-pip-version-check 'uv==$(UV_VERSION)'; }; \
	} 2>&1 | { grep -v "is ignored" || true; }

# --inexact keeps uv itself (installed by pip above, not part of the lock) in the virtualenv.
$(RUNTIME_STAMP): pyproject.toml sdk/pyproject.toml uv.lock | $(UV)
	@echo "installing the runtime set from uv.lock"
	@$(UV) sync --locked --inexact --extra native --python $(BIN)/python
	@$(BIN)/python -c 'import switchboard, switchboard_cli, services.kernel' || { echo "error: install failed" >&2; exit 1; }
	@$(MAKE) --no-print-directory system-postgres
	@touch $(RUNTIME_STAMP)

# The pgserver wheel carries PostgreSQL for Linux x86_64 on CPython <= 3.12 only; elsewhere the runtime uses
# the machine's (services/runtime/embedded.py), installed here from Debian when running as root. Debian's
# default cluster is not created: the runtime makes its own data dir.
system-postgres:
	@if ! $(BIN)/python -c 'import pgserver' 2>/dev/null && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing PostgreSQL from Debian (no pgserver wheel for this platform)"; \
			mkdir -p /etc/postgresql-common; \
			[ -e /etc/postgresql-common/createcluster.conf ] || echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.conf; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null; \
		else echo "error: no PostgreSQL for this platform: install Debian's postgresql package (or set SB_POSTGRES_BIN)" >&2; exit 1; fi; \
	fi

$(STAMP): pyproject.toml sdk/pyproject.toml uv.lock | $(UV)
	@echo "installing the runtime and dev/test sets from uv.lock"
	@$(UV) sync --locked --inexact --extra dev --extra native --python $(BIN)/python
	@$(BIN)/python -c 'import switchboard, switchboard_cli, services.kernel, pytest' || { echo "error: install failed" >&2; exit 1; }
	@$(MAKE) --no-print-directory system-postgres
	@touch $(STAMP) $(RUNTIME_STAMP)

# Re-resolve uv.lock from pyproject.toml's ranges (`make lock`); one package: `make lock UPGRADE=msgspec`.
lock: | $(UV)
	$(UV) lock $(if $(UPGRADE),--upgrade-package $(UPGRADE))

# SIPp, Chromium, espeak-ng and sox are the real outside peers of the end-to-end tests.
test-peers:
	@missing=""; \
	command -v sipp >/dev/null || missing="$$missing sip-tester"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v espeak-ng >/dev/null || missing="$$missing espeak-ng"; \
	command -v sox >/dev/null || missing="$$missing sox"; \
	command -v turnserver >/dev/null || missing="$$missing coturn"; \
	command -v kamailio >/dev/null || missing="$$missing kamailio"; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "installing test peers:$$missing"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
		else echo "warning: missing test peers ($$missing): end-to-end tests that need them will be skipped" >&2; fi; \
	fi

run: setup-runtime
	@echo "starting the platform: PostgreSQL, NATS, then every service; the banner with what to run next follows"
	$(BIN)/switchboard up --demo

# Every Python process a test starts (each service, the CLI, agent scripts) imports litestar, httpx, aiortc and
# our code. With PYTHONDONTWRITEBYTECODE set (as on these machines) nothing it compiles is kept, so each start
# compiled them all again: about 4 s of CPU for the API's imports against 0.5 s from bytecode. Written here
# once (compileall writes whatever that variable says); later runs only compare timestamps (a few seconds).
bytecode: setup
	@$(BIN)/python -m compileall -q -j0 $(VENV)/lib services sdk cli tests > /dev/null 2>&1 || true

# Two pytest sessions side by side, each with its own PostgreSQL, NATS, API and stacks, the test files split by
# measured time (tests/parallel.py: the rule, and how to refresh tests/durations.txt). Every line of both is
# printed prefixed [1]/[2] (whole logs in .artifacts/test-1.log, test-2.log), then a summary line for each and
# the verdict; fails if either fails or collects no test. CI runs this on 2 cores (.ci/run).
test: setup test-peers bytecode
	$(BIN)/python tests/parallel.py $(PYTEST_ARGS)

# The same suite in one session, one test after the other: for a part (`make test-serial PYTEST_ARGS='-k
# seats'`: in `make test` a half with nothing selected fails) or to rule out the two sessions.
test-serial: setup test-peers bytecode
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy services sdk cli infra

format: setup
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# `make bench` runs every benchmark; `make bench BENCH=routing_core` runs tests/bench/bench_routing_core.py.
bench: setup
	@mkdir -p .bench
	@if [ -n "$(BENCH)" ]; then $(BIN)/python tests/bench/bench_$(BENCH).py; \
	else for f in tests/bench/bench_*.py; do echo "== $$f"; $(BIN)/python $$f || exit 1; done; fi

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .bench services/media/_native
