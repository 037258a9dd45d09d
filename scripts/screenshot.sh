#!/usr/bin/env bash
# Runs under xvfb-run (see `make screenshot`): starts a backend with the tiny model, opens
# real QGIS with the packaged plugin and scripts/screenshot_session.py, stops the backend.
set -euo pipefail
repo="$1"; scene="$2"
rm -f "$RSCOVLM_SCREENSHOT"  # a failed run must not pass for a fresh picture
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
export RSCOVLM_SCREENSHOT_URL="http://127.0.0.1:${port}"
"$repo/.venv/bin/rscovlm" serve --model "$repo/models/tiny" --port "$port" > "$repo/out/screenshot/backend.log" 2>&1 &
backend=$!
trap 'kill $backend 2>/dev/null || true' EXIT
for _ in $(seq 1 180); do curl -sf "$RSCOVLM_SCREENSHOT_URL/health" >/dev/null && break; sleep 1; done
make -s -C "$repo" package >/dev/null
export RSCOVLM_SCREENSHOT_SCENE="$repo/$scene"
export QGIS_PLUGINPATH="$repo/build/package"
profiles="$repo/out/screenshot/profiles"; rm -rf "$profiles"; mkdir -p "$profiles"
timeout 300 qgis --nologo --noversioncheck --profiles-path "$profiles" \
    --code "$repo/scripts/screenshot_session.py" || true
if [ -s "$RSCOVLM_SCREENSHOT" ]; then
  echo "Screenshot: $RSCOVLM_SCREENSHOT"
else
  echo "No screenshot was taken: see $repo/out/screenshot/backend.log" >&2; exit 1
fi
