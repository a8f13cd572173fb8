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
TEST_PACKAGES = curl openssl valgrind gcc g++ redis-server redis-sentinel nginx systemd php-cli php-symfony-mercure

.PHONY: all deps test-deps build ship lib deb test-long demo serve test browser-test install bench bench-smoke fuzz sanitizers soak clean format lint

all: build

deps:
	@scripts/deps.sh $(BUILD_PACKAGES)

test-deps: deps
	@scripts/deps.sh $(TEST_PACKAGES)

build: deps
	$(SWIFT) build -c $(CONFIG)

# The shipped build (`make lib CONFIG=release`, `make install`, `make deb`): release mode, the
# Swift runtime linked in (-static-stdlib) so nothing of the toolchain is needed at run time,
# linked by lld, DWARF 4 throughout (Debian 12's valgrind 3.19 cannot read clang's default DWARF 5
# of the C parts), and a library exporting exactly include/microsse.h's functions (the version
# script scripts/c-symbols.sh writes from the header). Its own scratch path: it never rebuilds
# .build, which the tests and benchmarks use.
SHIP_SCRATCH = .build-release-c
SHIP_DIR = $(SHIP_SCRATCH)/release
SHIP_FLAGS = -c release --scratch-path $(SHIP_SCRATCH) --disable-local-rpath -Xswiftc -static-stdlib -Xswiftc -use-ld=lld \
	-Xswiftc -dwarf-version=4 -Xcc -gdwarf-4 -Xlinker -z -Xlinker now
SHIP_MAP = $(CURDIR)/$(SHIP_SCRATCH)/libmicrosse.map

ship: deps
	@mkdir -p $(SHIP_SCRATCH)
	@scripts/c-symbols.sh --version-script >$(SHIP_MAP).new
	@if cmp -s $(SHIP_MAP).new $(SHIP_MAP); then rm $(SHIP_MAP).new; \
	else mv $(SHIP_MAP).new $(SHIP_MAP); rm -f $(SHIP_DIR)/libMicroSSEC.so; fi
	$(SWIFT) build $(SHIP_FLAGS) --product MicroSSEC -Xlinker --version-script=$(SHIP_MAP)
	$(SWIFT) build $(SHIP_FLAGS) --product microsse

# The C library: SwiftPM names it libMicroSSEC.so (see Package.swift); its soname is
# libmicrosse.so.0 and C programs link -lmicrosse. CONFIG=release makes the shipped build.
ifeq ($(CONFIG),release)
LIB_DIR = $(SHIP_DIR)
lib: ship
else
LIB_DIR = $(BUILD_DIR)
lib: build
endif
lib:
	@ln -sf libMicroSSEC.so $(LIB_DIR)/libmicrosse.so.0
	@ln -sf libmicrosse.so.0 $(LIB_DIR)/libmicrosse.so

demo: build
	$(BUILD_DIR)/microsse demo --host $(HOST) --port $(PORT)

# The hub with its live page at / (Examples/web/index.html).
serve: build
	$(BUILD_DIR)/microsse serve --web --host $(HOST) --port $(PORT)

# Every test: the Swift suites (wire, core, servers over loopback, the C ABI and C example, the
# shipped library and program (make ship: exports, run without the toolchain, valgrind), hostile
# clients, Redis), the browser suite in headless Chromium, and the benchmark tools' self-tests
# (benchmarks themselves never run here: `make bench`).
test: test-deps lib ship lint
	$(SWIFT) test
	Tests/browser/run.sh
	$(MAKE) -C Benchmarks selftest

browser-test: lib
	Tests/browser/run.sh

# The shipped C library (libmicrosse.so.0.x.y and its links), its header and pkg-config file, and
# the microsse program (PREFIX/bin), stripped, their debug info split beside them (.debug/).
install: ship
	scripts/install-c.sh "$(PREFIX)" "$(SHIP_DIR)"

# Debian packages of the shipped build in out/deb (scripts/deb.sh): libmicrosse0, libmicrosse-dev,
# microsse, microsse-dbg; lintian's report in out/deb/lintian.txt.
DEB_PACKAGES = dpkg-dev lintian binutils
deb: ship
	@scripts/deps.sh $(DEB_PACKAGES)
	scripts/deb.sh $(SHIP_DIR) out/deb

# The long scenarios, after `make test` (.ci/run runs both): the tests gated by
# MICROSSE_LONG_TESTS=1 that wait out the shipped defaults (a 30 s timeout and more), and a Swift
# package outside this repository built against this checkout with the MicroSSERedis product
# (SwiftPM compiles every dependency again: minutes), each suite listed here; then the packages
# installed with dpkg, used as a C programmer and the systemd unit would, then removed
# (scripts/deb-test.sh; root).
LONG_TESTS ?= TLSHandshakeReleaseTests|OutsidePackageTests|FailoverAck|MercureHubDeath
test-long: test-deps lib deb
	MICROSSE_LONG_TESTS=1 $(SWIFT) test --filter '$(LONG_TESTS)'
	scripts/deb-test.sh out/deb

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
# sanitizer build, and those of the shipped build (make ship) check no instrumented code; everything
# else does.
SANITIZER_SKIP ?= fourPublisherThreads|errorPathsFromC|StopFromCallbackTests|valgrind|installedPkgConfig|documentedExample|headerCompilesAsCpp|stuckSubscriberIsDropped|exportsExactlyTheHeader|shipsAlone

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
	rm -rf .build $(SHIP_SCRATCH) out/deb
