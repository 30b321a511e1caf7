# Two commands on a fresh machine: `make demo` and `make test`. Each sets up what it needs.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
EXAMPLES ?= stockroom slugkit timespan confparse invoicer
DEMO_DIR ?= /tmp/greenpatch-demo

.PHONY: setup system docker-engine demo test lint

$(BIN)/agent: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# torch is pinned in pyproject.toml (CPU wheel); installing it first keeps pip from resolving anew.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[test]"
	touch $(BIN)/agent

setup: system $(BIN)/agent

# bubblewrap, the Docker engine and Chromium come from the distribution; only root can install them.
system:
	@if [ "$$(id -u)" = 0 ] && ! command -v bwrap >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq bubblewrap docker.io >/dev/null; fi
	@if [ "$$(id -u)" = 0 ] && ! command -v dockerd >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq docker.io >/dev/null; fi
	@if [ "$$(id -u)" = 0 ] && ! command -v chromium >/dev/null; then \
		apt-get update -qq && apt-get install -y -qq chromium >/dev/null; fi

docker-engine: system
	@if command -v dockerd >/dev/null && ! docker info >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		nohup dockerd --storage-driver=overlay2 --iptables=false --bridge=none \
			>/tmp/greenpatch-dockerd.log 2>&1 & \
		for i in $$(seq 60); do docker info >/dev/null 2>&1 && break; sleep 1; done; fi
	@docker info >/dev/null 2>&1 && echo "docker engine: up" || echo "docker engine: unavailable"

# Each example is copied to a fresh git repo and fixed there; the fix lands on a new branch.
demo: setup
	rm -rf $(DEMO_DIR)
	@for name in $(EXAMPLES); do \
		$(BIN)/python examples/prepare.py $$name $(DEMO_DIR)/$$name >/dev/null || exit 2; \
		echo "== agent fix examples/tickets/$$name.md --repo $(DEMO_DIR)/$$name"; \
		$(BIN)/agent fix examples/tickets/$$name.md --repo $(DEMO_DIR)/$$name --budget 120 || exit $$?; \
	done

test: setup docker-engine
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: $(BIN)/agent
	$(BIN)/ruff check .
