# Fanout: `make demo` and `make test` work from a fresh clone (Python 3.11+, Java 17, Maven, kcat and
# Prometheus installed; .ci/run installs the Debian ones). The servers are real processes on 127.0.0.1,
# managed by `fanout stack up|down|status` (deploy/stack.py).

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
STAMP := $(VENV)/.installed
FANOUT := $(VENV)/bin/fanout
PYTEST := $(VENV)/bin/pytest
TESTS ?= tests/unit tests/contract tests/e2e
PYTEST_ARGS ?=

# Every prerequisite of a target, checked with the system's python3 before the venv or any server starts.
CHECK = $(PYTHON) deploy/prerequisites.py

FAULT_NODES ?= 1 3
DOCKER_NODES ?= 1 3

.PHONY: help venv demo run test test-faults test-cluster test-docker down lint clean

help:
	@echo "make demo   start the stack (Kafka, Cassandra, Prometheus) and run the demo; the stack stays up"
	@echo "make run    start the stack, then the pipeline in the foreground (fanout up), and print the live page's links; Ctrl-C stops it"
	@echo "make test   unit + e2e tests on the real stack (started if needed, stopped after if it was down)"
	@echo "make test-faults  kill servers and workers during fan-outs, on stacks of their own (1 node, then 3)"
	@echo "make test-cluster  the end-to-end oracle tests on a 3-node cluster of their own"
	@echo "make test-docker  docker-compose.yml on the Docker engine: oracle tests, containers killed, scaling (1 node, then 3)"
	@echo "make down   stop the stack"
	@echo "make lint   ruff and mypy"
	@echo "make clean  remove the venv and caches (keeps the jar cache in .fanout/cache)"

venv: $(STAMP)

# The venv is rebuilt when the project's dependencies change.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --upgrade pip
	$(VENV)/bin/python -m pip install -e '.[dev,bench]'
	touch $@

demo:
	@$(CHECK) stack "make demo"
	@$(MAKE) --no-print-directory venv
	$(FANOUT) stack up
	$(FANOUT) demo
	@echo
	@echo "The stack (Kafka, Cassandra, Prometheus) stays running: 'make down' stops it."
	@echo "To keep the pipeline running on it (worker, read API, ingest API; Ctrl-C stops them): make run"
	@echo "(it prints links to the live page, signed in as users 1 and 2), then, or from another terminal with curl"
	@echo "(user 1 follows user 2, 2 posts, 1 reads; each acts with a token of its own):"
	@echo "  curl -s -XPOST localhost:$${FANOUT_INGEST_API_PORT:-8081}/v1/follows -H \"Authorization: Bearer \$$(.venv/bin/fanout token 1)\" -H 'content-type: application/json' -d '{\"followee_id\": 2}'"
	@echo "  curl -s -XPOST localhost:$${FANOUT_INGEST_API_PORT:-8081}/v1/posts -H \"Authorization: Bearer \$$(.venv/bin/fanout token 2)\" -H 'content-type: application/json' -H 'Idempotency-Key: hello-1' -d '{\"body\": \"hello\"}'"
	@echo "  curl -s 'localhost:$${FANOUT_READ_API_PORT:-8080}/v1/feed?limit=20' -H \"Authorization: Bearer \$$(.venv/bin/fanout token 1)\""

# The stack, then the pipeline in the foreground: migrate, worker, read API, ingest API (fanout up).
run:
	@$(CHECK) stack "make run"
	@$(MAKE) --no-print-directory venv
	$(FANOUT) stack up
	$(FANOUT) up

# Leaves the stack as it found it: stopped after the tests only if it was not fully up before.
# pytest's exit code is the recipe's, so 5 (no tests collected) fails the build too.
test:
	@$(CHECK) test "make test"
	@$(MAKE) --no-print-directory venv
	@was_up=0; \
	if $(FANOUT) stack status >/dev/null 2>&1; then was_up=1; fi; \
	if [ "$$was_up" = 0 ]; then trap '$(FANOUT) stack down' EXIT; fi; \
	$(FANOUT) stack up; \
	rc=0; $(PYTEST) -ra $(PYTEST_ARGS) $(TESTS) || rc=$$?; \
	if [ "$$rc" = 5 ]; then echo "make test: pytest collected no tests (exit 5); that is a failure" >&2; fi; \
	if [ "$$was_up" = 1 ]; then echo "make test: the stack was up before, so it stays up"; fi; \
	exit "$$rc"

# Fault tests start stacks of their own (never the one `make test` uses) and kill their servers: first on
# one node, then on a 3-broker, 3-node cluster (FAULT_NODES="1" or "3" for one pass; PYTEST_ARGS="-k ...").
test-faults:
	@$(CHECK) stack "make test-faults"
	@$(MAKE) --no-print-directory venv
	@for n in $(FAULT_NODES); do \
	  only_cluster=; if [ "$$n" -lt 3 ]; then only_cluster=--ignore=tests/faults/test_cluster.py; fi; \
	  echo "== fault tests on $$n node(s)"; \
	  FANOUT_FAULTS_NODES=$$n $(PYTEST) -ra $(PYTEST_ARGS) tests/faults $$only_cluster || exit $$?; \
	done

# docker-compose.yml for real (a running dockerd is needed; .ci/run starts one): images built where they
# cannot be pulled, a compose project of its own per profile, through ports on 127.0.0.1, taken down with
# its volumes after. DOCKER_NODES="1" or "3" for one profile.
test-docker:
	@$(CHECK) docker "make test-docker"
	@$(MAKE) --no-print-directory venv
	@for n in $(DOCKER_NODES); do \
	  echo "== compose tests on $$n node(s)"; \
	  FANOUT_DOCKER_NODES=$$n $(PYTEST) -ra $(PYTEST_ARGS) tests/docker || exit $$?; \
	done

# The end-to-end oracle tests on a 3-broker, 3-node cluster of their own (state in .fanout/cluster-state;
# it listens on 127.0.0.1-3 with the usual ports, so the single-node stack must not be running).
test-cluster: $(STAMP)
	FANOUT_NODES=3 FANOUT_STATE_DIR=.fanout/cluster-state $(MAKE) test \
	  TESTS="tests/e2e/test_pipeline.py tests/e2e/test_node_leases.py tests/e2e/test_graph_changes.py"

down: $(STAMP)
	$(FANOUT) stack down

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis build dist *.egg-info
	find . -path ./.git -prune -o -path ./.fanout -prune -o -type d -name __pycache__ -prune -exec rm -rf {} +
