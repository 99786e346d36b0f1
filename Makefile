# Every target bootstraps .venv from nothing. Two install sets, one stamp each:
#   core  (`make demo`, `make install`): score, rank, explain, compare, train, the demo
#   all   (`make test`, `make install-all`): core + every extra (spark, serve, study, onnx) + dev tools
# A stamp is older than pyproject.toml after an edit, so the set is reinstalled; `all` also
# stamps `core` (it contains it), so switching between the targets installs only what is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE_STAMP := $(VENV)/.installed-core
ALL_STAMP := $(VENV)/.installed-all

.PHONY: install install-all test lint demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(CORE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(CORE_STAMP)

$(ALL_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(ALL_STAMP) $(CORE_STAMP)

install: $(CORE_STAMP)

install-all: $(ALL_STAMP)

lint: $(ALL_STAMP)
	$(BIN)/ruff check src tests benchmarks

test: $(ALL_STAMP) lint
	$(BIN)/python -m pytest -q

demo: $(CORE_STAMP)
	$(BIN)/iipa demo

clean:
	rm -rf $(VENV) demo-output .pytest_cache
