# Okapi: two commands for a newcomer.
#   make run    install, migrate, load sample DICOM, create demo users, print the logins, run the platform
#   make test   install and run the whole test suite on PostgreSQL and Redis (started if installed but down)

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8000

# Test services (the machine's own PostgreSQL and Redis, trust auth on loopback)
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/okapi
TEST_REDIS_URL    ?= redis://127.0.0.1:6379/14

.PHONY: install run test lint services clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py demo_setup
	@echo ""
	@echo "Okapi: open http://127.0.0.1:$(PORT)/ and log in with a demo login above."
	PORT=$(PORT) $(BIN)/okapi run

services:
	@bash platform/dev/ensure-services.sh

test: install services
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) OKAPI_DATA_DIR=$$(mktemp -d /tmp/okapi-test.XXXXXX) \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) data
