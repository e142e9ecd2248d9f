# ckey — the two commands of README.md, and their helpers.
#   make run    install what is missing, build, start `ckey server --dev` on ./ckey-data
#   make test   install what is missing, build, run unit, integration and interop tests
BUILD      ?= build
ASAN_BUILD ?= build-asan
DATA_DIR   ?= ckey-data
LISTEN     ?= 127.0.0.1:8443
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)

.PHONY: all build deps run test test-asan bench format check-format clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j $(JOBS)

run: build
	@echo "ckey: starting the server on https://$(LISTEN) with data in ./$(DATA_DIR)"
	@echo "ckey: in another shell try:  $(BUILD)/ckey --data-dir $(DATA_DIR) --url https://$(LISTEN) whoami"
	$(BUILD)/ckey server --dev --data-dir $(DATA_DIR) --listen $(LISTEN)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	@if [ -f tests/interop/package.json ]; then scripts/run-interop.sh $(BUILD)/ckey; fi

# The unit and integration tests again under AddressSanitizer and UBSan (CI
# runs this too): the servers the integration tests start are sanitized as
# well, and a report makes their exit status, and so the test, fail.
test-asan: deps
	cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCK_SANITIZE=ON
	cmake --build $(ASAN_BUILD) -j $(JOBS)
	cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1 ctest --output-on-failure -L 'unit|integration' -j $(JOBS)

bench: build
	@if [ -x bench/run.sh ]; then bench/run.sh $(BUILD) $(if $(QUICK),--quick,); else echo "no benchmarks yet"; fi

FORMATTED = $$(git ls-files --cached --others --exclude-standard 'src/*.[ch]' 'tests/*.[ch]' 'bench/*.[ch]')

format:
	clang-format -i $(FORMATTED)

# Layout is .clang-format's call; CI fails on any difference.
check-format: deps
	clang-format --dry-run --Werror $(FORMATTED)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD)
