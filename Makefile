# The README's two commands: `make demo` (main job) and `make test` (whole test suite).
# Both create .venv and install everything on first use.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Pinned for reproducible CI (a local CPU wheel on the project's machines); the package
# itself asks only torch>=2.1. Extra pip arguments may follow, e.g. --index-url ...
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=
# napari's recommended Qt6 binding; `make test QT_API=pyqt5` runs the suite under PyQt5
# once `.venv/bin/pip install -e ".[pyqt5]"` has added it
QT_API ?= pyqt6
export QT_API

.PHONY: setup demo test lint docs system-deps clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[pyqt6,test,docs]"
	touch $@

setup: $(VENV)/.installed

system-deps:
	bash scripts/install-system-deps.sh

demo: setup
	$(PY) -m napari_inceptseg demo

# ruff's lint rules and formatting (pyproject.toml), as the pre-commit hook applies them;
# without ruff's cache, which keeps old verdicts on files whose imports a rename elsewhere
# reclassifies (a clean clone has no cache)
lint: setup
	$(PY) -m ruff check --no-cache .
	$(PY) -m ruff format --no-cache --check .

# the documentation site, API reference included; any warning fails the build
docs: setup
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir build/site

test: setup system-deps lint docs
	xvfb-run -a -s "-screen 0 1280x1024x24" $(PY) -m pytest $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) build dist .pytest_cache inceptseg-demo
