# F1 Predictor. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
UV_VERSION := 0.13.8
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 3000
export OMP_NUM_THREADS ?= 1

.PHONY: help install system-deps browser-deps bench-deps compose-deps pg-deps train serve test test-fast lint format evaluate reports fuzz requirements build container clean

help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2}'

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

# Debian packages, as root or through sudo
APT_INSTALL = s=$$( [ "$$(id -u)" = 0 ] || echo sudo ); $$s apt-get update -qq && \
	$$s env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq

system-deps: ## Install the system libraries LightGBM needs (libgomp1), when missing
	@if ! ldconfig -p 2>/dev/null | grep -q libgomp.so.1; then \
	  echo "installing libgomp1"; \
	  $(APT_INSTALL) libgomp1; \
	fi

# --compile-bytecode: where PYTHONDONTWRITEBYTECODE is set (CI, containers, this machine)
# Python never caches .pyc, so every process would compile every module at each start
# (the Bento's five processes: cold start 10 s instead of 4).
$(VENV)/.synced: $(UV) pyproject.toml uv.lock Makefile
	$(UV) sync --frozen --compile-bytecode --python $(PYTHON)
	@touch $@

install: system-deps $(VENV)/.synced ## Create .venv with the locked dependencies

train: install ## Train, evaluate and store both models and the feature snapshot
	$(BIN)/f1 train

serve: install ## Set everything up (train if the store is empty, new features if the data changed) and serve on :$(PORT)
	$(BIN)/f1 train --if-missing
	$(BIN)/bentoml serve service:F1Predictor --port $(PORT)

evaluate: install ## Write reports/evaluation.{json,md} and figures
	$(BIN)/f1 evaluate

BACKTESTS ?= 2009 2014 2016 2017 2019 2021 2022 2023 2024

reports: install ## Rewrite every report the README quotes: f1 evaluate, f1 hindsight, then f1 backtest of each season in BACKTESTS (~10 min)
	$(BIN)/f1 evaluate
	$(BIN)/f1 hindsight
	@for s in $(BACKTESTS); do $(BIN)/f1 backtest --season $$s || exit 1; done

browser-deps: ## Install Debian's Chromium and ChromeDriver (the /ui browser test), when missing
	@if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then \
	  echo "installing chromium and chromium-driver"; \
	  $(APT_INSTALL) chromium chromium-driver; \
	fi

bench-deps: ## Install the load generator wrk (Debian package), when missing
	@if ! command -v wrk >/dev/null 2>&1; then \
	  echo "installing wrk"; \
	  $(APT_INSTALL) wrk; \
	fi

compose-deps: ## Install Debian's docker-compose (validates docker-compose.yml without an engine), when no compose is there
	@if ! docker compose version >/dev/null 2>&1 && ! command -v docker-compose >/dev/null 2>&1; then \
	  echo "installing docker-compose"; \
	  $(APT_INSTALL) docker-compose; \
	fi

pg-deps: ## Install Debian's PostgreSQL (the prediction log's tests start throwaway clusters), when missing
	@if ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then \
	  echo "installing postgresql"; \
	  $(APT_INSTALL) postgresql; \
	fi

test: install browser-deps bench-deps compose-deps pg-deps ## Run the whole test suite (slow end-to-end, browser and benchmark-harness tests included)
	$(BIN)/pytest

test-fast: install ## Run the tests, without the slow end-to-end ones
	$(BIN)/pytest -m "not slow"

lint: install ## ruff + mypy
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy pipelines training service.py bench

format: install ## Apply ruff's safe fixes, then format (ruff check --fix + ruff format)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# `make test` fuzzes with a fixed seed (same cases every run); `make fuzz` with a random one,
# printed first: replay a failure with `make fuzz F1_FUZZ_SEED=<seed>`.
fuzz: install ## Property-based fuzzing of a live server against its OpenAPI schema (random seed, 1000 cases per endpoint)
	@seed=$${F1_FUZZ_SEED:-$$(( (RANDOM << 15) | RANDOM ))}; \
	echo "fuzz seed: $$seed (replay: make fuzz F1_FUZZ_SEED=$$seed)"; \
	F1_FUZZ_SEED=$$seed F1_FUZZ_EXAMPLES=$${F1_FUZZ_EXAMPLES:-1000} \
	  $(BIN)/pytest tests/service/test_fuzz.py -s -q; status=$$?; \
	echo "fuzz seed: $$seed"; exit $$status

requirements: $(UV) ## Re-export requirements.txt (the Bento's pins) from uv.lock
	$(UV) export --frozen --no-default-groups --no-hashes --no-emit-project --no-header -o requirements.txt -q

build: install ## Train if needed, then `bentoml build` (the Bento records the three models)
	$(BIN)/f1 train --if-missing
	$(BIN)/bentoml build

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml | head -1)
container: build ## Build the Bento and its Docker image f1-predictor:$(VERSION) (needs Docker)
	@# from outside the project: BentoML 1.4.40 bug #5566 with dockerfile templates
	cd "$${TMPDIR:-/tmp}" && $(CURDIR)/$(BIN)/bentoml containerize f1-predictor:latest -t f1-predictor:$(VERSION)

clean: ## Remove the venvs and caches (the model store is left alone)
	rm -rf $(VENV) $(SERVE_VENV) $(TOOLS) .cache .pytest_cache .mypy_cache .ruff_cache

# ------------------------------------------------------------------- benchmark
# wrk (the load generator) from Debian's package (bench-deps); py-spy (optional profile) in .tools.
BENCH_ARGS ?=

SERVE_VENV := .venv-serve
$(SERVE_VENV)/.synced: $(UV) pyproject.toml uv.lock Makefile
	UV_PROJECT_ENVIRONMENT=$(SERVE_VENV) $(UV) sync --frozen --no-default-groups --compile-bytecode --python $(PYTHON)
	@touch $@

bench: install bench-deps $(SERVE_VENV)/.synced ## Benchmark the Bento beside the original design and the plain limit (~8 min): BENCHMARKS.md
	@[ -x $(TOOLS)/bin/py-spy ] || $(TOOLS)/bin/pip install --quiet --disable-pip-version-check py-spy \
	  || echo "py-spy not installed: the report will have no profile"
	F1_BENCH_SERVE_BIN=$(CURDIR)/$(SERVE_VENV)/bin PY_SPY=$(CURDIR)/$(TOOLS)/bin/py-spy \
	  $(BIN)/python -m bench.run --label "make bench" $(BENCH_ARGS)

bench-quick: install bench-deps ## Prove the benchmark harness works (~1 min, tiny runs; output in bench/results/tmp)
	$(BIN)/python -m bench.run --quick --label "make bench-quick" $(BENCH_ARGS)

soak: install bench-deps ## Soak the Bento: 5 min at concurrency 64; errors must be 0, memory growth < 10 %
	$(BIN)/python -m bench.run --soak 5 $(SOAK_ARGS)
