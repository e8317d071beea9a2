# foundation-p2p: every target creates .venv and installs the project first, so on a fresh
# machine `make demo` and `make test` are the only two commands a newcomer needs.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
FUZZ_STAMP := $(VENV)/.installed-fuzz
BENCH_STAMP := $(VENV)/.installed-bench
BENCH_FLAGS ?=

.PHONY: test demo bench bench-quick fuzz soak soak-pytest soak-sim lint types tools clean

## make tools: the Debian tools some tests use (ip, nft, dnsmasq), when root; never fails
tools:
	@./.ci/debian-tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $@

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,bench]'
	touch $@

$(FUZZ_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[test,fuzz]'
	touch $@

lint: $(STAMP)
	$(BIN)/ruff check foundation_p2p simulator tests bench fuzz

types: $(STAMP)
	$(BIN)/mypy

## make test: lint, types, unit, conformance, fuzz-lite, simulator (CI-sized), real UDP on 127.0.0.1
test: tools lint types
	$(BIN)/python -m pytest -q -m "not soak" -p no:cacheprovider

## make demo: five node processes over UDP on 127.0.0.1, every capability step by step (under a minute); exit 1 names a failed step
demo: $(STAMP)
	$(BIN)/python -m foundation_p2p.demo

## make bench: every benchmark at full size; each prints one JSON object as its last line
bench: tools $(BENCH_STAMP)
	@set -e; for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b $(BENCH_FLAGS); done

bench-quick: tools $(BENCH_STAMP)
	@set -e; for b in bench/*.py; do echo "== $$b"; $(BIN)/python $$b --quick; done

## make fuzz: atheris on every decoder (FUZZ_SECONDS each, or FUZZ_BUDGET in all); totals in fuzz/last-run.json, findings saved to tests/fuzz/regressions
fuzz: $(FUZZ_STAMP)
	$(BIN)/python fuzz/atheris_main.py --all --seconds $${FUZZ_SECONDS:-20} $${FUZZ_BUDGET:+--budget $$FUZZ_BUDGET}

## make soak (about 2 h here; SOAK_SEEDS, SWEEP_SEEDS, SOAK_KV_SEEDS change its length):
##  1. soak/cluster.py: 5 node processes on 127.0.0.1 under churn for SOAK_CLUSTER_MINUTES
##     (default 10), alone on the machine: flat memory, zero errors;
##  2. then two lanes side by side, one CPU each (`make -j2 --output-sync=line`):
##     soak-pytest: pytest -m soak (the 1000-node scenarios are its long pole, about 1.5 h);
##     soak-sim: the 1,000-seed KV random-fault sweep within SOAK_MINUTES (fails if the
##     budget ends first), the full-size *-soak.toml scenarios x SOAK_SEEDS (default 1: the
##     two one-hour slow-node scenarios take about 10 min of a CPU per seed), and the CI-sized
##     scenarios x SWEEP_SEEDS (default 10). The two 1000-node scenarios run in soak-pytest at
##     seed 1 (tests/simulator/test_membership_soak.py); SOAK_BIG_SEEDS=n sweeps them here too.
soak: tools $(STAMP)
	@echo "== soak/cluster.py: 5 node processes on 127.0.0.1 for $${SOAK_CLUSTER_MINUTES:-10} min, one killed and restarted every 30 s"
	$(BIN)/python -m soak.cluster --minutes $${SOAK_CLUSTER_MINUTES:-10}
	@$(MAKE) --no-print-directory -j2 --output-sync=line soak-pytest soak-sim SOAK_SIM_JOBS=1

soak-pytest: $(STAMP)
	$(BIN)/python -m pytest -q -m soak -p no:cacheprovider || test $$? -eq 5

soak-sim: $(STAMP)
	@echo "== simulator/scenarios/kv-random-faults.toml --random-faults: $${SOAK_KV_SEEDS:-1000} seeds within $${SOAK_MINUTES:-60} min"
	@out=$$($(BIN)/foundation-p2p sim sweep simulator/scenarios/kv-random-faults.toml --random-faults \
		--seeds 1..$${SOAK_KV_SEEDS:-1000} --budget $${SOAK_MINUTES:-60}m $${SOAK_SIM_JOBS:+--jobs $$SOAK_SIM_JOBS} --json); st=$$?; \
		echo "$$out" | tail -n 1; exit $$st
	@st=0; for s in simulator/scenarios/*-soak.toml; do \
		seeds=$${SOAK_SEEDS:-1}; \
		case $$s in *-1000-soak.toml|*/membership-join-wave-soak.toml) seeds=$${SOAK_BIG_SEEDS:-0};; esac; \
		if [ "$$seeds" = 0 ]; then echo "== $$s: 1000 nodes, run at seed 1 by soak-pytest (SOAK_BIG_SEEDS=n sweeps it here)"; continue; fi; \
		flags=; case $$s in *random-faults*) flags=--random-faults;; esac; \
		echo "== $$s $$flags"; \
		out=$$($(BIN)/foundation-p2p sim sweep $$s --seeds 1..$$seeds $$flags $${SOAK_SIM_JOBS:+--jobs $$SOAK_SIM_JOBS} --json) || st=1; \
		echo "$$out" | tail -n 1; done; exit $$st
	@st=0; for s in simulator/scenarios/*.toml; do case $$s in *-soak.toml|*/kv-random-faults.toml) continue;; esac; \
		flags=; case $$s in *random-faults*) flags=--random-faults;; esac; \
		echo "== $$s $$flags"; \
		out=$$($(BIN)/foundation-p2p sim sweep $$s --seeds 1..$${SWEEP_SEEDS:-10} $$flags $${SOAK_SIM_JOBS:+--jobs $$SOAK_SIM_JOBS} --json) || st=1; \
		echo "$$out" | tail -n 1; done; exit $$st

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .hypothesis build *.egg-info
