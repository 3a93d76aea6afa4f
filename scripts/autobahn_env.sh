#!/usr/bin/env bash
# Provision Autobahn|Testsuite (wstest; a Python 2.7-only package) in a python2.7 virtualenv. Idempotent: a
# finished install is marked and reused. Usage: scripts/autobahn_env.sh [VENV] (default: .venv-autobahn);
# prints the wstest path. Fails (exit 1) with a readable message when python2.7 or the packages are missing.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
VENV="${1:-$ROOT/.venv-autobahn}"
VERSION=25.10.1
MARK="$VENV/.installed-autobahntestsuite-$VERSION"
if [ -f "$MARK" ] && "$VENV/bin/wstest" --help >/dev/null 2>&1; then
  echo "$VENV/bin/wstest"
  exit 0
fi

py2=""
for candidate in python2.7 "$(pyenv root 2>/dev/null)"/versions/2.7*/bin/python2.7 /usr/bin/python2.7; do
  if [ -n "$candidate" ] && "$candidate" -c 'import sys; assert sys.version_info[:2] == (2, 7)' 2>/dev/null; then
    py2="$candidate"
    break
  fi
done
if [ -z "$py2" ]; then
  echo "autobahn_env: no working python2.7 (Autobahn|Testsuite needs it): e.g. pyenv install 2.7.18" >&2
  exit 1
fi

rm -rf "$VENV"
boot="$(mktemp -d)"
trap 'rm -rf "$boot"' EXIT
pip_quiet=(--quiet --disable-pip-version-check)
# virtualenv 20.21 is the last that creates 2.7 environments; install it beside, not into, the interpreter
"$py2" -m pip install "${pip_quiet[@]}" --target "$boot" "virtualenv<20.22" >&2
PYTHONPATH="$boot" "$py2" -m virtualenv --quiet "$VENV" >&2
"$VENV/bin/pip" install "${pip_quiet[@]}" "autobahntestsuite==$VERSION" >&2
"$VENV/bin/wstest" --help >/dev/null
touch "$MARK"
echo "$VENV/bin/wstest"
