"""Receives a TM forward's UDP datagrams, one CCSDS space packet each, as Yamcs' UdpTmDataLink
does, and prints each packet's manifest entry (JSON lines: apid, count, len, sha256) in the order
it arrived.

Binds HOST:PORT (port 0 for a free one) and prints the bound port alone on the first line of
stdout. Each datagram must be exactly one packet: its header read by `spacepackets`
(`SpacePacketHeader.unpack`), its length the header's, and `spacepackets` must rebuild the same
bytes from header and data field.

After `--expect` packets it exits 0; with `--until-stdin-closes` it then waits for its standard
input to close (the test closes it once the daemon has exited, so that every datagram the daemon
sent is in the socket's buffer), takes what the buffer still holds, and exits 1 if that is any
packet (a duplicate, say). Exits 1, naming what it had, on a datagram that is not one packet, or
when 30 s pass first.

    read_udp.py 127.0.0.1 0 --expect 400 --until-stdin-closes
"""

from __future__ import annotations

import argparse
import json
import select
import socket
import sys
import time

from spacepackets.ccsds.spacepacket import SpacePacketHeader

import packets as pk

HEADER = 6
TIMEOUT_S = 30.0


def check(datagram: bytes) -> str | None:
    """Why the datagram is not exactly one packet, or None."""
    if len(datagram) < HEADER + 1:
        return f"a datagram of {len(datagram)} bytes: {datagram.hex()}"
    header = SpacePacketHeader.unpack(datagram[:HEADER])
    if header.packet_len != len(datagram):
        return f"a datagram of {len(datagram)} bytes whose header says {header.packet_len}"
    return pk.not_rebuilt(header, datagram)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--expect", type=int, required=True, help="packets to read")
    parser.add_argument(
        "--until-stdin-closes",
        action="store_true",
        help="after --expect packets, wait for stdin to close; any packet then is an error",
    )
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    # Room for bursts: the sender has no flow control. Past net.core.rmem_max only as root.
    # (SO_RCVBUFFORCE is 33 on Linux; Python's socket module does not name it.)
    try:
        sock.setsockopt(socket.SOL_SOCKET, getattr(socket, "SO_RCVBUFFORCE", 33), 8 << 20)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((args.host, args.port))
    print(sock.getsockname()[1], flush=True)
    read = 0

    def fail(why: str) -> int:
        print(f"read_udp.py: {why}, after {read} of {args.expect} packets", file=sys.stderr)
        return 1

    deadline = time.monotonic() + TIMEOUT_S
    while read < args.expect:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            return fail(f"timed out after {TIMEOUT_S:.0f} s")
        datagram = sock.recv(70000)
        if (why := check(datagram)) is not None:
            return fail(why)
        print(json.dumps(pk.describe(datagram)), flush=True)
        read += 1
    if not args.until_stdin_closes:
        return 0
    left = deadline - time.monotonic()
    if left <= 0 or not select.select([sys.stdin], [], [], left)[0]:
        return fail("stdin still open after 30 s")
    sys.stdin.read()
    sock.setblocking(False)
    try:
        datagram = sock.recv(70000)
    except BlockingIOError:
        return 0
    return fail(f"a datagram beyond those expected: {datagram.hex()[:80]}")


if __name__ == "__main__":
    sys.exit(main())
