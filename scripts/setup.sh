#!/usr/bin/env bash
# Idempotent set-up on Debian 12: QGIS from Debian, a venv that sees it, pinned packages,
# the backend installed editable. Safe to re-run; does nothing that is already done.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
for pkg in qgis python3-qgis qgis-providers xvfb imagemagick qttools5-dev-tools pyqt5-dev-tools; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo ">> installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv (with Debian's python3, seeing QGIS's site-packages)"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi
.venv/bin/python -m pip install -q --upgrade "pip>=24"
echo ">> installing pinned Python packages"
.venv/bin/python -m pip install -q -r requirements.txt -c constraints.txt
.venv/bin/python -m pip install -q --no-deps -e backend
.venv/bin/python -c "import qgis.core, torch, transformers, rasterio, shapely, geopandas; print('>> environment ready: torch', torch.__version__, '| transformers', transformers.__version__, '| rasterio', rasterio.__version__)"
