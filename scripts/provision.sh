#!/usr/bin/env bash
# Install the system packages that test rings need, if missing: chromium (browser ring) and redis-server
# (scale-out ring), tesseract-ocr (OCR of scanned PDF pages: the parse workers run it). Needs root (as in CI); elsewhere it says what to install. In CI a missing one is fatal.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v redis-server >/dev/null 2>&1 || need+=(redis-server)
command -v tesseract >/dev/null 2>&1 || need+=(tesseract-ocr tesseract-ocr-eng)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "provision: installing ${need[*]}"
  apt-get update -qq >/dev/null
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  exit 0
fi
echo "provision: missing ${need[*]}; install them (e.g. sudo apt-get install ${need[*]})" >&2
[ "${CI:-}" = "true" ] && exit 1
exit 0
