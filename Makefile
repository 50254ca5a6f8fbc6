# Belofte: `make run` sets up and runs the product; `make test` sets up and runs every check.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV      := .venv
RASA_VENV := .venv-rasa
TEST_HOME := var/test
RASA      := $(RASA_VENV)/bin/rasa
export RASA_TELEMETRY_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2
export SQLALCHEMY_SILENCE_UBER_WARNING := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help setup prism browser run test lint rasa-validate rasa-train-test rasa-test pytest lock clean

help:
	@echo "make run    set up everything and run Belofte on its embedded defaults"
	@echo "make test   set up everything and run every check"

## ---- set-up (idempotent: each venv is rebuilt only when its lock file changes) -------------
$(RASA_VENV)/.installed: requirements/rasa.lock
	@echo "==> Installing Rasa 3.6 (Python 3.10) into $(RASA_VENV): a few minutes the first time"
	@py=$$(scripts/find-python.sh 3.10 RASA_PYTHON) && \
	  { [ -x $(RASA_VENV)/bin/python ] || "$$py" -m venv $(RASA_VENV); }
	@$(RASA_VENV)/bin/python -m pip install -q --upgrade "pip<26" "setuptools<70" wheel
	@$(RASA_VENV)/bin/python -m pip install -q -r requirements/rasa.lock
	@touch $@

$(VENV)/.installed: requirements/service.lock pyproject.toml
	@echo "==> Installing the Belofte service (Python 3.11) into $(VENV)"
	@py=$$(scripts/find-python.sh 3.11 BELOFTE_PYTHON) && \
	  { [ -x $(VENV)/bin/python ] || "$$py" -m venv $(VENV); }
	@$(VENV)/bin/python -m pip install -q --upgrade "pip<26"
	@$(VENV)/bin/python -m pip install -q -r requirements/service.lock
	@$(VENV)/bin/python -m pip install -q --no-deps -e .
	@touch $@

setup: $(RASA_VENV)/.installed $(VENV)/.installed

# Stoplight Prism (npm), the mock Twilio REST API of the channel tests, pinned by its lock file.
# Only the tests need it, so `make run` does not install it. Without npm it is skipped locally
# (those tests then skip); CI must have it.
PRISM_DIR := tools/prism
$(PRISM_DIR)/node_modules/.installed: $(PRISM_DIR)/package.json $(PRISM_DIR)/package-lock.json
	@if command -v npm >/dev/null 2>&1; then \
	  echo "==> Installing Stoplight Prism (mock Twilio API for the tests) into $(PRISM_DIR)"; \
	  npm ci --prefix $(PRISM_DIR) --no-audit --no-fund --loglevel=error && touch $@; \
	elif [ -n "$$CI" ]; then \
	  echo "npm is needed in CI: the Twilio tests run against Stoplight Prism" >&2; exit 1; \
	else \
	  echo "==> npm not found: the Twilio tests against Prism will be skipped"; \
	fi

prism: $(PRISM_DIR)/node_modules/.installed

# Debian's Chromium, which Playwright drives in the browser tests (tests/browser): Playwright's
# own browser download needs the internet. Only the tests need it, so `make run` does not install
# it. apt-get runs as root directly, else through sudo. Without it the browser tests skip locally;
# CI must have it.
# The colour emoji font only makes the screenshots show the console's 👍/👎 (agents' own
# desktops have one); its absence fails nothing.
CHROMIUM := /usr/bin/chromium
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
browser:
	@if [ ! -x $(CHROMIUM) ] || [ ! -e $(EMOJI_FONT) ]; then \
	  echo "==> Installing Debian's Chromium and emoji font for the browser tests (apt-get)"; \
	  if [ "$$(id -u)" = 0 ]; then as_root=""; else as_root="sudo"; fi; \
	  if command -v apt-get >/dev/null 2>&1 && \
	     { [ -z "$$as_root" ] || command -v sudo >/dev/null 2>&1; }; then \
	    $$as_root env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	    $$as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
	      --no-install-recommends chromium fonts-noto-color-emoji \
	      || echo "apt-get could not install chromium and fonts-noto-color-emoji" >&2; \
	  else \
	    echo "apt-get (as root or with sudo) is not available" >&2; \
	  fi; \
	  if [ ! -x $(CHROMIUM) ]; then \
	    if [ -n "$$CI" ]; then \
	      echo "$(CHROMIUM) is needed in CI: the browser tests drive Debian's Chromium" >&2; \
	      exit 1; \
	    fi; \
	    echo "==> No $(CHROMIUM): the browser tests will be skipped"; \
	  fi; \
	fi

## ---- run ------------------------------------------------------------------------------------
run: setup
	@$(VENV)/bin/belofte run

## ---- test -----------------------------------------------------------------------------------
test: setup prism browser lint rasa-validate rasa-test pytest
	@echo "==> All checks passed"

lint:
	@echo "==> ruff and mypy"
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(VENV)/bin/mypy

rasa-validate:
	@echo "==> rasa data validate --fail-on-warnings"
	@$(RASA) data validate --fail-on-warnings

rasa-train-test:
	@echo "==> Training the Rasa model for the tests (skipped when nothing changed)"
	@BELOFTE_HOME=$(TEST_HOME) $(VENV)/bin/belofte train

rasa-test: rasa-train-test
	@echo "==> rasa test on the Dutch and English test stories"
	@$(RASA) test core --stories tests/ --model $(TEST_HOME)/models/belofte.tar.gz \
	  --fail-on-prediction-errors --out $(TEST_HOME)/rasa-results
	@if [ -d tests/rasa ]; then echo "==> Rasa custom component tests (Python 3.10)"; \
	  $(RASA_VENV)/bin/python -m pytest -q -p no:cacheprovider --confcutdir=tests/rasa tests/rasa; fi

pytest: prism browser rasa-train-test
	@echo "==> pytest (SQLite and PostgreSQL storage, actions, API, integration with Rasa, browser)"
	@BELOFTE_TEST_HOME=$(TEST_HOME) $(VENV)/bin/pytest -q

## ---- maintenance ----------------------------------------------------------------------------
lock:
	@echo "==> Re-resolving requirements/*.in into requirements/*.lock"
	@rm -rf /tmp/belofte-lock-rasa /tmp/belofte-lock-svc
	@$$(scripts/find-python.sh 3.10 RASA_PYTHON) -m venv /tmp/belofte-lock-rasa
	@/tmp/belofte-lock-rasa/bin/pip install -q -r requirements/rasa.in
	@/tmp/belofte-lock-rasa/bin/pip freeze --exclude-editable > requirements/rasa.lock
	@$$(scripts/find-python.sh 3.11 BELOFTE_PYTHON) -m venv /tmp/belofte-lock-svc
	@/tmp/belofte-lock-svc/bin/pip install -q -e '.[dev]'
	@/tmp/belofte-lock-svc/bin/pip freeze --exclude-editable | grep -v '^belofte' > requirements/service.lock

clean:
	rm -rf $(VENV) $(RASA_VENV) var $(PRISM_DIR)/node_modules
