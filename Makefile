# Every target bootstraps .venv from nothing. Three install sets, one stamp each:
#   core  (`make install`): score, rank, compare, evaluate, model-info, weights; onnxruntime, no torch
#   torch (`make demo`): core + [torch] (training, Grad-CAM, the demo; includes [pairs])
#   all   (`make test`, `make install-all`): every extra (torch, pairs, spark, serve, study, onnx) + dev tools
# A stamp is older than pyproject.toml after an edit, so the set is reinstalled; a larger set
# also stamps the smaller ones it contains, so switching targets installs only what is missing.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CORE_STAMP := $(VENV)/.installed-core
TORCH_STAMP := $(VENV)/.installed-torch
ALL_STAMP := $(VENV)/.installed-all

.PHONY: install install-all test lint demo bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(CORE_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e .
	touch $(CORE_STAMP)

$(TORCH_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[torch]'
	touch $(TORCH_STAMP) $(CORE_STAMP)

$(ALL_STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet -e '.[all,dev]'
	touch $(ALL_STAMP) $(TORCH_STAMP) $(CORE_STAMP)

install: $(CORE_STAMP)

install-all: $(ALL_STAMP)

lint: $(ALL_STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/pylint --disable=all --enable=duplicate-code --min-similarity-lines=6 --score=n src/iipa

# Two pytest-xdist workers: the suite is mostly one busy core at a time (docs/development.md);
# `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2

test: $(ALL_STAMP) lint
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadgroup

demo: $(TORCH_STAMP)
	$(BIN)/iipa demo

clean:
	rm -rf $(VENV) demo-output .pytest_cache
