# The two commands (see README.md):
#   make run    set up, then run the whole product on embedded defaults; Ctrl-C stops it
#   make test   set up, then run the whole test suite (what CI runs)
.PHONY: run test test-unit setup setup-test lint bench

run: setup
	.venv/bin/python -m embedded.run

test: setup-test
	.venv/bin/ruff check .
	.venv/bin/python -m pytest

# The tests that start no process: well under a minute
test-unit: setup-test
	.venv/bin/python -m pytest -m unit

setup:
	scripts/setup.sh

setup-test:
	scripts/setup.sh --test

lint: setup-test
	.venv/bin/ruff check .

# Every benchmark, one after another (about 12 minutes; results in docs/BENCHMARKS.md)
bench: setup-test
	.venv/bin/python -m bench.gateway_bench
	.venv/bin/python -m bench.bridge_bench
	.venv/bin/python -m bench.broker_floor
	.venv/bin/python -m bench.salt_tail
	.venv/bin/python -m bench.console
