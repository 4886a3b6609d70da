# The two commands: `make demo` and `make test`. Both create the virtual environment on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INPUT ?=
#: Every extra a user can install (the dependency group `dev` holds the tools, outside the published metadata).
EXTRAS := sqlite,postgres,openlineage,messaging,msg,parquet,duckdb,emulator

.PHONY: venv demo test fuzz test-system test-all test-deployment test-workers test-compat test-wheel browser lint docs bench clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip uv
	# uv resolves in seconds what pip backtracks over for many minutes (aiobotocore pins botocore).
	# The provider with every extra, editable, and the development tools of pyproject's [dependency-groups],
	# compiled to bytecode once here: where PYTHONDONTWRITEBYTECODE is set (CI images, containers) Python never
	# caches it, and every process of make test (workers, emulators, DAG runners) compiled Airflow anew (4 s each).
	$(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python -e ".[$(EXTRAS)]" --group dev
	touch $@

# The virtual environment alone (the quick start's first step): then `source .venv/bin/activate`.
venv: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/python demo/run_demo.py $(if $(INPUT),--input $(INPUT))

# Unit tests (the emulator's application in process) and integration tests (over HTTP to an emulator process),
# on TEST_WORKERS pytest-xdist workers, each with its own emulator process, Airflow home and temp dirs; a test
# file stays on one worker (--dist loadfile), so module fixtures and in-file order are as in a serial run.
TEST_WORKERS ?= 2
test: $(BIN)/.installed
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder tests/unit tests/integration

# The input readers' fuzz tests (JSONL, CSV, .eml, mbox, .msg, the folder walker; tests/fuzzing.py) on
# FUZZ_EXAMPLES random examples each instead of make test's few fixed ones; then the emulator's schema fuzz
# (tests/unit/emulator/test_schema.py) on 100 random examples per operation with input, 25 without
# (make test: the same 12 and 4 seeded ones every run).
FUZZ_EXAMPLES ?= 5000
fuzz: $(BIN)/.installed
	HYPOTHESIS_PROFILE=fuzz FUZZ_EXAMPLES=$(FUZZ_EXAMPLES) $(BIN)/python -m pytest -p no:randomly -q \
	  --hypothesis-show-statistics -k "give_counts or give_a_document or give_documents or gives_documents" \
	  tests/unit/upload/test_malformed_input.py tests/unit/emails/test_malformed_emails.py
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -p no:randomly -q -n $(TEST_WORKERS) \
	  -k every_operation_answers_as_documented tests/unit/emulator/test_schema.py

# The example DAGs end to end with dag.test() on BANKING77, against an emulator process.
test-system: $(BIN)/.installed
	$(BIN)/python -m pytest tests/system

# Every test tier CI runs (CI also runs lint and the demo; about 30 minutes on 2 cores).
test-all: test test-system test-compat test-wheel test-deployment test-workers

# The example DAGs in a real Airflow deployment (api-server, scheduler, dag-processor, triggerer;
# LocalExecutor; PostgreSQL on 127.0.0.1:5432). Not part of `make test`: it takes a few minutes.
test-deployment: $(BIN)/.installed browser
	$(BIN)/python -m pytest tests/deployment -m deployment

# The same on CeleryExecutor: two workers with no shared disk (Redis 127.0.0.1:6379, S3 on moto's
# server), workers killed mid-task, a backfill spread over both. Not part of `make test` either.
test-workers: $(BIN)/.installed
	$(BIN)/python -m pytest tests/workers -m workers

# Every supported Airflow x Python (tests/compat/targets.py), each in its own environment under .compat/,
# built once with uv and reused; the provider reinstalled each run. TARGET=name runs one (see --list).
test-compat: $(BIN)/.installed
	$(BIN)/python -m tests.compat.run $(if $(TARGET),--target $(TARGET))

# The release check: sdist and wheel built with `python -m build`, `twine check`, the wheel's contents (LICENSE,
# NOTICE, py.typed, the emulator), then the wheel (not the checkout) installed into a fresh environment on the
# oldest and the newest supported Airflow, where the provider is listed and example DAG cm_setup runs against
# the installed emulator. TARGET=name checks one target of tests/compat/targets.py instead.
test-wheel: $(BIN)/.installed
	$(BIN)/python -m tests.wheel.run $(if $(TARGET),--target $(TARGET))

# The connection-form case drives Debian's Chromium (headless) through playwright; install it once.
browser:
	@test -x /usr/bin/chromium || { \
	  apt-get -o DPkg::Lock::Timeout=600 update -qq && \
	  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq chromium chromium-driver; }

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# The documentation (docs/, Sphinx) into docs/_build/html: offline (no intersphinx), every warning an error.
docs: $(BIN)/.installed
	rm -rf docs/_api
	$(BIN)/python -m sphinx -b html -W --keep-going -q docs docs/_build/html

bench: $(BIN)/.installed
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) .compat .wheel .demo .airflow .pytest_cache .mypy_cache .ruff_cache docs/_build docs/_api
