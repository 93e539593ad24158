# The README's commands call these targets. The Makefile builds and fills its own virtual environment.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch comes first and pinned: this release lies on the local disk, a range would download gigabytes.
TORCH := torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= demo-output

.PHONY: venv demo test lint typecheck unit library-names crds chart images bench clean

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -c constraints.txt -e '.[train,operator,dev]'
	@touch $@

demo: $(STAMP)
	@mkdir -p $(DEMO_OUT)
	$(BIN)/dreem train --config examples/demo/train.yaml \
		--set dataset.train_dataset.dir.path=$(CURDIR)/examples/demo/data \
		--set dataset.val_dataset.dir.path=$(CURDIR)/examples/demo/data \
		--set checkpointing.dirpath=$(CURDIR)/$(DEMO_OUT)/models \
		--set logging.save_dir=$(CURDIR)/$(DEMO_OUT)/logs
	$(BIN)/dreem eval $(CURDIR)/examples/demo/data --checkpoint $(CURDIR)/$(DEMO_OUT)/models/last.ckpt \
		--config examples/demo/train.yaml --output $(CURDIR)/$(DEMO_OUT)/eval

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP)
	$(BIN)/pytest

test: lint typecheck unit

# Rewrites the names the config schema checks against (optimizers, transforms, Trainer kwargs...).
library-names: $(STAMP)
	$(BIN)/python -m dreem_trainer.introspect

# Figures, not tests. Builds the reference implementation beside us first when ../shared/peer is there.
# The CRD is generated from the API models; a test fails when crds/ drifts from them.
crds: $(STAMP)
	$(BIN)/python -m dreem_operator.crd

bench: $(STAMP)
	@if [ -x ../shared/peer/setup.sh ]; then PEER_HOME=$(CURDIR)/.peer ../shared/peer/setup.sh; fi
	$(BIN)/python -m bench.train_throughput
	$(BIN)/python -m bench.track_throughput
	$(BIN)/python -m bench.storage
	$(BIN)/python -m bench.operator

clean:
	rm -rf $(VENV) $(DEMO_OUT) .mypy_cache .ruff_cache .pytest_cache
