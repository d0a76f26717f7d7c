#!/usr/bin/env bash
# Makes target/NAME-venv, a Python virtual environment with the pinned packages of
# tests/NAME/requirements.txt, for the tests that run those packages against the daemon
# (tests/ground/venv.sh and tests/analytics/venv.sh call it with their names and imports).
# Idempotent: when the environment was made from the same requirements and imports them, it
# returns at once. Needs python3 with its venv module (Debian package python3-venv) and PyPI.
#
#   tests/venv.sh NAME 'import a, b.c'    # PYTHON=python3.11 for another interpreter
set -euo pipefail
cd "$(dirname "$0")/.."
name=$1 imports=$2
python=${PYTHON:-python3}
venv=target/$name-venv
requirements=tests/$name/requirements.txt
stamp=$venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)

imports() { "$venv/bin/python" -c "$imports" 2>/dev/null; }

if [[ -f $stamp && $(cat "$stamp") == "$want" ]] && imports; then
    echo "$venv is up to date"
    exit 0
fi
echo "== making $venv from $requirements"
rm -rf "$venv"
mkdir -p target
"$python" -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$requirements"
imports || { echo "$venv: the packages do not import" >&2; exit 1; }
echo "$want" >"$stamp"
# The versions installed, as the requirements name them.
packages=$(sed -n 's/^\([A-Za-z0-9_.-]*\)==.*/\1/p' "$requirements" | paste -sd'|')
"$venv/bin/pip" list --disable-pip-version-check 2>/dev/null | grep -iE "^($packages) "
