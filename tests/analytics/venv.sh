#!/usr/bin/env bash
# Makes target/analytics-venv, a Python virtual environment with the pinned packages of
# tests/analytics/requirements.txt (duckdb, pyarrow), for the ignored test of
# tests/archive_export.rs that reads the export's Parquet and CSV files with them
# (tests/venv.sh; idempotent).
#
#   tests/analytics/venv.sh         # PYTHON=python3.11 tests/analytics/venv.sh for another interpreter
exec "$(dirname "$0")/../venv.sh" analytics 'import duckdb, pyarrow.parquet, pyarrow.compute'
