# Two commands do everything on a fresh machine: `make demo` and `make test` (each installs into .venv first).
VENV        ?= .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.streetvision-installed
# torch first, so the range in pyproject.toml is already satisfied (CPU wheel where one is available locally).
TORCH_SPEC  ?= torch==2.13.0
DEMO_ARGS   ?=

.PHONY: install demo test test-all bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH_SPEC)" || $(PY) -m pip install -q "torch>=2.4"
	$(PY) -m pip install -q -e ".[dev]"
	@touch $(STAMP)

demo: install
	$(VENV)/bin/streetvision run run_id=demo $(DEMO_ARGS)

test: install
	$(PY) -m pytest -q

test-all: install
	$(PY) -m pytest -q -m "slow or not slow"

clean:
	rm -rf outputs .pytest_cache
