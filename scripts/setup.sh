#!/usr/bin/env bash
# Set up everything the app needs in ./.venv (idempotent; re-running is cheap).
#   scripts/setup.sh          app only
#   scripts/setup.sh --test   plus test tools and Debian's chromium for the browser test
set -euo pipefail
cd "$(dirname "$0")/.."

with_test=0
[ "${1:-}" = "--test" ] && with_test=1

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
# shellcheck disable=SC1091
. .venv/bin/activate
python -m pip install -q --upgrade pip
# The CPU build of torch first, by exact version, so nothing pulls a CUDA build.
python -m pip install -q "torch==2.13.0"
# Tesseract and its Japanese data (horizontal, vertical, script) for scanned PDF pages (rag/ocr).
# Without them the product still runs and refuses scans with a one-line message, as before.
OCR_PACKAGES="tesseract-ocr tesseract-ocr-jpn tesseract-ocr-jpn-vert tesseract-ocr-script-jpan"
ocr_missing=0
for pkg in $OCR_PACKAGES; do dpkg -s "$pkg" >/dev/null 2>&1 || ocr_missing=1; done
if [ "$ocr_missing" = 1 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "Debian の Tesseract と日本語データを入れます（スキャンPDFの文字認識用）..."
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $OCR_PACKAGES >/dev/null
  else
    echo "注意: OCR がありません。スキャンPDFは読めません（sudo apt-get install $OCR_PACKAGES）。" >&2
  fi
fi
if [ "$with_test" = 1 ]; then
  python -m pip install -q -e ".[test]"
  # Debian's chromium for the browser test, and a Japanese font so its screenshots are legible.
  if ! command -v chromium >/dev/null 2>&1 || ! dpkg -s fonts-ipaexfont-gothic >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
      echo "Debian の chromium と日本語フォントを入れます（ブラウザ試験用）..."
      apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-ipaexfont-gothic >/dev/null
    else
      echo "注意: chromium がありません。ブラウザ試験は飛ばされます（sudo apt-get install chromium fonts-ipaexfont-gothic）。" >&2
    fi
  fi
else
  python -m pip install -q -e .
fi
