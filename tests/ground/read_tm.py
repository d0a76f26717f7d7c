"""Reads a TM server's stream of CCSDS space packets, as Yamcs' TcpTmDataLink does, and prints
each packet's manifest entry (JSON lines: apid, count, len, sha256) in the order it arrived.

Each packet's header is read by `spacepackets` (`SpacePacketHeader.unpack`: its length field
delimits the packet), and the packet is rebuilt by `spacepackets` from the header and data field
and must equal the bytes read. With `--asm` every packet must follow the attached sync marker
1A CF FC 1D (checked here, four bytes; the packet is parsed as above).

Exits 0 after `--expect` packets; with `--to-eof`, only when the server then closes the
connection, and 1 when it sends anything more (a duplicate, say). Exits 1, naming what it had,
when the stream breaks (a missing marker, bytes that do not parse) or when 30 s pass first.

    read_tm.py 127.0.0.1 4002 --expect 1000 [--asm] [--to-eof]
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

from spacepackets.ccsds.spacepacket import SpacePacketHeader

import packets as pk

ASM = bytes([0x1A, 0xCF, 0xFC, 0x1D])
HEADER = 6
TIMEOUT_S = 30.0


class Broken(Exception):
    """The stream cannot be read as packets."""


def take_packet(buf: bytearray, asm: bool) -> bytes | None:
    """Takes the first packet off `buf`, or None when it is not all there yet."""
    start = len(ASM) if asm else 0
    marker = min(len(buf), len(ASM))
    if asm and buf[:marker] != ASM[:marker]:
        raise Broken(f"no sync marker: the stream goes on with {bytes(buf[:4]).hex()}")
    if len(buf) < start + HEADER:
        return None
    header = SpacePacketHeader.unpack(bytes(buf[start : start + HEADER]))
    end = start + header.packet_len
    if len(buf) < end:
        return None
    raw = bytes(buf[start:end])
    problem = pk.not_rebuilt(header, raw)
    if problem:
        raise Broken(problem)
    del buf[:end]
    return raw


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--expect", type=int, required=True, help="packets to read")
    parser.add_argument(
        "--asm", action="store_true", help="each packet follows the sync marker 1ACFFC1D"
    )
    parser.add_argument(
        "--to-eof",
        action="store_true",
        help="after --expect packets, read on until the server closes; any more is an error",
    )
    args = parser.parse_args()

    deadline = time.monotonic() + TIMEOUT_S
    read = 0
    buf = bytearray()
    where = f"{args.host}:{args.port}"

    def fail(why: str) -> int:
        print(
            f"read_tm.py: {why}, after {read} of {args.expect} packets from {where}"
            f" ({len(buf)} bytes pending)",
            file=sys.stderr,
        )
        return 1

    try:
        sock = socket.create_connection((args.host, args.port), timeout=TIMEOUT_S)
    except OSError as err:
        return fail(f"cannot connect: {err}")
    with sock:
        while True:
            try:
                while (packet := take_packet(buf, args.asm)) is not None:
                    if read == args.expect:
                        entry = json.dumps(pk.describe(packet))
                        return fail(f"a packet beyond those expected: {entry}")
                    print(json.dumps(pk.describe(packet)), flush=True)
                    read += 1
            except Broken as err:
                return fail(str(err))
            if read == args.expect and not args.to_eof:
                return 0
            left = deadline - time.monotonic()
            if left <= 0:
                return fail(f"timed out after {TIMEOUT_S:.0f} s")
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except socket.timeout:
                return fail(f"timed out after {TIMEOUT_S:.0f} s")
            except OSError as err:
                return fail(f"the connection broke: {err}")
            if not chunk:
                if read == args.expect and not buf:
                    return 0
                return fail("the server closed the connection")
            buf.extend(chunk)


if __name__ == "__main__":
    sys.exit(main())
