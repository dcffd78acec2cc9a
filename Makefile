# Two commands do everything on a fresh machine: `make demo` and `make test` (each installs into .venv first).
VENV        ?= .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.streetvision-installed
# torch first, so the range in pyproject.toml is already satisfied (CPU wheel where one is available locally).
TORCH_SPEC  ?= torch==2.13.0
DEMO_ARGS   ?=
SV          := $(VENV)/bin/streetvision
DEMO_RUN    := outputs/stage1_ultimate/runs/demo
DEMO_IMAGES := outputs/demo_images  # beside the run: commands never write into a run directory

.PHONY: install demo test test-all natix-compat bench mutation clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" || $(PY) -m pip install -q "torch>=2.4"
	$(PY) -m pip install -q -e ".[train,dev]"
	@touch $(STAMP)

# The whole pipeline on embedded synthetic scenes: ExPLoRA, training, threshold, calibration, bundle; then verify
# the bundle, score a few freshly generated images with it, and evaluate it (table + HTML report path last).
demo: install
	$(SV) run run_id=demo "pipeline.phases=[phase4,phase1,phase2,phase5,phase6]" $(DEMO_ARGS)
	$(SV) verify $(DEMO_RUN)/export/bundle
	$(SV) data synth --out $(DEMO_IMAGES) --n 6 --seed 2024 --unlabeled --force
	$(SV) predict $(DEMO_RUN)/export/bundle $(DEMO_IMAGES)
	$(SV) run run_id=demo "pipeline.phases=[evaluation]" $(DEMO_ARGS)

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m "slow or not slow"

# The stock NATIX miner's load line on our export, in the environments a miner runs: NATIX's lock
# (benchmarks/natix_lock.txt) with and without torchvision, and today's transformers with torchvision (.venv is the
# one without). Each gets the serving install (no extras); the environments are kept in COMPAT_ROOT between runs.
# Writes benchmarks/results/natix_compat.json; fails unless every environment scores like the bundle.
NATIX_LOCK       := benchmarks/natix_lock.txt
TORCHVISION_SPEC ?= $(if $(filter aarch64,$(shell uname -m)),torch==2.9.1 torchvision==0.24.1,torch==2.14.1 torchvision==0.29.1)
COMPAT_ROOT      ?= $(HOME)/.cache/streetvision/natix-compat
COMPAT_KEY       := $(shell (echo "$(TORCH_SPEC) $(TORCHVISION_SPEC)"; cat $(NATIX_LOCK)) | sha256sum | cut -c1-10)
natix-compat: install
	bash scripts/compat_env.sh $(COMPAT_ROOT)/natix-$(COMPAT_KEY) $(NATIX_LOCK) "$(TORCH_SPEC)" -r $(NATIX_LOCK)
	bash scripts/compat_env.sh $(COMPAT_ROOT)/natix-tv-$(COMPAT_KEY) $(NATIX_LOCK) $(TORCHVISION_SPEC) -r $(NATIX_LOCK)
	bash scripts/compat_env.sh $(COMPAT_ROOT)/current-tv-$(COMPAT_KEY) "" $(TORCHVISION_SPEC) transformers
	$(PY) benchmarks/natix_compat.py --env natix=$(COMPAT_ROOT)/natix-$(COMPAT_KEY)/bin/python \
		--env natix+torchvision=$(COMPAT_ROOT)/natix-tv-$(COMPAT_KEY)/bin/python \
		--env current+torchvision=$(COMPAT_ROOT)/current-tv-$(COMPAT_KEY)/bin/python

bench: install
	$(PY) benchmarks/synthetic_generation.py
	$(PY) benchmarks/frozen_cache.py
	$(PY) benchmarks/phase1_recipe.py
	$(PY) benchmarks/predictor_latency.py
	$(PY) benchmarks/explora_domain_shift.py
	$(PY) benchmarks/synthetic_ceiling.py
	$(PY) benchmarks/validator_fidelity.py
	$(PY) benchmarks/compile_cpu.py
	$(PY) benchmarks/real_recipe.py --recipes steps300 small_data_crossfit preset validator_aug cls_mean steps300_validator_aug ssl_synthetic ssl_synthetic_real

# Mutation testing of the core modules, each against the fast tests that cover it (not part of `make test` or CI):
# mutmut, because it forks each mutant's tests from a process that has already imported torch and runs only the tests
# that reach the mutated function (cosmic-ray and pytest-gremlins start a fresh interpreter per mutant). Writes
# benchmarks/results/mutation.json. MUTATION_MODULES=metrics.classification runs one module (see benchmarks/mutation.py).
MUTATION_MODULES ?=
mutation: install
	@$(PY) -c "import mutmut" 2>/dev/null || $(PY) -m pip install -q "mutmut>=3.8,<4"
	nice -n 10 $(PY) benchmarks/mutation.py $(MUTATION_MODULES)

clean:
	rm -rf outputs .pytest_cache
