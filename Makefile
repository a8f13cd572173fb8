# MicroSSE — two commands on a fresh Debian machine with the Swift toolchain:
#   make demo   installs what is missing, builds, runs the clock demo on http://127.0.0.1:8080/
#   make test   the same set-up, then every test
SWIFT ?= swift
PREFIX ?= /usr/local
CONFIG ?= debug
BUILD_DIR = .build/$(CONFIG)
HOST ?= 127.0.0.1
PORT ?= 8080

# Debian packages the build needs, then those the tests need.
BUILD_PACKAGES = libmicrohttpd-dev libhiredis-dev libjwt-dev libgnutls28-dev pkg-config
# nginx and systemd (systemd-analyze) check the deploy files in Examples/deploy.
TEST_PACKAGES = curl openssl valgrind gcc g++ redis-server redis-sentinel nginx systemd

.PHONY: all deps test-deps build lib demo serve test browser-test install bench bench-smoke fuzz sanitizers soak clean format lint

all: build

deps:
	@scripts/deps.sh $(BUILD_PACKAGES)

test-deps: deps
	@scripts/deps.sh $(TEST_PACKAGES)

build: deps
	$(SWIFT) build -c $(CONFIG)

# The C library: SwiftPM names it libMicroSSEC.so (see Package.swift); C users link -lmicrosse.
lib: build
	@ln -sf libMicroSSEC.so $(BUILD_DIR)/libmicrosse.so

demo: build
	$(BUILD_DIR)/microsse demo --host $(HOST) --port $(PORT)

# The hub with its live page at / (Examples/web/index.html).
serve: build
	$(BUILD_DIR)/microsse serve --web --host $(HOST) --port $(PORT)

# Every test: the Swift suites (wire, core, servers over loopback, the C ABI and C example,
# hostile clients, Redis), the browser suite in headless Chromium, and the benchmark tools'
# self-tests (benchmarks themselves never run here: `make bench`).
test: test-deps lib lint
	$(SWIFT) test
	Tests/browser/run.sh
	$(MAKE) -C Benchmarks selftest

browser-test: lib
	Tests/browser/run.sh

# The C library, its header and pkg-config file, and the microsse program (PREFIX/bin).
install: lib
	scripts/install-c.sh "$(PREFIX)" "$(BUILD_DIR)"

# Benchmarks run against the release build, with the C and Node.js references in the same run.
bench: deps
	$(SWIFT) build -c release --product microsse
	$(MAKE) -C Benchmarks bench

bench-smoke: deps
	$(SWIFT) build -c release --product microsse
	$(MAKE) -C Benchmarks smoke

# Reliability (see docs/RELIABILITY.md; each target rewrites its own section there).
FUZZ_SECONDS ?= 60
SOAK_SECONDS ?= 600
# Tests that build C programs against the instrumented library, or measure RSS, cannot run in a
# sanitizer build; everything else does.
SANITIZER_SKIP ?= fourPublisherThreads|errorPathsFromC|valgrind|installedPkgConfig|documentedExample|headerCompilesAsCpp|stuckSubscriberIsDropped

fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) Fuzz/run.sh

sanitizers: test-deps
	SANITIZER_SKIP='$(SANITIZER_SKIP)' scripts/sanitizers.sh

soak: test-deps
	SOAK_SECONDS=$(SOAK_SECONDS) scripts/soak.sh

format:
	$(SWIFT) format format -i -r Package.swift Sources Tests

lint:
	$(SWIFT) format lint --strict -r Package.swift Sources Tests

clean:
	rm -rf .build
