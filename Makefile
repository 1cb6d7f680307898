# Two commands do everything: `make lab` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: lab test lock bench notebooks clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): $(BIN)/python binder/requirements.txt pyproject.toml
	$(BIN)/python -m pip install --quiet -r binder/requirements.txt
	touch $(STAMP)

# JupyterLab refuses to start as root unless told to (containers often run as root).
lab: $(STAMP)
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) notebooks/00_index.ipynb

# The browser tests drive Debian's Chromium; without it they cannot run, and we say so loudly.
CHROMIUM := /usr/bin/chromium
NO_BROWSER := $(if $(wildcard $(CHROMIUM)),,--ignore=tests/browser)
NO_BROWSER_NOTICE := echo "!!!!!! BROWSER TESTS NOT RUN: $(CHROMIUM) is missing (apt-get install chromium) !!!!!!"

test: $(STAMP)
	$(BIN)/python -m mypy
	@$(if $(NO_BROWSER),$(NO_BROWSER_NOTICE))
	$(BIN)/python -m pytest -p no:cacheprovider --nbval --nbval-sanitize-with notebooks/sanitize.cfg $(NO_BROWSER) $(PYTEST_ARGS)
	@$(if $(NO_BROWSER),$(NO_BROWSER_NOTICE))

# Re-run every notebook headlessly, each on a fresh store, and save its outputs in place.
notebooks: $(STAMP)
	for notebook in notebooks/*.ipynb; do \
		home=$$(mktemp -d); \
		MLOPS_NB_HOME=$$home $(BIN)/jupyter nbconvert --to notebook --execute --inplace \
			--ExecutePreprocessor.record_timing=False "$$notebook" || exit 1; \
		rm -rf "$$home"; \
	done

bench: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

# Re-resolve the newest versions allowed by pyproject.toml and pin them.
lock:
	rm -rf /tmp/mlops_nb_lock && $(PYTHON) -m venv /tmp/mlops_nb_lock
	/tmp/mlops_nb_lock/bin/pip install --quiet --upgrade pip
	/tmp/mlops_nb_lock/bin/pip install --quiet ".[lab,test]"
	{ head -2 binder/requirements.txt; /tmp/mlops_nb_lock/bin/pip freeze --exclude mlops_nb; echo "-e ."; } > binder/requirements.new
	mv binder/requirements.new binder/requirements.txt

clean:
	rm -rf $(VENV) .mlops_nb
