# The two commands of README.md:
#   make run    install what is needed, then run the main job (auditpipe run)
#   make test   install what is needed, then lint, type-check and run every test
# Everything installs into .venv from PyPI (pinned by constraints.txt); the Kafka broker's
# jars come from Maven Central on the first `stack up`.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: run test lint unit integration bench docs reference install clean sanitize

run: $(STAMP)
	$(BIN)/auditpipe run $(ARGS)

# The unit tests on every core (pytest-xdist), then the integration tests one at a time:
# they share the services and several of them measure time.
test: lint docs
	$(BIN)/python -m pytest -m "not integration" -n auto $(PYTEST_ARGS)
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check pipeline tests benchmarks
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/python -m pytest -m "not integration" $(PYTEST_ARGS)

integration: $(STAMP)
	$(BIN)/python -m pytest -m integration $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/e2e.py $(ARGS)

# The manual, in strict mode (a broken link or anchor, a page out of the nav: an error);
# tests/test_docs.py fails on a stale configuration reference.
docs: $(STAMP)
	$(BIN)/mkdocs build --strict --quiet

# The C extension under AddressSanitizer and UndefinedBehaviorSanitizer (clang): the
# native tests, then a coverage-guided fuzzer (atheris) on each parser of untrusted bytes
# for FUZZ_SECONDS each (tests/fuzz/sanitized.sh).
FUZZ_SECONDS ?= 30
sanitize: $(STAMP)
	bash tests/fuzz/sanitized.sh $(FUZZ_SECONDS)

# Regenerate the configuration reference in docs/configuration.md after a config change.
reference: $(STAMP)
	$(BIN)/python -m tests.test_docs

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt setup.py pipeline/_native.c
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] in ((3, 11), (3, 12)), "auditpipe needs Python 3.11 or 3.12"'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(STAMP)

clean:
	rm -rf $(VENV) .auditpipe .pytest_cache .mypy_cache .ruff_cache
