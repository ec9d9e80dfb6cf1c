# KubeLab: `make run` and `make test` are the whole quick start (README.md).
# Every target installs what it needs when it is missing, and nothing more.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV     ?= .venv
PY       := $(VENV)/bin/python
PIP      := $(VENV)/bin/pip
VAR      ?= var
STAMP    := $(VENV)/.installed
APT_LIST := deps/apt-packages.txt

export DJANGO_SETTINGS_MODULE := config.settings
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help run test setup deps venv agent migrate static content demo images lint format vendor clean

help:
	@echo "make run    install what is missing, set up, and start the whole platform"
	@echo "make test   the same set-up, then lint and the whole test suite"
	@echo "make lint   ruff, mypy, djlint"
	@echo "make vendor refresh xterm.js under static/vendor/ from the npm registry"

# --- installation -------------------------------------------------------------

# System packages: checked on every run, installed only when one is missing.
deps:
	@missing=$$(grep -v '^\s*\(#\|$$\)' $(APT_LIST) | while read -r pkg; do \
	    dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'install ok installed' || echo "$$pkg"; \
	  done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing system packages: $$missing — run make as root (apt-get install)"; exit 1; fi; \
	  echo "installing system packages:" $$missing; \
	  export DEBIAN_FRONTEND=noninteractive; \
	  apt-get update -qq && apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# The virtualenv, rebuilt only when the lock file changes.
# Debian's own python3 when present: the service user that runs the web tier
# must be able to execute the venv's interpreter (a pyenv under /root is not).
BOOT_PYTHON := $(shell test -x /usr/bin/python3 && echo /usr/bin/python3 || echo python3)

$(STAMP): requirements.lock | deps
	@test -x $(PY) || $(BOOT_PYTHON) -m venv $(VENV)
	$(PIP) install -q -r requirements.lock
	@# The checkout on the venv's path, so `tests.bootstrap` (a pytest -p plugin) imports.
	@$(PY) -c 'import site, sys; open(site.getsitepackages()[0] + "/kubelab.pth", "w").write(sys.argv[1] + "\n")' "$(CURDIR)"
	@touch $@

venv: $(STAMP)

# runtimed's per-sandbox exec agent: a small static C program (rebuilt only
# when its source changes). Without it runtimed falls back to `runc exec`.
agent: deps
	@runtime/sandbox/agent/build.sh

# --- set-up ---------------------------------------------------------------------

setup: venv agent
	@mkdir -p $(VAR)/run $(VAR)/log
	$(PY) manage.py migrate --noinput -v 0
	$(PY) manage.py collectstatic --noinput -v 0
	$(PY) manage.py create_demo_users
	@# the real helm v4 beside the venv's kubectl (tests and the chart's lint use it; pinned, checked)
	@$(PY) scripts/helm.py -q >/dev/null
	@$(MAKE) --no-print-directory content images

content:
	@if $(PY) manage.py help import_course >/dev/null 2>&1 && [ -d content ] && ls content/*/course.yaml >/dev/null 2>&1; then \
	  for course in content/*/; do $(PY) manage.py import_course "$$course"; done; \
	else echo "no course content to load yet"; fi

# Lab images are built once into the runtime's store and cached there.
images:
	@if [ -f runtime/__main__.py ] && [ "$$(id -u)" = 0 ]; then \
	  $(PY) -m runtime build-image --root $(VAR)/runtime --unpack busybox && \
	  $(PY) -m runtime build-image --root $(VAR)/runtime --unpack lab-base && \
	  for image in debian:bookworm python:3.11-slim python:3.11-minimal nginx:1.22 kubelab-hello:1 kubelab-hello:2; do \
	    $(PY) -m runtime build-image --root $(VAR)/runtime $$image || exit 1; \
	  done; \
	else echo "lab images: skipped (needs root and the runtime)"; fi

run: setup
	$(PY) scripts/run.py

# --- quality --------------------------------------------------------------------

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy .
	$(VENV)/bin/djlint --check templates
	$(VENV)/bin/djlint --lint templates

format: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .
	$(VENV)/bin/djlint --reformat templates

test: setup
	@$(MAKE) --no-print-directory lint
	$(VENV)/bin/pytest $(PYTEST_ARGS)

vendor:
	scripts/vendor.sh

clean:
	rm -rf $(VENV) node_modules .pytest_cache .mypy_cache .ruff_cache
