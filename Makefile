# rootbench: `make install`, `make test`, `make bench [TASK=... OPT=... TIER=... SEED=... PRECISION=... ARGS="k=v ..."]`
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
TASK      ?= mnist1d-mlp
OPT       ?= adamw
TIER      ?= quick
SEED      ?= 0
PRECISION ?= fp32
ARGS      ?=
RUNS      ?= runs

.PHONY: install test test-all bench list clean

install: $(BIN)/rootbench

$(BIN)/rootbench: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	@touch $@

test: install
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/rootbench bench --task $(TASK) --opt $(OPT) --tier $(TIER) --seed $(SEED) --precision $(PRECISION) --runs $(RUNS) $(ARGS)

list: install
	$(BIN)/rootbench list

clean:
	rm -rf site .pytest_cache
