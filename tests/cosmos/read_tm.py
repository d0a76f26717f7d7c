"""Reads a TM server with OpenC3 COSMOS 7.4.1's own interface code and prints each packet COSMOS
read, its bytes as hex, one a line, in the order read.

    read_tm.py COUNT FILENAME HOST WRITE_PORT READ_PORT WRITE_TIMEOUT READ_TIMEOUT PROTOCOL ARGS...

The arguments after COUNT are those of a plugin.txt line `INTERFACE NAME FILENAME ...` after its
name: tests/cosmos.rs takes them from docs/tm-server.md's COSMOS section, with the host and the
read port replaced. The interface is built from them by COSMOS' `InterfaceModel.build`, as its
interface microservice does (the class named by FILENAME, given the other arguments as strings;
the protocol named after the timeouts gets the rest), then connected and read with
`Interface.read`, the microservice's loop, which returns a packet's bytes with the protocol's
leading bytes (the sync marker) discarded.

After COUNT packets it reads on until the server closes the connection: exits 0 then, and 1 at a
packet beyond COUNT (printed, then named on stderr). Exits 1 when the connection closes before
COUNT packets, or when 30 s pass first.

COSMOS' servers (Redis, its APIs) do not run here; two settings of its environment make its
interface code run without them, nothing of it is replaced:
- OPENC3_NO_STORE=1 (before openc3 is imported): its Logger prints its messages and does not
  also queue them for Redis;
- its Logger prints to sys.stdout: that is pointed at stderr, so stdout carries only the packets.
"""

from __future__ import annotations

import os
import signal
import sys

os.environ["OPENC3_NO_STORE"] = "1"

from openc3.models.interface_model import InterfaceModel  # noqa: E402

TIMEOUT_S = 30
NAME = "AGGREGATOR"


def main() -> int:
    if len(sys.argv) < 3:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    count = int(sys.argv[1])
    params = sys.argv[2:]
    out = sys.stdout
    sys.stdout = sys.stderr

    read = 0

    def fail(why: str) -> int:
        print(f"read_tm.py: {why}, after {read} of {count} packets", file=sys.stderr, flush=True)
        return 1

    def timed_out(_signum, _frame):
        fail(f"timed out after {TIMEOUT_S} s")
        os._exit(1)

    signal.signal(signal.SIGALRM, timed_out)
    signal.alarm(TIMEOUT_S)

    # As InterfaceMicroservice does: the model's build(), then the name, connect(), read().
    interface = InterfaceModel(NAME, config_params=params).build()
    interface.name = NAME
    interface.connect()
    while True:
        packet = interface.read()
        if packet is None:
            # Interface.read returns None once the server closed the connection.
            if read < count:
                return fail("the server closed the connection")
            return 0
        data = bytes(packet.buffer)
        print(data.hex(), file=out, flush=True)
        read += 1
        if read > count:
            return fail(f"a packet beyond the {count} expected: {data[:16].hex()}...")


if __name__ == "__main__":
    sys.exit(main())
