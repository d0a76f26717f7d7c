#!/usr/bin/env bash
# Makes target/yamcs-venv, a Python virtual environment with the pinned package of
# tests/yamcs/requirements.txt (fprime-yamcs-bundle: Yamcs 5.12.8's jars), for tests/yamcs.rs
# (tests/venv.sh; idempotent). Java 17 runs the jars: Debian's openjdk-17-jre-headless.
#
#   tests/yamcs/venv.sh             # PYTHON=python3.11 tests/yamcs/venv.sh for another interpreter
exec "$(dirname "$0")/../venv.sh" yamcs 'import fprime_yamcs_bundle; assert (fprime_yamcs_bundle.LIB_DIR / "yamcs-core-5.12.8.jar").is_file()'
