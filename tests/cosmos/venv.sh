#!/usr/bin/env bash
# Makes target/cosmos-venv, a Python virtual environment with the pinned packages of
# tests/cosmos/requirements.txt (openc3: OpenC3 COSMOS 7.4.1's Python package), for tests/cosmos.rs
# (tests/venv.sh; idempotent).
#
#   tests/cosmos/venv.sh            # PYTHON=python3.11 tests/cosmos/venv.sh for another interpreter
exec "$(dirname "$0")/../venv.sh" cosmos 'import openc3.models.interface_model, openc3.interfaces.tcpip_client_interface, openc3.interfaces.protocols.length_protocol'
