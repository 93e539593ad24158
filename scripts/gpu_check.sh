#!/usr/bin/env bash
# The checks that need a CUDA GPU: the GPU tests (skipped elsewhere) and the tracking throughput figure.
# Run from the repository root on a machine with a GPU and PyTorch, for example the device tool's machine:
#   python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#     --platform manylinux2014_x86_64 -d .whl pydantic==2.14.4 pydantic_core==2.50.5 annotated-types==0.8.0 \
#     typing-inspection==0.4.5 sleap-io==0.9.5 defusedxml==0.7.1     # what that machine's image lacks
#   then run `bash scripts/gpu_check.sh` there, carrying .whl. Results go to $OUT (default /tmp/gpu_check).
set -uo pipefail
OUT="${OUT:-/tmp/gpu_check}"
mkdir -p "$OUT"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    || exit 1
  export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="$PWD/trainer_image:$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), \
'bf16', torch.cuda.is_bf16_supported())" | tee -a "$OUT/gpu.txt"
status=0
python3 -m pytest -p no:cacheprovider -q -rs tests/integration/test_gpu_tracking.py tests/unit/inference/test_device.py \
  2>&1 | tee "$OUT/pytest.txt" || status=1
python3 bench/track_throughput.py --no-peer --repeats 3 --checkpoint tests/data/dreem/dreem_two_flies.ckpt \
  2>&1 | tee "$OUT/track_throughput.json" || status=1
exit $status
