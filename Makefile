# rrec: `make run` (everything, end to end) and `make test` (same set-up, then the test suite).
PYTHON ?= python3
VENV   := .venv
DVCENV := .venv-dvc
BIN    := $(VENV)/bin
DVC    := $(DVCENV)/bin/dvc
export TOKENIZERS_PARALLELISM := false
export HF_HUB_OFFLINE := 1

.PHONY: setup ops data run test test-fast lint dvc-stages ui repro bench clean browser

setup: $(VENV)/.installed $(DVCENV)/.installed

# torch==2.13.0 first, so `--no-build-isolation` builds the C++ ops against the torch that runs them
$(VENV)/.installed: pyproject.toml setup.py $(shell find csrc -type f)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0 setuptools==84.2.1 wheel ninja
	$(BIN)/pip install -q --no-build-isolation -e '.[test]'
	$(BIN)/python -c "import rrec_core.ops as o; print('rrec ops backends:', o.backends())"
	touch $@

# DVC in its own environment: its hydra-core pins antlr4 4.9, Dagster's asset selection needs 4.13
$(DVCENV)/.installed:
	test -x $(DVCENV)/bin/python || $(PYTHON) -m venv $(DVCENV)
	$(DVCENV)/bin/pip install -q --upgrade pip
	$(DVCENV)/bin/pip install -q dvc==3.67.1
	touch $@

ops: $(VENV)/.installed
	$(BIN)/python setup.py build_ext --inplace -q

data: setup
	RREC_DVC=$(DVC) $(BIN)/rrec data pull

run: data
	$(BIN)/rrec run

test: data lint browser
	$(BIN)/python -m pytest

# headless Chromium from the Debian packages for the UI test (tests/test_ui_browser.py skips without it)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null 2>&1 \
	    && echo "installed chromium for the UI test"; } || \
	  echo "chromium could not be installed (needs apt and root): tests/test_ui_browser.py will skip"

test-fast: data lint
	$(BIN)/python -m pytest -m "not slow"

# ruff (pyflakes, pycodestyle, bugbear, import order) and mypy, at the level the code passes
lint: setup
	$(BIN)/ruff check rrec_core orchestration tests bench
	$(BIN)/mypy rrec_core orchestration

# dvc.yaml is generated from the asset graph and its imports (tests fail when it is stale)
dvc-stages: setup
	$(BIN)/python -m orchestration.dvc_stages

ui: data
	mkdir -p .dagster && DAGSTER_HOME=$(CURDIR)/.dagster $(BIN)/dagster dev -m orchestration.definitions

repro: data
	$(DVC) repro

bench: setup
	$(BIN)/python bench/bench_ops.py --device cpu

clean:
	rm -rf artifacts build *.egg-info rrec_core/_C*.so
