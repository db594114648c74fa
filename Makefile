# `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev
# The suite mostly waits (on brokers, processes, browsers): more workers than cores pay off.
# Each worker starts its own broker and PostgreSQL; a module stays on one worker.
TEST_WORKERS ?= 3
# dbt in a venv of its own: dbt-common pins pathspec below what mypy needs, so the two cannot
# share one. The dbt tests find it at $(VENV)/dbt/bin/dbt.
DBT_VENV := $(VENV)/dbt
DBT_STAMP := $(DBT_VENV)/.installed

KAFKA_DIR ?= .kafka

.PHONY: demo test bench soak schemas constraints kafka-up kafka-down faust-experiment clean

# setuptools notes on every editable install that a folder named like the package may shadow
# it: informational (that folder is the package here), so it is filtered by its message.
# constraints.txt: the versions the suite passed with, so that a new release of a dependency
# (a linter's new rule, a plugin's new default) cannot turn a fresh clone red by itself.
$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" $(PY) -m pip install -q -c constraints.txt -e '.[dev]'
	touch $(STAMP)

# The newest versions pyproject.toml allows, taken again into constraints.txt (run `make test`
# after, and commit both). Taken on Python 3.11: a newer Python may need newer compiled wheels.
constraints:
	rm -rf build/constraints
	$(PYTHON) -m venv build/constraints
	build/constraints/bin/pip install -q --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation" build/constraints/bin/pip install -q -e '.[dev]'
	build/constraints/bin/pip freeze --exclude-editable > build/constraints.txt
	mv build/constraints.txt constraints.txt
	rm -rf build/constraints

# The `dbt` extra's packages, read from pyproject.toml. dbt-core 1.12 fetches a wheel from
# outside the package index while it builds, so 1.11 is the newest taken; duckdb as in the dev
# extra, so that both sides open the example's DuckDB file with one version.
$(DBT_STAMP): pyproject.toml
	$(PYTHON) -m venv $(DBT_VENV)
	$(DBT_VENV)/bin/pip install -q --upgrade pip
	$(DBT_VENV)/bin/pip install -q 'dbt-core<1.12' 'duckdb<2' $$($(PYTHON) -c "import tomllib; \
	  print(' '.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['dbt']))")
	touch $(DBT_STAMP)

# UI=1: then serve the web UI over the demo's runtime and print its address, until Ctrl-C.
# Its files are removed when it ends; KEEP=1 keeps them.
demo: $(STAMP)
	$(PY) examples/ml_pipeline.py $(if $(filter 1,$(UI)),--ui) $(if $(filter 1,$(KEEP)),--keep)
	@echo
	@echo "eventflow is installed in $(VENV)/bin: 'source $(VENV)/bin/activate' puts it on the PATH,"
	@echo "so the README's commands work as written (e.g. eventflow dev examples/hello.py)."

# The web UI's tests need Chromium: installed first (as root, with apt-get) when missing. The 20
# slowest tests are listed at the end: how near each is to its timeout on this machine.
test: $(STAMP) $(DBT_STAMP)
	$(PY) -m tests.browser
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadscope --durations=20

# Figures, not assertions: prints a table and writes bench/results/latest.json.
bench: $(STAMP)
	$(PY) -m bench

# Not part of `make bench`: 10 minutes per runtime of events at a fixed rate; memory, lag and
# exactly-once over time (docs/benchmarks.md, "Soak"). E.g. make soak SOAK="--runtime embedded".
soak: $(STAMP)
	$(PY) -m bench soak $(SOAK)

# A single-node KRaft broker from Maven Central jars; prints its bootstrap address.
kafka-up:
	@$(PYTHON) scripts/kafka_broker.py up --dir $(KAFKA_DIR)

kafka-down:
	@$(PYTHON) scripts/kafka_broker.py down --dir $(KAFKA_DIR)

# Does faust-streaming's exactly_once survive SIGKILL? (docs/architecture.md)
faust-experiment: $(STAMP)
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,experiments]'
	$(PY) experiments/faust_eos.py --kills 10 --messages 3000 --seconds 30

schemas: $(STAMP)
	$(PY) -m eventflow.topics topics
	$(PY) -m eventflow.openapi docs/openapi.json

clean: kafka-down
	rm -rf $(VENV) .eventflow .pytest_cache .mypy_cache
