# Shortcuts for the scripts and the virtual environment they manage (.venv).
#   make run                 VTP with embedded defaults on http://127.0.0.1:8080
#   make test ARGS="-x -k auth"   the suite, as CI runs it (arguments go to pytest)

SHELL := /bin/bash
VENV ?= .venv
BIN := $(VENV)/bin
ARGS ?=
# Docker Compose v2 (`docker compose`) when present, else the v1 `docker-compose`.
COMPOSE ?= $(shell docker compose version >/dev/null 2>&1 && echo "docker compose" || echo docker-compose)

.PHONY: help run test migrate check fmt lint venv docker-up docker-down docker-logs clean

help:
	@echo "make run          run VTP (embedded PostgreSQL/Redis/object store unless configured)"
	@echo "make test         lint, type-check and run the test suite (ARGS=... for pytest)"
	@echo "make migrate      apply pending database migrations"
	@echo "make check        report each dependency's health"
	@echo "make fmt          format the code and apply safe lint fixes"
	@echo "make lint         ruff check, ruff format --check, mypy, lint-imports"
	@echo "make docker-up    build and start the docker-compose stack (creates .env)"
	@echo "make docker-down  stop the stack (volumes are kept)"

run:
	./scripts/run.sh

test:
	./scripts/test.sh $(ARGS)

# The venv with the test extra (ruff, mypy, pytest); created on first use.
venv:
	@bash -c 'source scripts/lib.sh && ensure_venv test'

migrate: venv
	$(BIN)/vtp migrate

check: venv
	$(BIN)/vtp check

fmt: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

.env:
	cp .env.example .env
	@echo "created .env from .env.example: edit the passwords before sharing the stack"

docker-up: .env
	$(COMPOSE) up -d --build

docker-down:
	$(COMPOSE) down

docker-logs:
	$(COMPOSE) logs -f --tail=100

clean:
	rm -rf .pytest_cache .mypy_cache .ruff_cache build dist *.egg-info
