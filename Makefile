# The commands the README gives. `make test` works from a fresh machine: it installs what it needs.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
VENV := .venv
PYTHON := $(VENV)/bin/python
CARGO ?= cargo

.PHONY: run local screenshots release install bin-dir venv-note test lint test-rust conformance test-python test-compose mariadb chromium venv bench bench-database bench-loadgen bench-tracing bench-instructions bench-dd-settings bench-build bench-seed bench-memory bench-export bench-tools bench-valgrind test-parity bench-gate bench-budget-update

# The release binaries are built one way for every command that runs them (release, run, local,
# install, bin-dir; the test and bench targets through `release`): one cargo invocation, so that
# cargo's fingerprints match and one build serves them all. BIN_DIR is where that build puts them:
# cargo's target directory (CARGO_TARGET_DIR and build.target-dir honoured), then release/.
BUILD_RELEASE = $(CARGO) build --release --workspace --bin apm-demo --bin loadgen --bin provision
BIN_DIR = $(shell CARGO="$(CARGO)" local/bin-dir.sh)
INSTALL_DIR ?= $(or $(CARGO_HOME),$(HOME)/.cargo)/bin

## run: the service on :5050 (Ctrl-C stops it; spans go to DD_AGENT_HOST:DD_TRACE_AGENT_PORT)
run: release
	exec "$(BIN_DIR)/apm-demo"

## local: the demo with no Docker and no Datadog account (DURATION=30s, RATE=50, PORT=5050, KEEP=1
## leaves the test agent up; FAULT=<flag> turns a fault flag on a third of the way in (docs/faults.md);
## EXPORTER=datadog-opentelemetry sends the spans with Datadog's own Rust tracer instead of
## opentelemetry-datadog; the logs, the traces and the run's service page stay in local/last-run/)
local: venv-note venv mariadb release
	BIN_DIR="$(BIN_DIR)" local/run.sh

## screenshots: the docs' pictures (docs/*.png), photographed in headless Chromium from the pages of
## a `make local` run and a FAULT=routeLatencyTailMs run (local/screenshots.py)
SCREENSHOTS_RUNS := target/screenshots
screenshots: venv mariadb chromium release
	OUT=$(SCREENSHOTS_RUNS)/run $(MAKE) --no-print-directory local
	OUT=$(SCREENSHOTS_RUNS)/fault FAULT=routeLatencyTailMs $(MAKE) --no-print-directory local
	$(PYTHON) local/screenshots.py --run $(SCREENSHOTS_RUNS)/run --fault-run $(SCREENSHOTS_RUNS)/fault --out docs

release:
	$(BUILD_RELEASE)

## install: apm-demo, loadgen and provision onto your PATH: copied to INSTALL_DIR (default
## ~/.cargo/bin, which rustup puts on PATH)
install: release
	install -d "$(INSTALL_DIR)"
	install -m 0755 "$(BIN_DIR)/apm-demo" "$(BIN_DIR)/loadgen" "$(BIN_DIR)/provision" "$(INSTALL_DIR)/"
	@echo "installed apm-demo, loadgen and provision into $(INSTALL_DIR)"

## bin-dir: the release binaries' directory, built first if needed (bin=$$(make -s bin-dir))
bin-dir: release
	@echo "$(BIN_DIR)"

# Says what the silent first `make venv` (pip: 30 s on an idle machine, 2 minutes on a busy one) is
# doing, before it starts.
venv-note:
	@test $(VENV)/.installed -nt requirements.txt || \
		echo "installing Datadog's test agent and the other Python tools into $(VENV) (pip prints nothing: 30 s to 2 minutes, once)"

## test: lint, the Rust tests, the conformance suite against Datadog's test agent, the Python suites,
## the compose suite, the parity test against Datadog's own tracer and the instruction budget. Not
## mutation testing: `make mutants-ci` (the two files that guard network input and memory, 10-13
## minutes) would take CI past its 40 minutes; run it on a change to either file
test: lint test-rust conformance test-python test-compose test-parity bench-gate

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets --all-features -- -D warnings
	# The service without its second exporter (TRACE_EXPORTER=datadog-opentelemetry refused at start).
	$(CARGO) clippy -p apm-demo --no-default-features -- -D warnings

test-rust:
	$(CARGO) test --workspace

