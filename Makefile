# privacyd — the two commands that matter: `make run` and `make test`.
# Both start from a fresh Debian 12 machine: they install what is missing.

SHELL := /bin/bash
.DEFAULT_GOAL := help

# CI builds with warnings as errors; a developer's build does not stop on one.
PRESET ?= $(if $(CI),ci,release)
JOBS ?= $(shell nproc)
CONFIG ?= config/privacyd.yaml
BIN := build/privacyd
PYTHON ?= python3

# Every Debian package the build, the tests and the benchmarks need.
PACKAGES := g++ cmake make pkg-config ccache python3 \
  libboost1.81-dev libboost-json1.81-dev libboost-url1.81-dev \
  libsoci-dev libpq-dev libsqlite3-dev libyaml-cpp-dev libssl-dev \
  libsystemd-dev libcurl4-openssl-dev libkainjow-mustache-dev libcli11-dev \
  catch2 postgresql systemd clang libclang-rt-14-dev sqlite3 openssl prometheus \
  python3-aiosmtpd python3-cryptography chromium chromium-driver python3-selenium \
  dpkg-dev lintian man-db strace

.PHONY: help deps configure build run test test-asan test-fuzz bench chaos var deb clean

help:
	@echo "make run    build and run privacyd on SQLite with the shipped workflows and policies"
	@echo "make test   build and run every test (unit, integration on SQLite and PostgreSQL, asan)"
	@echo "make deps   install the Debian packages privacyd needs (as root)"
	@echo "make deb    build build/privacyd_VERSION_amd64.deb (install: apt install ./build/privacyd_*.deb)"
	@echo "make bench  measure intake against pgbench on the same machine"
	@echo "make chaos  5,000 requests per scenario while PostgreSQL restarts, instances die, partners and mail fail"

# Installs only what is missing, so a second run costs one dpkg query.
deps:
	@missing=$$(for p in $(PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "installing:" $$missing; \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
	  $$sudo apt-get update -q && \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	fi

configure: deps
	cmake --preset $(PRESET)

build: configure
	cmake --build --preset $(PRESET) -j $(JOBS)

# Development state under var/: `privacyd keys init` makes every key,
# secret and token config/privacyd.yaml names, once (never over a file).
var: build
	@mkdir -p var/keys var/notices var/demo
	@chmod 700 var/keys
	$(BIN) keys init --dir var/keys --config $(CONFIG)

# The demo partners' notice webhooks (policies/partners.yaml) are played
# by `privacyd receive`, which keeps what it gets under var/partner-notices/
# and acknowledges it; a third plays the Partner Center's callback endpoint.
run: build var
	$(BIN) migrate --config $(CONFIG)
	$(BIN) demo --config $(CONFIG)
	@echo "the operator console: http://127.0.0.1:8081/ui/ (token: var/keys/operator-token)"
	@$(BIN) receive --listen 127.0.0.1:9100 --secret-file var/keys/partner-P-1001.secret \
	    --dir var/partner-notices/P-1001 --acknowledge erased & \
	  $(BIN) receive --listen 127.0.0.1:9101 --secret-file var/keys/partner-P-1002.secret \
	    --dir var/partner-notices/P-1002 --acknowledge erased & \
	  $(BIN) receive --listen 127.0.0.1:9102 --secret-file var/keys/partner-center-callback.secret \
	    --dir var/partner-center-callbacks & \
	  trap 'kill $$(jobs -p) 2>/dev/null' EXIT; \
	  $(BIN) serve --config $(CONFIG)

test: build
	ctest --preset $(PRESET) -j $(JOBS)
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-fuzz

# Every test again with the daemon built with AddressSanitizer and
# UndefinedBehaviorSanitizer: the integration tests drive the instrumented
# binary, which is how use-after-free in coroutine code gets caught.
test-asan: deps
	cmake --preset asan
	cmake --build --preset asan -j $(JOBS)
	ctest --preset asan -j $(JOBS)

# Each libFuzzer target for PRIVACYD_FUZZ_SECONDS (30) from its seed corpus.
test-fuzz: deps
	cmake --preset fuzz
	cmake --build --preset fuzz -j $(JOBS)
	ctest --test-dir build-fuzz --output-on-failure -j $(JOBS)

# Throughput against baselines measured in the same run (SPEC §12); prints
# medians and ratios, asserts nothing. nginx and wrk are the HTTP baseline.
BENCH_PACKAGES := nginx wrk
bench: build
	@missing=$$(for p in $(BENCH_PACKAGES); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed$$' || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then sudo=""; else sudo="sudo"; fi; \
	  $$sudo apt-get update -q && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -q --no-install-recommends $$missing; \
	fi
	$(PYTHON) tests/bench/intake_bench.py
	PATH="$$PATH:/usr/sbin" $(PYTHON) tests/bench/http_bench.py
	$(PYTHON) tests/bench/e2e_bench.py
	$(PYTHON) tests/bench/memory_bench.py
	$(PYTHON) tests/bench/crash_bench.py
	/usr/bin/python3 tests/bench/key_rotation_bench.py

# The chaos suite in full (SPEC §12, tests/chaos/chaos.py): per scenario,
# 5,000 requests while PostgreSQL restarts every 5-20 s, two instances on one
# database are killed at random, a partner answers 503 half the time, or an
# SMTP server drops half of its connections. Each prints accepted,
# completed, lost, stuck, notices with repeats by id and under two ids, and
# a verdict; exit 1 if any fails. `make test` runs the short version of each.
# One scenario: `$(PYTHON) tests/chaos/chaos.py pg-restart` (--short, CHAOS_*).
chaos: build
	PRIVACYD_BIN=$(abspath $(BIN)) $(PYTHON) tests/chaos/chaos.py

# The Debian package (SPEC §11), by CPack from the release build: the
# binary, the unit, /etc/privacyd, privacyd(8). tests/integration/
# test_package.py builds, inspects, lints and (as root in CI) installs it.
deb: build
	cd build && cpack -G DEB
	@ls build/privacyd_*.deb

clean:
	rm -rf build build-dev build-asan build-fuzz
