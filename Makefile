# Two commands: `make demo` and `make test` (see README). Both create .venv and install what they need.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?= -n 2 -q

.PHONY: demo test fuzz bench lint clean deps

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

$(VENV)/.installed-test: $(BIN)/activate pyproject.toml
	$(BIN)/pip install -q -e '.[test]'
	touch $@ $(VENV)/.installed

demo: $(VENV)/.installed
	$(BIN)/solarbridge demo

deps:
	scripts/install-test-deps

# pytest exits 5 when it collected no tests: that is not a failure here
test: $(VENV)/.installed-test deps
	$(BIN)/pytest $(PYTEST_ARGS); rc=$$?; if [ $$rc -eq 5 ]; then echo "no tests collected"; exit 0; fi; exit $$rc

# every hypothesis test with 20,000 examples (the profile in tests/conftest.py); takes a while
fuzz: $(VENV)/.installed-test deps
	SOLARBRIDGE_FUZZ=1 $(BIN)/pytest -q -n 2 --timeout=3600 tests

bench: $(VENV)/.installed-test deps
	$(BIN)/python bench/run_all.py

lint: $(VENV)/.installed-test
	$(BIN)/ruff check src tests bench

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .benchmarks
