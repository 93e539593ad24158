# syntax=docker/dockerfile:1.7
# The operator image: kopf + the kubernetes client + the config schema. No torch.
# Build from the repository root: docker build .   (or `make images`)
FROM python:3.11.11-slim-bookworm AS build
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY trainer_image/dreem_trainer trainer_image/dreem_trainer
COPY operator/dreem_operator operator/dreem_operator
RUN python -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -c constraints.txt '.[operator]'

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="dreem-operator" \
      org.opencontainers.image.description="Reconciles DreemTrainingJob resources into gang-scheduled training pods" \
      org.opencontainers.image.source="https://github.com/talmolab/dreem-operator" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.base.name="docker.io/library/python:3.11.11-slim-bookworm"
COPY --from=build /opt/venv /opt/venv
# The chart mounts the root filesystem read-only: nothing here writes outside /tmp.
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
USER 65532:65532
ENTRYPOINT ["dreem-operator"]
