# paratorch — top-level entry points.
#   make build   configure + compile (library, CLI, tests, benches)
#   make test    bootstrap + compile all but the benches + every test (unit and multi-rank)
#   make demo    bootstrap + build the paratorch binary + the demo job
#   make bench   benchmarks (installs the PyTorch peer on first use)
#   make mutants every bug in tests/mutants/ must fail a test (slow; not in make test)
#   make fuzz    libFuzzer runs of the file-format parsers (clang; FUZZ_SECONDS=60 each)
BUILD_DIR ?= build
JOBS ?= $(shell nproc)
# clang++ is the default compiler: it builds this torch-heavy tree in about
# 45% of g++ 12's time on a 2-core machine (docs/testing.md has the
# figures). g++ builds it too: `make CXX_COMPILER=g++ test`.
CXX_COMPILER ?= clang++
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=Release -DCMAKE_CXX_COMPILER=$(CXX_COMPILER)

.PHONY: bootstrap build test demo bench fuzz mutants install clean

bootstrap:
	@bash scripts/bootstrap

$(BUILD_DIR)/build.ninja:
	cmake -S . -B $(BUILD_DIR) -G Ninja $(CMAKE_FLAGS)

build: $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS) --target all benches

# The benches are outside `all`: no test runs them, and they are about a
# tenth of the build. Tests labelled one_process (a GoogleTest suite in one
# process: tests/cmake/gtest_suites.cmake) run side by side; then every
# other test runs alone, since multi-rank runs and deadline checks must not
# share the cores. Both passes always run; either failing fails the target.
CTEST = ctest --output-on-failure --timeout 600
test: bootstrap
	$(MAKE) $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS)
	cd $(BUILD_DIR) && { $(CTEST) -L '^one_process$$' -j $(JOBS); one=$$?; \
	  $(CTEST) -LE '^one_process$$' -j 1; rest=$$?; test $$one -eq 0 && test $$rest -eq 0; }

# Only the paratorch binary that scripts/demo runs: tests, benches and
# examples are not needed to start training.
demo: bootstrap
	$(MAKE) $(BUILD_DIR)/build.ninja
	cmake --build $(BUILD_DIR) -j $(JOBS) --target paratorch_cli
	bash scripts/demo

bench: bootstrap
	$(MAKE) build
	bash bench/run_all

mutants: bootstrap
	CMAKE_FLAGS="$(CMAKE_FLAGS)" bash scripts/mutants

fuzz:
	bash scripts/fuzz

install: build
	cmake --install $(BUILD_DIR) --prefix $(BUILD_DIR)/install

clean:
	rm -rf $(BUILD_DIR)
