# Okapi: two commands for a newcomer.
#   make run    install, migrate, load sample DICOM, create demo users, print the logins, run the platform
#   make test   install and run the whole test suite on PostgreSQL and Redis (started if installed but down)
#
# `install` also fetches the OHIF viewer from npm (@ohif/app, pinned in frontend/ohif/package-lock.json) and
# builds the folder Okapi serves under /viewer/ (frontend/ohif/build.py); `test` also makes sure Debian's
# Chromium is there for the browser tests (installed with apt-get when missing and run as root).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PORT   ?= 8000

# Test services (the machine's own PostgreSQL and Redis, trust auth on loopback)
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/okapi
TEST_REDIS_URL    ?= redis://127.0.0.1:6379/14

# The OHIF viewer: npm package -> frontend/ohif/site (both ignored by git)
OHIF   := frontend/ohif
VIEWER := $(OHIF)/site/okapi-viewer.json
CHROMIUM := /usr/bin/chromium

.PHONY: install run test lint services browser clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

$(VIEWER): $(OHIF)/package.json $(OHIF)/package-lock.json $(OHIF)/build.py
	@command -v npm >/dev/null || { echo "npm (Node.js) is needed to fetch the OHIF viewer: apt-get install -y npm" >&2; exit 1; }
	cd $(OHIF) && npm ci --no-audit --no-fund --loglevel=error
	$(PYTHON) $(OHIF)/build.py
	rm -rf $(OHIF)/node_modules

install: $(STAMP) $(VIEWER)

run: install
	$(BIN)/python manage.py migrate --noinput
	$(BIN)/python manage.py collectstatic --noinput --verbosity 0
	$(BIN)/python manage.py demo_setup
	$(BIN)/python manage.py demo_campaign
	@echo ""
	@echo "Okapi: open http://127.0.0.1:$(PORT)/ and log in with a demo login above."
	PORT=$(PORT) $(BIN)/okapi run

services:
	@bash platform/dev/ensure-services.sh

browser:
	@test -x $(CHROMIUM) || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing Debian's chromium for the browser tests"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "$(CHROMIUM) is missing: the browser tests need it (apt-get install -y chromium)" >&2; fi; }

test: install services browser
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) OKAPI_DATA_DIR=$$(mktemp -d /tmp/okapi-test.XXXXXX) \
		$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check .

clean:
	rm -rf $(VENV) data $(OHIF)/node_modules $(OHIF)/site $(OHIF)/site.tmp
