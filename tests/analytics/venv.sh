#!/usr/bin/env bash
# Makes target/analytics-venv, a Python virtual environment with the pinned packages of
# tests/analytics/requirements.txt (duckdb, pyarrow), for the ignored test of
# tests/archive_export.rs that reads the export's Parquet and CSV files with them.
# Idempotent: when the environment was made from the same requirements and imports them, it
# returns at once. Needs python3 with its venv module (Debian package python3-venv) and PyPI.
#
#   tests/analytics/venv.sh         # PYTHON=python3.11 tests/analytics/venv.sh for another interpreter
set -euo pipefail
cd "$(dirname "$0")/../.."
python=${PYTHON:-python3}
venv=target/analytics-venv
requirements=tests/analytics/requirements.txt
stamp=$venv/.requirements.sha256
want=$(sha256sum "$requirements" | cut -d' ' -f1)

imports() { "$venv/bin/python" -c 'import duckdb, pyarrow.parquet, pyarrow.compute' 2>/dev/null; }

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
"$venv/bin/pip" list --disable-pip-version-check 2>/dev/null | grep -iE '^(duckdb|pyarrow) '