## conformance: the release binary against Datadog's test agent, the fault suite (one test at a
## time: its latency comparisons must not share the machine with each other) and the database suite
## (a private MariaDB per test; one at a time: four MariaDB first starts at once on a loaded 2-core
## machine failed now and then), each once per exporter (TRACE_EXPORTER); then the limits suite (the
## listener's, whatever the exporter) and loadgen as a traced client (100 requests, 100 whole traces:
## loadgen's span at the root, the service's its child)
EXPORTERS := opentelemetry-datadog datadog-opentelemetry
# One command line for every suite, so that one release build serves them all: the whole workspace
# (its features unified as `make release` unifies them, so the dependencies are built once for
# both), every suite's binary compiled side by side first.
CONFORMANCE_TEST = $(CARGO) test --release --workspace --features apm-demo/conformance,loadgen/conformance
conformance: venv mariadb
	$(CONFORMANCE_TEST) --no-run --test conformance --test faults --test database --test limits --test trace_agent
	@for exporter in $(EXPORTERS); do \
		echo "== TRACE_EXPORTER=$$exporter"; \
		TRACE_EXPORTER=$$exporter DDAPM_TEST_AGENT=$(CURDIR)/$(VENV)/bin/ddapm-test-agent \
			$(CONFORMANCE_TEST) --test conformance || exit 1; \
		TRACE_EXPORTER=$$exporter $(CONFORMANCE_TEST) --test faults -- --test-threads=1 || exit 1; \
		TRACE_EXPORTER=$$exporter DDAPM_TEST_AGENT=$(CURDIR)/$(VENV)/bin/ddapm-test-agent \
			$(CONFORMANCE_TEST) --test database -- --test-threads=1 || exit 1; \
	done
	$(CONFORMANCE_TEST) --test limits -- --test-threads=1
	DDAPM_TEST_AGENT=$(CURDIR)/$(VENV)/bin/ddapm-test-agent $(CONFORMANCE_TEST) --test trace_agent

## test-python: agent-config (custom check, MySQL and DBM setup on a real MariaDB), the compose file
## and Dockerfiles, the secret scan, a headless Chromium on the service, `make local` end to end,
## provision's bodies against Datadog's models, and the Kubernetes manifests (API schemas, checkov)
test-python: venv mariadb chromium release
	$(VENV)/bin/pytest -q agent-config/tests tests/compose tests/repo tests/browser local provision/tests \
		deploy/kubernetes/tests

## test-compose: `docker compose up` for real: Debian's Docker engine (installed and started if
## needed), the stand-in base images, both images built as compose builds them, the local profile up
## and checked, then `down -v` (tests/containers)
test-compose: venv
	$(VENV)/bin/pytest -q -s tests/containers

## mutants: cargo-mutants on the service's and loadgen's source against their hermetic tests (each
## mutated package's `cargo test`, no conformance feature), one job, in a copy of the tree (never
## --in-place: others build in this one), its own target dir. Then the mutants of src/db/ that the
## hermetic tests missed get a second judge, the database suite against a real MariaDB (only a
## server can tell, say, a wrong insert id). Fails if a mutant survives both that
## .cargo/mutants.toml does not mark equivalent. A timeout (the mutant hung the tests) counts as caught.
## Other scopes: make mutants MUTANTS_SCOPE='--package provision' (or '--file src/config.rs')
.PHONY: mutants mutants-ci
MUTANTS_VERSION := 27.1.0
MUTANTS_SCOPE ?= --package apm-demo --package loadgen
MUTANTS_OUT := target/mutants-out
MUTANTS_DB_OUT := target/mutants-out-database
# cargo-mutants' exit codes: 0 all caught, 2 some missed, 3 some timed out; anything else is its failure.
MUTANTS_STATUS = if [ $$status -ne 0 ] && [ $$status -ne 2 ] && [ $$status -ne 3 ]; then \
	echo "cargo-mutants failed (exit $$status), see $$out/log"; exit $$status; fi; \
	if [ -s $$out/timeout.txt ]; then echo "caught by a timeout:"; cat $$out/timeout.txt; fi
mutants: venv mariadb
	@command -v cargo-mutants >/dev/null || test -x $(HOME)/.cargo/bin/cargo-mutants || \
		$(CARGO) install cargo-mutants --version $(MUTANTS_VERSION) --locked
	@mkdir -p $(MUTANTS_OUT) $(MUTANTS_DB_OUT)
	@status=0; CARGO_TARGET_DIR=$(CURDIR)/target/mutants $(CARGO) mutants $(MUTANTS_SCOPE) \
		--jobs 1 --output $(MUTANTS_OUT) || status=$$?; \
	out=$(MUTANTS_OUT)/mutants.out; $(MUTANTS_STATUS); \
	missed=$$(grep -v '^src/db/' $$out/missed.txt || true); \
	database=$$(grep '^src/db/' $$out/missed.txt | sed 's/[][\\.+*?(){}|^$$]/\\&/g' | paste -sd'|' || true); \
	if [ -n "$$database" ]; then \
		echo "src/db/ mutants the hermetic tests missed, against MariaDB (tests/database.rs):"; \
		status=0; CARGO_TARGET_DIR=$(CURDIR)/target/mutants-database \
		DDAPM_TEST_AGENT=$(CURDIR)/$(VENV)/bin/ddapm-test-agent $(CARGO) mutants --package apm-demo \
			--file 'src/db/*.rs' --re "^($$database)\$$" --features conformance --jobs 1 \
			--output $(MUTANTS_DB_OUT) -- --test database -- --test-threads=1 || status=$$?; \
		out=$(MUTANTS_DB_OUT)/mutants.out; $(MUTANTS_STATUS); \
		missed=$$(printf '%s\n%s' "$$missed" "$$(cat $$out/missed.txt)" | sed '/^$$/d'); \
	fi; \
	if [ -n "$$missed" ]; then \
		echo "surviving mutants: kill each with a test, or mark it equivalent, with the reason, in .cargo/mutants.toml"; \
		echo "$$missed"; exit 1; fi

