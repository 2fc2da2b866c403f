# The two commands of the README:  `make book`  and  `make test`.
# Each creates .venv if missing, installs torch==2.13.0 (the CPU wheel) and then
# this package with its extras, and does its job. Re-running is fast: the install
# step runs again only when pyproject.toml changes.

PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.grokbook-installed

.PHONY: setup book test check-book benchmark clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e ".[book,test]"
	touch $(STAMP)

setup: $(STAMP)

book: setup
	$(VENV)/bin/grokbook build

test: setup
	$(PY) -m pytest

# Open every built page in headless Chromium (Debian's package; installed if missing,
# which needs root) and fail on broken links or images, error outputs, empty figures.
check-book: setup
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)
	$(PY) tests/browser/check_book.py _build/html

benchmark: setup
	$(PY) benchmarks/all.py

clean:
	rm -rf _build
