# The commands the README gives. `make test` works from a fresh machine: it installs what it needs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
PYTHON := $(VENV)/bin/python
CARGO ?= cargo

.PHONY: run test lint test-rust conformance test-agent-config mariadb venv

## run: the service on :5050 (Ctrl-C stops it; spans go to DD_AGENT_HOST:DD_TRACE_AGENT_PORT)
run:
	$(CARGO) run --release --bin apm-demo

## test: lint, the Rust tests, the conformance suite against Datadog's test agent, agent-config
test: lint test-rust conformance test-agent-config

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings

test-rust:
	$(CARGO) test --workspace

conformance: venv
	DDAPM_TEST_AGENT=$(CURDIR)/$(VENV)/bin/ddapm-test-agent \
		$(CARGO) test --release --features conformance --test conformance

## test-agent-config: the custom check with datadog-checks-base, the MySQL setup on a real MariaDB
test-agent-config: venv mariadb
	$(VENV)/bin/pytest -q agent-config/tests

## mariadb: Debian's MariaDB server, installed if missing (the tests start a private instance of it)
mariadb:
	@if ! command -v mariadbd >/dev/null && ! test -x /usr/sbin/mariadbd; then \
		echo "installing mariadb-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null; \
	fi

## venv: the Python tools of the tests, pinned in requirements.txt
venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@