## mutants-ci: `make mutants` on the two files that matter most: trace-header parsing (network
## input) and the bounded export queue (the memory promise); 10-13 minutes from a clean clone, 76
## mutants
mutants-ci:
	$(MAKE) mutants MUTANTS_SCOPE='--file src/telemetry/propagation.rs --file src/telemetry/export_queue.rs'

## chromium: Debian's Chromium, installed if missing, and Playwright for Python in .venv, which drives
## that Chromium (never a browser of its own) for the browser tests and `make screenshots`
chromium: $(VENV)/.browser-installed
	@if ! command -v chromium >/dev/null; then \
		echo "installing chromium"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	fi
$(VENV)/.browser-installed: tests/browser/requirements.txt $(VENV)/.installed
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r tests/browser/requirements.txt
	touch $@

## mariadb: Debian's MariaDB server, installed if missing (the tests start a private instance of it)
mariadb:
	@if ! command -v mariadbd >/dev/null && ! test -x /usr/sbin/mariadbd; then \
		echo "installing mariadb-server"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq mariadb-server >/dev/null; \
	fi

## bench: the benchmarks; each prints its figures and ratios measured side by side in one run, untraced
## and traced by each exporter (bench/README.md)
bench: bench-loadgen bench-tracing bench-instructions bench-seed bench-memory bench-export bench-database \
	bench-dd-settings bench-build

bench-tools: venv release
	$(CARGO) build --release -p loadgen --example hello_server
	@command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk >/dev/null)

bench-valgrind:
	@command -v valgrind >/dev/null || (apt-get update -qq && apt-get install -y -qq valgrind >/dev/null)

## bench-loadgen: loadgen's maximum rate against wrk and oha on the same server, and fixed-rate latency
bench-loadgen: bench-tools
	@command -v oha >/dev/null || test -x $(HOME)/.cargo/bin/oha || $(CARGO) install oha --locked
	python3 bench/bench_loadgen.py

## bench-tracing: untraced against traced by each exporter, same binary: saturation, fixed-rate latency,
## peak RSS (null sink, then the test agent)
bench-tracing: bench-tools
	python3 bench/bench_tracing.py

## bench-instructions: the service's instructions per request, untraced and traced by each exporter (callgrind)
bench-instructions: bench-tools bench-valgrind
	python3 bench/bench_instructions.py

## bench-database: the database routes (callgrind untraced, and each exporter with DBM off and full;
## p50/p99 at 200/s against a private MariaDB; no span lost at 400/s, each exporter)
bench-database: bench-tools bench-valgrind mariadb
	python3 bench/bench_database.py

## bench-dd-settings: datadog-opentelemetry's telemetry, remote configuration and client-side stats,
## each switched off and all three (callgrind: per request, per idle second; what it sends)
bench-dd-settings: bench-tools bench-valgrind mariadb
	python3 bench/bench_dd_settings.py

## bench-build: what the datadog-opentelemetry feature adds to a clean release build (CPU seconds,
## crates) and to the binary (stripped size), in throwaway target directories (two clean builds)
bench-build:
	@command -v strip >/dev/null || (apt-get update -qq && apt-get install -y -qq binutils >/dev/null)
	python3 bench/bench_build.py

## bench-seed: the instrumented service against the seed's Flask app (gunicorn/dev server, ddtrace)
bench-seed: bench-tools
	python3 bench/bench_seed.py

## bench-memory: RSS idle, under 60 s of load, and after 1M requests with no agent (the exporter
## TRACE_EXPORTER names: TRACE_EXPORTER=datadog-opentelemetry make bench-memory measures the other)
bench-memory: bench-tools
	python3 bench/bench_memory.py

## bench-export: spans received / requests sent at 1000 req/s for 30 s, each exporter, to the test
## agent and to the null sink (which must count the same)
bench-export: bench-tools
	python3 bench/bench_export.py

## test-parity: the seed's Flask app under ddtrace-run and the release service against one test agent,
## the same requests (seed routes, 404, 405, every propagation case of the conformance suite), their
## spans compared with the committed list of expected differences (tests/parity)
test-parity: venv release
	$(VENV)/bin/pytest -q tests/parity

## bench-gate: instructions per request (callgrind), untraced and traced by each exporter, for each
## route of bench/budget.json; fails when one exceeds its budget by more than 3% (2 runs at a time)
bench-gate: release bench-valgrind
	python3 bench/gate_instructions.py

## bench-budget-update: measure and write bench/budget.json, after an intended change (commit it, saying why)
bench-budget-update: release bench-valgrind
	python3 bench/gate_instructions.py --update

## venv: the Python tools of the tests, pinned in requirements.txt
venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt
	test -x $(PYTHON) || python3 -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@
