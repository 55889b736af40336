# Two commands for a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test setup install install-dev migrate demo clean

$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(VENV)/.installed: requirements.txt | $(VENV)/bin/activate
	$(PIP) install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VENV)/bin/activate
	$(PIP) install --quiet -r requirements-dev.txt
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

setup: install
	mkdir -p var
	$(PY) manage.py migrate --no-input
	$(PY) manage.py demo_setup

## Set up and run the shop: web on :8000, django-q2 cluster, sandbox supplier on :8001.
run: setup
	bin/run-demo

## Set up and run the whole test suite.
test: install-dev
	mkdir -p var
	$(PY) -m pytest

clean:
	rm -rf $(VENV) var
