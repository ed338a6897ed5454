# The commands the README gives. `make test` works from a fresh machine: it installs what it needs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
PYTHON := $(VENV)/bin/python
CARGO ?= cargo

.PHONY: run test lint test-rust conformance venv

## run: the service on :5050 (Ctrl-C stops it; spans go to DD_AGENT_HOST:DD_TRACE_AGENT_PORT)
run:
	$(CARGO) run --release --bin apm-demo

## test: lint, the Rust tests, and the conformance suite against Datadog's test agent
test: lint test-rust conformance

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

test-rust:
	$(CARGO) test --workspace

conformance: venv
	DDAPM_TEST_AGENT=$(CURDIR)/$(VENV)/bin/ddapm-test-agent \
		$(CARGO) test --release --features conformance --test conformance

## venv: the Python tools of the tests, pinned in requirements.txt
venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@
