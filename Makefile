# Everything runs from .venv, which `make install` builds from pyproject.toml.
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-stamp

.DEFAULT_GOAL := help
.PHONY: help install test test-fast lint demo bench migrate image clean

help: ## list the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-22s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv and install the project with its dev tools

$(STAMP): pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	@touch $@

test: $(STAMP) lint ## lint, then run the test suite on an embedded PostgreSQL (or TEST_DATABASE_URL)
	$(PY) -m pytest

test-fast: $(STAMP) ## only the tests that need no PostgreSQL (pytest -m "not pg"): seconds, no server started
	$(PY) -m pytest -m "not pg"

lint: $(STAMP) ## ruff, and the layers of backend/ (scripts/check_layers.py: no import up a layer, no cycle)
	$(VENV)/bin/ruff check backend tests benchmarks localdev scripts
	$(PY) scripts/check_layers.py backend

demo: $(STAMP) ## reproduce the staging bug and fix it, end to end, on an embedded PostgreSQL
	$(PY) -m localdev.demo

bench: $(STAMP) ## benchmarks, printed as ratios against the stock tools
	$(PY) -m benchmarks

migrate: $(STAMP) ## apply backend/app/migrations to DATABASE_URL
	$(PY) -m app.migrate

IMAGE ?= db-sync:latest
image: ## build the Fargate task's image from deploy/Dockerfile (IMAGE=db-sync:latest); needs a running Docker
	@if ! command -v docker >/dev/null 2>&1; then \
	  echo "make image: docker is not installed here, so no image was built; build deploy/Dockerfile where Docker runs (docs/deploy.md)" >&2; exit 1; \
	elif ! docker info >/dev/null 2>&1; then \
	  echo "make image: docker is installed but its daemon does not answer (docker info failed), so no image was built" >&2; exit 1; \
	fi
	docker build -f deploy/Dockerfile -t $(IMAGE) .

clean: ## remove .venv and caches
	rm -rf $(VENV) .pytest_cache .ruff_cache

# admin-route:begin
.PHONY: teardown-admin-route
teardown-admin-route: ## delete the temporary admin route and this tooling (once the sync is verified)
	python3 scripts/teardown_admin_route.py
# admin-route:end
