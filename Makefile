# `make demo` and `make test` create .venv and install repinv into it when needed, then run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo study test test-quick check install clean

$(INSTALLED): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip "setuptools>=77" wheel
	# Two package roots (repinv/ and plugins/, recipes/ mapped into repinv.recipes) make setuptools install an import
	# hook rather than a plain path, and it warns about folders named like the packages: silence exactly that.
	PYTHONWARNINGS="ignore:Editable installation" $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(INSTALLED)

install: $(INSTALLED)

# Train HOG on scikit-image's bundled photos for 4 minutes, score held-out photos, and invert them at full size.
demo: $(INSTALLED)
	rm -rf runs/demo
	$(BIN)/repinv train --recipe demo --out runs/demo
	$(BIN)/repinv evaluate --checkpoint runs/demo --data builtin:test --grid runs/demo/held-out.png
	$(BIN)/repinv invert --checkpoint runs/demo builtin:test --out runs/demo/full-size

# What a trained network keeps (docs/findings.md): EfficientNet-Lite0's layers from ../shared/models, trained against
# random weights, on the shared Tiny ImageNet shards; about 100 minutes on 2 cores, resumable (run it again).
study: $(INSTALLED)
	$(BIN)/python bench/layer_study.py --out runs/study-lite0

# The whole suite, after the linter and the type checker (strict, on repinv/ and plugins/).
test: check
	$(BIN)/python -m pytest

check: $(INSTALLED)
	$(BIN)/ruff check repinv plugins tests bench
	$(BIN)/mypy

test-quick: $(INSTALLED)
	$(BIN)/python -m pytest -m "not slow"

clean:
	rm -rf $(VENV) runs build *.egg-info
