# Two commands for a fresh machine with Python 3.11: `make run` and `make test`.
PYTHON ?= python3.11
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: run test setup install install-dev migrate demo clean compilemessages messages \
	check audit requirements

# Every package, pip included, comes from requirements*.txt, pinned with its hashes (compiled
# from the .in files by `make requirements`): pip refuses any download whose hash differs.
$(VENV)/bin/activate:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: requirements.txt | $(VENV)/bin/activate
	$(PIP) install --quiet --require-hashes -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements.txt requirements-dev.txt | $(VENV)/bin/activate
	$(PIP) install --quiet --require-hashes -r requirements-dev.txt
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

# The compiled catalogues (.mo) are committed, so a machine without GNU gettext serves those;
# with msgfmt on PATH set-up rebuilds any whose .po is newer.
compilemessages: install
	@if command -v msgfmt >/dev/null 2>&1; then \
		$(PY) manage.py compilemessages --ignore='.*' --ignore=var --ignore='$(VENV)'; \
	else \
		echo "msgfmt (GNU gettext) not found: using the committed .mo files"; \
	fi

## After changing buyer-facing text (needs GNU gettext): update every catalogue, then
## translate the new entries in the .po files and run `make compilemessages`; commit both.
messages: install
	$(PY) manage.py makemessages --locale ru --no-obsolete --ignore=var --ignore='$(VENV)'
	$(MAKE) compilemessages

setup: install compilemessages
	mkdir -p var
	$(PY) manage.py migrate --no-input
	$(PY) manage.py createcachetable
	$(PY) manage.py demo_setup

## Set up and run the demo shop: web on :8000 (gunicorn with gunicorn.conf.py, as in production),
## django-q2 cluster, sandbox supplier on :8001. Refuses under DJANGO_ENV=production.
run: setup
	bin/run-demo

## Set up and run the whole test suite. It checks the committed .mo files against the .po
## files instead of rebuilding them, so a .po change without its .mo fails here and in CI.
test: install-dev
	mkdir -p var
	$(PY) -m pytest

## The checks CI runs on every commit: ruff, bandit, mypy (settings in pyproject.toml), no
## missing migration, and Django's deploy checks in production mode. Runs them all, then fails
## if any failed.
check: install-dev
	VENV=$(VENV) .ci/checks

## Known vulnerabilities in the pinned set (pip-audit); says plainly when its data is out of reach.
audit: install-dev
	VENV=$(VENV) .ci/audit

## After editing requirements.in or requirements-dev.in: compile both, with hashes.
requirements: install-dev
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links -o requirements.txt requirements.in
	$(VENV)/bin/pip-compile --quiet --generate-hashes --allow-unsafe --strip-extras \
		--no-emit-index-url --no-emit-find-links -o requirements-dev.txt requirements-dev.in

clean:
	rm -rf $(VENV) var
