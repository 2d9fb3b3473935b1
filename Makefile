# Two commands: `make run` (backend + dashboard) and `make test` (ruff + mypy + pytest). Both set up .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=
# Measured on this machine kind (2 cores), see README "Install".
INSTALL_TIME_RUN := 4 to 5 minutes
INSTALL_TIME_DEV := 5 to 6 minutes

.PHONY: run test lint chromium gpu-check

run: $(VENV)/.installed-run
	bash scripts/run.sh

test: $(VENV)/.installed-dev chromium
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest $(PYTEST_ARGS)

# Rebuild the shipped demo (twm_core/data/demo: a learned Catch model, see twm_core/demo.py) from scratch:
# the catch preset, seed 0, deterministic kernels, one CPU thread (~15-30 min).
.PHONY: demo
demo: $(VENV)/.installed-run
	OMP_NUM_THREADS=1 $(BIN)/python -m twm_core.demo build --out twm_core/data/demo

# On a machine with one CUDA GPU, in 8 minutes at most: the gpu tests, the bench suite at the paper config per
# switch (fp32, TF32, bf16, compile, channels_last, fused attention), a 3-minute Pong training segment, peak GPU
# memory and the extrapolated time of a full 100k run, in one JSON record (bench/README.md, "GPU check").
# `make gpu-check GPU_CHECK_ARGS=--dry-run` runs the same steps on the CPU at tiny size (under 2 min; CI runs it).
GPU_CHECK_ARGS ?=
gpu-check: $(VENV)/.installed-dev
	$(BIN)/python -m bench.gpu_check --out gpu-check.json $(GPU_CHECK_ARGS)

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/mypy

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Stamps: reinstall only when pyproject.toml is newer than the last install.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	@echo "== Setting up $(VENV) (first run, or pyproject.toml changed): torch 2.13.0 (CPU), gymnasium + ale-py,"
	@echo "== FastAPI, Streamlit, plotly. This takes $(INSTALL_TIME_RUN); later runs skip it."
	$(BIN)/pip install -e .
	touch $@
	@echo "== Installed. The CLI is $(BIN)/twm (or 'source $(BIN)/activate', then 'twm')."

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@echo "== Setting up $(VENV) with the test tools (first run, or pyproject.toml changed): the run dependencies"
	@echo "== plus pytest, Playwright (driving Debian's Chromium), ruff, mypy, schemathesis and Ray: $(INSTALL_TIME_DEV)."
	$(BIN)/pip install -e '.[dev,ray]'
	touch $@ $(VENV)/.installed-run
	@echo "== Installed. The CLI is $(BIN)/twm (or 'source $(BIN)/activate', then 'twm')."

# Browser tests drive Debian's Chromium, never a browser build downloaded by Playwright.
chromium:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ]; then \
		apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y chromium; \
	fi
