# `make demo` and `make test` set up everything they need on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-dev

.PHONY: demo test typecheck schemas clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) examples/ml_pipeline.py

test: $(STAMP)
	$(VENV)/bin/mypy
	$(PY) -m pytest

schemas: $(STAMP)
	$(PY) -m eventflow.topics topics

clean:
	rm -rf $(VENV) .eventflow .pytest_cache .mypy_cache
