# rootbench: `make install`, `make test`, `make bench [TASK=... OPT=... TIER=... SEED=... PRECISION=... ARGS="k=v ..."]`
PYTHON ?= python3
VENV   ?= .venv
# SYSTEM_PACKAGES=1: no virtual environment and no downloads: rootbench goes into $(PYTHON) itself, on the torch
# and packages it already holds (a CUDA machine without a package index); a missing one is named first
SYSTEM_PACKAGES ?=
ifeq ($(SYSTEM_PACKAGES),1)
PY      := $(PYTHON)
INSTALL := .rootbench-system-install
else
PY      := $(VENV)/bin/python
INSTALL := $(VENV)/bin/rootbench
endif
BIN    := $(VENV)/bin
RB     := $(PY) -m rootbench.harness
TASK      ?= mnist1d-mlp
OPT       ?= adamw
TIER      ?= quick
SEED      ?= 0
PRECISION ?= fp32
ARGS      ?=
RUNS      ?= runs

.PHONY: install test lint format bench bench-optim list clean site faults campaign gpu-campaign

install: $(INSTALL)

.rootbench-system-install: pyproject.toml
	$(PYTHON) harness/needs.py tasks site
	$(PYTHON) -m pip install --no-deps --no-build-isolation --no-index -e .
	@touch $@
	@echo "make install: rootbench installed into $(PYTHON) (its own packages, nothing downloaded)"

# pip prints what it collects and installs (the torch wheels are the long part), so progress is visible
$(VENV)/bin/rootbench: pyproject.toml
	@echo "make install: [1/3] virtual environment $(VENV)"
	$(PYTHON) -m venv $(VENV)
	@echo "make install: [2/3] pip"
	$(BIN)/pip install --quiet --upgrade pip
	@echo "make install: [3/3] rootbench with its test extra (torch and friends: the long step)"
	$(BIN)/pip install --progress-bar on -e '.[test]'
	@touch $@
	@echo "make install: done; run commands as $(BIN)/rootbench ..., or 'source $(VENV)/bin/activate' first"

test: install
	$(PY) -m pytest -q

# ruff: lint and format check (CI runs this); `make format` rewrites the files
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

format: install
	$(PY) -m ruff format .
	$(PY) -m ruff check --fix .

bench: install
	$(RB) bench --task $(TASK) --opt $(OPT) --tier $(TIER) --seed $(SEED) --precision $(PRECISION) --runs $(RUNS) $(ARGS)

site: install
	$(RB) site --runs $(RUNS) --out site

# optimizer step time and memory vs fused AdamW and the traffic floor (harness/bench_optim.py); ARGS="--threads 1 ..."
bench-optim: install
	$(RB) bench-optim --runs $(RUNS) $(ARGS)

# every sweep the claims need on one tier (harness/campaign.py); CAMPAIGN_TASKS narrows it, DRY=1 only plans
CAMPAIGN_TIER  ?= quick
CAMPAIGN_TASKS ?=
WORKERS        ?= 8
campaign: install
	$(RB) campaign --tier $(CAMPAIGN_TIER) $(if $(CAMPAIGN_TASKS),--task $(CAMPAIGN_TASKS)) --workers $(WORKERS) --runs $(RUNS) $(if $(DRY),--dry-run) $(ARGS)

# the same on one CUDA GPU (runs share it; clocks synchronised, CUDA peak memory checked): GPU_PARALLEL sweeps at
# once, GPU_WORKERS runs each, one CPU thread per run (a run's Python loop feeds the GPU from one core)
GPU_WORKERS  ?= 3
GPU_PARALLEL ?= 4
gpu-campaign: install
	$(RB) campaign --tier $(CAMPAIGN_TIER) $(if $(CAMPAIGN_TASKS),--task $(CAMPAIGN_TASKS)) --device cuda --workers $(GPU_WORKERS) --parallel $(GPU_PARALLEL) --threads 1 --runs $(RUNS) $(if $(DRY),--dry-run) $(ARGS)

list: install
	$(RB) list

# kill runs and sweeps at random points and check the store (README, "Faults"); N rounds
faults: install
	$(PY) -m tests.faults --kills $(or $(N),40)

clean:
	rm -rf site .pytest_cache
