#!/usr/bin/env bash
# Wheels bench/gpu.py needs on the GPU machine beyond its image (which has torch, Lightning, timm, numpy,
# pandas, scipy, h5py, OpenCV, imageio, PyYAML, rich, typer): ours, then DREEM 0.5.1's for the reference figure.
# Python 3.12, manylinux x86_64, into .whl/ of the directory it is run in (the repo root; keep .whl/ git-ignored,
# e.g. `echo /.whl/ >> .git/info/exclude`). Prints the total size: the device takes 64 MiB per call, tree included.
# Usage: bench/gpu_wheels.sh [--no-peer]
set -euo pipefail
dest=.whl
mkdir -p "$dest"
pip=(python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 --implementation cp
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d "$dest")
# Versions as constraints.txt pins them. sleap-io's other needs (pynwb, skia, shapely...) are imported only by
# features the bench does not use; albumentations is imported by the reference's dataset module.
"${pip[@]}" pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5 \
  defusedxml==0.7.1 sleap-io==0.9.5 albumentations==2.0.8 albucore==0.0.24 stringzilla==5.3.2 simsimd==6.5.16
if [[ "${1:-}" != "--no-peer" ]]; then
  # The reference reads its videos through imageio's ffmpeg plugin, and configures itself with hydra.
  "${pip[@]}" dreem-track==0.5.1 hydra-core==1.3.8 omegaconf==2.3.1 motmetrics==1.4.0 xmltodict==1.0.4 \
    imageio-ffmpeg==0.6.0
  # omegaconf needs antlr4 4.9, published as source only: build its pure-Python wheel here.
  python3 -m pip wheel --quiet --no-deps --no-build-isolation -w "$dest" antlr4-python3-runtime==4.9.3 \
    || python3 -m pip wheel --quiet --no-deps -w "$dest" antlr4-python3-runtime==4.9.3
fi
ls -1 "$dest"
du -ch "$dest"/*.whl | tail -1
