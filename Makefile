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

.PHONY: install test test-all bench bench-optim list clean site

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

site: install
	$(BIN)/rootbench site --runs $(RUNS) --out site

# optimizer step time and memory vs fused AdamW and the traffic floor (harness/bench_optim.py); ARGS="--threads 1 ..."
bench-optim: install
	$(BIN)/rootbench bench-optim --runs $(RUNS) $(ARGS)

list: install
	$(BIN)/rootbench list

clean:
	rm -rf site .pytest_cache
