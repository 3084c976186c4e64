# ikebox. `make demo` runs the main job; `make test` runs everything CI runs.
# Each area adds its own targets in mk/*.mk and appends its test target to TEST_TIERS.
SHELL := /bin/bash
PY := .venv/bin/python
PYTEST := $(PY) -m pytest
TEST_TIERS := test-unit test-interop
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: deps demo test test-unit test-interop lint bench clean

deps:
	@tools/install-deps.sh

demo: deps
	$(PY) -m tools.demo

test-unit: deps
	$(PYTEST) -q tests/unit

test-interop: deps
	$(PYTEST) -q tests/interop

include $(wildcard mk/*.mk)

test: deps
	@tools/run-tiers.sh $(TEST_TIERS)

clean:
	rm -rf build .cache test-output

lint: deps
	.venv/bin/ruff check --select E,F,W,B --line-length 99 firmware hw webui provisioning tools tests

bench: deps
	$(PY) -m tools.bench
