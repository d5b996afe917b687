# pgsafe: safe PostgreSQL schema synchronisation with Ansible.
#   make demo    the main job on throwaway local clusters (prints the report path last)
#   make test    the whole test suite (lint, unit, integration, faults, molecule); .ci/run calls it
SHELL := /bin/bash
.DEFAULT_GOAL := help
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(abspath $(VENV)/bin)
export PATH := $(BIN):$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 0
PYTEST_ARGS ?=
BENCH ?=
PYTHON ?= python3

.PHONY: help venv collections db-up db-down db-status demo test test-all lint unit integration faults faults-fast molecule bench clean

help:
	@grep -E '^#   make' Makefile | sed 's/^#   //'
	@echo "other targets: venv lint unit integration faults molecule bench db-up db-down db-status clean"

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r requirements.txt
	touch $@

venv: $(VENV)/.installed

# Satisfied offline by the collections the `ansible` package bundles.
$(VENV)/.collections: requirements.yml $(VENV)/.installed
	$(VENV)/bin/ansible-galaxy collection install -r requirements.yml
	touch $@

collections: $(VENV)/.collections

db-up: venv
	$(PY) tools/pgclusters.py up

db-down:
	@if [ -x $(PY) ]; then $(PY) tools/pgclusters.py down; else $(PYTHON) tools/pgclusters.py down; fi

db-status:
	$(PYTHON) tools/pgclusters.py status

demo: venv collections
	@tools/demo.sh

lint: venv
	yamllint -s .
	ansible-lint --profile production
	ruff check library module_utils plugins playbooks/callback_plugins tools tests bench

unit: venv
	pytest -q tests/unit $(PYTEST_ARGS)

integration: venv collections
	pytest -q tests/integration -m "not slow" $(PYTEST_ARGS)

# The whole fault and bad-input suite (slow playbook-level cases included).
faults: venv collections
	pytest -q tests/faults $(PYTEST_ARGS)

# The fault cases that fit CI's budget (module-level faults, security scans).
faults-fast: venv collections
	pytest -q tests/faults -m "not slow" $(PYTEST_ARGS)

molecule: venv collections
	tools/molecule.sh

test: lint unit integration faults-fast molecule

# Everything, slow cases included (playbook-level faults, AWX templates under ansible-runner).
test-all: lint unit
	pytest -q tests/integration tests/faults $(PYTEST_ARGS)
	$(MAKE) molecule

bench: venv collections
	@tools/bench.sh $(BENCH)

clean: db-down
	rm -rf .pgdata artifacts .pytest_cache
