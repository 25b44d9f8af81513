# seglib: customer segmentation with self-organizing maps.
# `make run` and `make test` are the only two commands a new machine needs.

PYTHON   ?= python3
VENV     ?= .venv
PY       := $(VENV)/bin/python
SEGLIB   := $(VENV)/bin/seglib
DATA     ?= data/raw/transactions.csv
CUSTOMERS ?= 3000
SEED     ?= 42
# the pipeline's notebooks; notebooks/app.ipynb (the dashboard of `seglib app`) is deliberately left
# out of nbval and `make notebooks`: tests/test_app.py executes it, tests/ui drives it in a browser
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]-*.ipynb))

.DEFAULT_GOAL := help
.PHONY: help run test test-ui app lint notebooks data bench clean

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-12s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# --- environment ------------------------------------------------------------------
# One stamp per set of extras: re-installs only when pyproject.toml changes.
$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.installed-%: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e ".[$(subst +,$(comma),$*)]"
	@touch $@

comma := ,
RUN_ENV  := $(VENV)/.installed-notebooks
TEST_ENV := $(VENV)/.installed-notebooks+test+dask
UI_ENV   := $(VENV)/.installed-notebooks+test+dask+ui+app
APP_ENV  := $(VENV)/.installed-notebooks+app

# --- the two commands -------------------------------------------------------------
run: $(RUN_ENV) $(DATA) ## Install into .venv, then run the whole notebook pipeline on the default data
	$(SEGLIB) run --data $(DATA)

test: $(TEST_ENV) ## Install into .venv, then run ruff, the library tests and the notebooks (nbval)
	$(PY) -m ruff check seglib tests benchmarks notebooks
	$(PY) -m nbstripout --verify --keep-output --keep-count $(NOTEBOOKS) notebooks/app.ipynb
	$(PY) -m pytest -q -n 2 --dist loadfile tests
	$(PY) -m pytest -q -p no:cacheprovider --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg $(NOTEBOOKS)

# --- more -------------------------------------------------------------------------
test-ui: $(UI_ENV) ## Drive notebook 03 in JupyterLab and the app in Voila with headless Chromium
	@command -v chromium >/dev/null 2>&1 || (apt-get install -y chromium >/dev/null 2>&1 \
		|| (apt-get update >/dev/null 2>&1 && apt-get install -y chromium >/dev/null 2>&1)) \
		|| echo "chromium could not be installed: the UI tests will be skipped"
	$(PY) -m pytest -q -m ui -rs tests/ui

app: $(APP_ENV) ## Serve the explorer for people who do not run notebooks (seglib app; APP_ARGS="--port 8866 ...")
	$(SEGLIB) app $(APP_ARGS)

lint: $(TEST_ENV) ## ruff over the package, tests, benchmarks and notebooks; nbstripout check
	$(PY) -m ruff check seglib tests benchmarks notebooks
	$(PY) -m nbstripout --verify --keep-output --keep-count $(NOTEBOOKS) notebooks/app.ipynb

data: $(DATA) ## Generate the default synthetic data set if missing

$(DATA): | $(RUN_ENV)
	$(SEGLIB) make-data --out $(DATA) --customers $(CUSTOMERS) --seed $(SEED)

notebooks: $(TEST_ENV) ## Re-execute the committed notebooks in place with their defaults (after changing seglib)
	@for nb in $(NOTEBOOKS); do \
		echo "executing $$nb"; \
		$(VENV)/bin/papermill --no-progress-bar -k python3 --cwd notebooks $$nb $$nb || exit 1; \
	done
	$(PY) -m nbstripout --keep-output --keep-count \
		--extra-keys "metadata.papermill cell.metadata.papermill cell.metadata.execution" $(NOTEBOOKS)

bench: $(TEST_ENV) ## Run the benchmarks (by hand; slow)
	$(PY) benchmarks/bench_som.py
	$(PY) benchmarks/bench_pipeline.py

clean: ## Remove generated data, reports and caches (keeps .venv)
	rm -rf data/interim/* data/processed/* reports/runs reports/latest reports/figures reports/ui
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache .hypothesis

distclean: clean ## Also remove the virtual environment and the default data
	rm -rf $(VENV) $(DATA) $(DATA:.csv=_truth.csv)
