#!/usr/bin/env bash
# Check the vllm backend on a machine with a CUDA GPU, in one command:
#   bash benchmarks/vllm_gpu_check.sh [MODEL]        (default Qwen/Qwen2.5-0.5B-Instruct)
# It installs selfinstruct with the [vllm] extra into a venv of its own (VENV, default
# .venv-vllm; a few GB), runs the GPU tests, then a 100-task bootstrap and prints tasks/s.
# The model is downloaded from the Hugging Face Hub unless MODEL is a local directory.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL="${1:-${SELFINSTRUCT_VLLM_MODEL:-Qwen/Qwen2.5-0.5B-Instruct}}"
VENV="${VENV:-.venv-vllm}"
TARGET="${TARGET:-100}"

[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -e ".[dev,vllm]"
"$VENV/bin/python" -c "import vllm, torch; assert torch.cuda.is_available(), 'no CUDA GPU'; \
print('vllm', vllm.__version__, '| torch', torch.__version__, '|', torch.cuda.device_count(), 'GPU(s):', torch.cuda.get_device_name(0))"

export SELFINSTRUCT_VLLM_MODEL="$MODEL"
# -rs lists skips: on a GPU machine only the two-GPU test may skip (with one GPU).
"$VENV/bin/python" -m pytest -W error -rs -m gpu tests/test_vllm_backend.py
"$VENV/bin/python" -m pytest -W error -q tests/test_vllm_backend.py -m "not gpu"
"$VENV/bin/python" benchmarks/vllm_bootstrap.py --model "$MODEL" --target "$TARGET"
