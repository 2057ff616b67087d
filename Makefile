# Set-up is two commands on a fresh machine: `make test` and `make demo`.
# CPU-only machines elsewhere: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.s4fuse-installed
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1
TORCH_INDEX ?=
PYTEST_ARGS ?=
# pytest-xdist workers; each test module stays on one worker (--dist loadfile: module fixtures are built
# once). Most tests use one core, so two workers halve the fast suite on 2 cores. 0 = one process.
PYTEST_WORKERS ?= 2
XDIST = $(if $(filter 0,$(PYTEST_WORKERS)),,-n $(PYTEST_WORKERS) --dist loadfile)
export YOLO_OFFLINE := 1
export YOLO_AUTOINSTALL := false
export MPLBACKEND := Agg
export OMP_WAIT_POLICY ?= PASSIVE

.PHONY: install test test-slow test-all lint format demo bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip wheel setuptools

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install $(TORCH_SPEC) $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(BIN)/python -m pip install -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

# CI (.ci/run) runs `make test` (fast suite) then `make test-slow` (the slow end-to-end, kill/resume
# and training tests, with their durations, into a JUnit report that .ci/run checks against
# tests/slow_floor.txt); `make test-all` is both in one pytest run.
# pytest exits 5 when the selection is empty: not a failure when PYTEST_ARGS narrowed it (e.g. -k ...),
# a failure otherwise (a renamed `slow` marker must not pass as "no tests selected").
PYTEST_OK5 = rc=$$?; if [ $$rc -eq 5 ] && [ -n "$(strip $(PYTEST_ARGS))" ]; then echo "no tests selected by PYTEST_ARGS"; rc=0; fi; exit $$rc
SLOW_JUNIT ?= runs/ci/slow-junit.xml

test: install
	$(BIN)/python -m pytest -m "not slow" $(XDIST) $(PYTEST_ARGS); $(PYTEST_OK5)

test-slow: install
	$(BIN)/python -m pytest -m slow --durations=0 --junitxml=$(SLOW_JUNIT) $(XDIST) $(PYTEST_ARGS); $(PYTEST_OK5)

test-all: install
	$(BIN)/python -m pytest $(XDIST) $(PYTEST_ARGS)

# ruff (configured in pyproject.toml; pinned in the test extra so every machine formats alike):
# `make lint` checks lint and format and changes nothing; `make format` applies both.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# The demo profile on Ray (installed by the test extra): two 1-CPU jobs side by side on 2 cores.
demo: install
	$(BIN)/python -m pipelines.run fuse_then_detect --executor ray

bench: install
	$(BIN)/python -m bench.run_all

clean:
	rm -rf $(VENV) runs .pytest_cache
