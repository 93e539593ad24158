# syntax=docker/dockerfile:1.7
# The operator image: kopf + the kubernetes client + the config schema. No torch.
# Build from the repository root: `make images` (docker build . where a Docker engine runs, else buildah on a
# Debian base passed as BASE). Any glibc image with Python 3.11 and its venv module serves as BASE.
ARG BASE=python:3.11.11-slim-bookworm

# One stage, as the trainer's: pip and wheels only, nothing is compiled, and the sources leave with the install.
FROM ${BASE}
ARG BASE
# A local package index, wheel folder or CA bundle, in pip's own variables; empty: the public index alone.
ARG PIP_EXTRA_INDEX_URL=""
ARG PIP_FIND_LINKS=""
ARG PIP_CERT=""
LABEL org.opencontainers.image.title="dreem-operator" \
      org.opencontainers.image.description="Reconciles DreemTrainingJob resources into gang-scheduled training pods" \
      org.opencontainers.image.source="https://github.com/talmolab/dreem-operator" \
      org.opencontainers.image.licenses="BSD-3-Clause" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.base.name="${BASE}"
COPY pyproject.toml README.md constraints.txt /src/
COPY trainer_image/dreem_trainer /src/trainer_image/dreem_trainer
COPY operator/dreem_operator /src/operator/dreem_operator
RUN python3 -m venv /opt/venv \
 && /opt/venv/bin/pip install --no-cache-dir -c /src/constraints.txt '/src[operator]' \
 && rm -rf /src
# The chart mounts the root filesystem read-only: nothing here writes to disk. kopf names itself after the user
# (getpass), which fails for a uid that /etc/passwd does not list.
ENV PATH=/opt/venv/bin:$PATH PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN echo 'dreem:x:65532:65532:dreem operator:/nonexistent:/usr/sbin/nologin' >> /etc/passwd \
 && echo 'dreem:x:65532:' >> /etc/group
USER 65532:65532
ENTRYPOINT ["dreem-operator"]
