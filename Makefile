# SPDX-License-Identifier: Apache-2.0
# Thin wrapper around Meson (DESIGN.md §3). Real build logic lives in meson.build files.
BUILD ?= build
FUZZ_BUILD ?= build-fuzz
ASAN_BUILD ?= build-asan
FUZZ_CAP_SECONDS ?= 900
PYTEST ?= /usr/bin/python3 -m pytest
PYTEST_ARGS ?=
SOURCES = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

.PHONY: bench-soak bench-start bench-workspace bench-policy bench-boot bench-density bench-density-ksm lint all build deps check check-unit check-asan check-integration fuzz-smoke format format-check demo clean

all: build

deps:
	@scripts/install-deps

$(BUILD)/build.ninja:
	meson setup $(BUILD)

build: $(BUILD)/build.ninja
	ninja -C $(BUILD)

check: deps format-check lint build check-unit check-asan fuzz-smoke check-integration
	@echo "make check: all suites passed"

check-unit: build
	meson test -C $(BUILD) --print-errorlogs --suite unit --suite fuzz

# Unit tests again under ASan + UBSan, built with clang (also proves the clang build).
check-asan: deps
	@[ -f $(ASAN_BUILD)/build.ninja ] || CC=clang meson setup $(ASAN_BUILD) -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
	ninja -C $(ASAN_BUILD)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		meson test -C $(ASAN_BUILD) --print-errorlogs --suite unit --suite fuzz

check-integration: build
	NUCLEUS_BUILD_DIR=$(abspath $(BUILD)) $(PYTEST) -q -ra $(PYTEST_ARGS) tests

fuzz-smoke: deps
	@[ -f $(FUZZ_BUILD)/build.ninja ] || CC=clang meson setup $(FUZZ_BUILD) -Dfuzz=true -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
	ninja -C $(FUZZ_BUILD)
	scripts/fuzz-smoke $(FUZZ_BUILD) $(FUZZ_CAP_SECONDS)

lint:
	@scripts/check-cloexec

format:
	clang-format -i $(SOURCES)

format-check:
	@clang-format --dry-run -Werror $(SOURCES) && echo "format-check: ok"

demo:
	@scripts/demo

# Create -> first tool answer: cold vs warm-pool claim (vs fork) as ratios (figures; not in make check).
bench-start: build
	NUCLEUS_BUILD_DIR=$(abspath $(BUILD)) bench/start

# Long-haul figures (not part of make check): 1,000 local-driver and 50 QEMU pod cycles.
bench-soak: build
	NUCLEUS_BUILD_DIR=$(abspath $(BUILD)) bench/node-soak

# Upload of a 300 MB, 30,000-file workspace with history vs tar c | tar x (figures, not in make check).
bench-workspace: build
	NUCLEUS_BUILD_DIR=$(abspath $(BUILD)) bench/workspace

# Instructions per policy decision under callgrind (figures, not pass/fail; not in make check).
bench-policy: build
	NUCLEUS_BUILD_DIR=$(abspath $(BUILD)) bench/policy/run

# Bare boot to PID 1, stock vs tuned command line (figures, not pass/fail; not in make check).
bench-boot: build
	NUCLEUS_BUILD_DIR=$(abspath $(BUILD)) bench/boot

# Host memory per idle pod for 1, 10 and 50 pods (figures, not pass/fail; not in make check;
# 50 idle pods take ~8 GiB). bench-density-ksm: the same with guest RAM mergeable and the host's
# ksmd switched on for the run (a host-wide setting, restored afterwards).
bench-density: build
	NUCLEUS_BUILD_DIR=$(abspath $(BUILD)) bench/density --counts 1,10,50

bench-density-ksm: build
	NUCLEUS_BUILD_DIR=$(abspath $(BUILD)) bench/density --counts 1,10,50 --ksm --ksm-run

clean:
	rm -rf $(BUILD) $(FUZZ_BUILD) $(ASAN_BUILD)
