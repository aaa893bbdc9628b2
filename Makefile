# The two commands (see README.md):
#   make run    set up, then run the whole product on embedded defaults; Ctrl-C stops it
#               (TAILGATE_REPLICAS=3 make run: three gateways behind HAProxy;
#                TAILGATE_REDIS_MODE=cluster make run: on a three-primary Redis Cluster)
#   make test   set up, then run the whole test suite (what CI runs)
.PHONY: run test test-unit setup setup-test lint bench bench-peers

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

# Every benchmark, one after another (about 25 minutes; results in docs/BENCHMARKS.md)
bench: setup-test
	.venv/bin/python -m bench.gateway_bench
	.venv/bin/python -m bench.filters_bench
	.venv/bin/python -m bench.workers_bench
	.venv/bin/python -m bench.cluster_bench
	.venv/bin/python -m bench.replica_loss
	.venv/bin/python -m bench.bridge_bench
	.venv/bin/python -m bench.broker_floor
	.venv/bin/python -m bench.e2e_bench
	.venv/bin/python -m bench.salt_tail
	.venv/bin/python -m bench.console

# Tailgate against Django Channels, python-socketio and a naive Tornado loop, same run
# (about 8 minutes; docs/BENCHMARKS.md). The peers install into .venv-peers, never .venv.
PEERS_STAMP = .venv-peers/.installed-$(shell sha1sum bench/peers/requirements.txt | cut -c1-12)
bench-peers: setup $(PEERS_STAMP)
	.venv/bin/python -m bench.peers.run

$(PEERS_STAMP): bench/peers/requirements.txt
	test -x .venv-peers/bin/python || $${PYTHON:-python3} -m venv .venv-peers
	.venv-peers/bin/pip install -q --disable-pip-version-check -r bench/peers/requirements.txt
	rm -f .venv-peers/.installed-*
	touch $@
