#!/usr/bin/env bash
# Makes target/ground-venv, a Python virtual environment with the pinned packages of
# tests/ground/requirements.txt (spacepackets, tmtccmd, kiss3), for tests/ground_segment.rs
# (tests/venv.sh; idempotent).
#
#   tests/ground/venv.sh            # PYTHON=python3.11 tests/ground/venv.sh for another interpreter
exec "$(dirname "$0")/../venv.sh" ground 'import spacepackets, tmtccmd.com.tcp, tmtccmd.com.udp, kiss'
