"""What the ground-segment test programs share: packets built by `spacepackets`, and manifests.

A packet set is N telemetry packets per APID, interleaved (APID order within each round), each
with the APID's sequence count (0, 1, ... mod 16384) and a data field drawn from a generator seeded
with the seed and the APID, so that a sender and a checker that agree on the arguments agree on
every byte. A manifest is JSON lines, one per packet in the order it was sent or read:
`{"apid": A, "count": C, "len": L, "sha256": "..."}`, the hash over the whole packet (header too).

Only `spacepackets` builds and parses the packets here: the point of these programs is to hold the
daemon to code that nobody in this repository wrote.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from typing import IO, Iterable

from spacepackets.ccsds.spacepacket import (
    PacketType,
    SequenceFlags,
    SpacePacket,
    SpacePacketHeader,
)

# The sequence count's modulus (14 bits).
SEQUENCE_MODULUS = 1 << 14
# Bytes a KISS stream must escape (FEND, FESC) and the ones that follow FESC in an escape (TFEND,
# TFESC): put in the data of every other packet when asked, so that escapes are exercised.
KISS_SPECIALS = bytes([0xC0, 0xDB, 0xDC, 0xDD, 0xC0, 0xC0, 0xDB, 0xDB])


def add_packet_arguments(parser: argparse.ArgumentParser) -> None:
    """The arguments every sender takes to build its packet set."""
    parser.add_argument(
        "--apids",
        default="100,101",
        help="comma-separated APIDs (0..2047), one packet stream each (default 100,101)",
    )
    parser.add_argument("--count", type=int, default=100, help="packets per APID (default 100)")
    parser.add_argument(
        "--size", type=int, default=64, help="bytes in each data field, 1..65536 (default 64)"
    )
    parser.add_argument("--seed", type=int, default=43, help="seed of the data bytes (default 43)")
    parser.add_argument(
        "--manifest",
        default="-",
        help="file to write the manifest of sent packets to, JSON lines ('-': stdout, the default)",
    )


def parse_apids(text: str) -> list[int]:
    apids = [int(part, 0) for part in text.split(",") if part.strip()]
    if not apids or any(not 0 <= apid <= 0x7FF for apid in apids):
        raise SystemExit(f"--apids {text!r}: one or more APIDs in 0..2047")
    if len(set(apids)) != len(apids):
        raise SystemExit(f"--apids {text!r}: an APID named twice")
    return apids


def build_packets(
    apids: list[int], count: int, size: int, seed: int, specials: bytes = b""
) -> list[bytes]:
    """The packet set, interleaved by APID; with `specials`, every other packet's data starts with
    those bytes."""
    if not 1 <= size <= 65536:
        raise SystemExit(f"--size {size}: a data field has 1 to 65536 bytes")
    if count < 0:
        raise SystemExit(f"--count {count}: not negative")
    generators = {apid: random.Random(f"{seed}:{apid}") for apid in apids}
    packets = []
    for index in range(count):
        for apid in apids:
            data = bytearray(generators[apid].randbytes(size))
            if specials and index % 2 == 0:
                head = specials[:size]
                data[: len(head)] = head
            header = SpacePacketHeader(
                packet_type=PacketType.TM,
                apid=apid,
                seq_count=index % SEQUENCE_MODULUS,
                data_len=size - 1,
                seq_flags=SequenceFlags.UNSEGMENTED,
            )
            packets.append(bytes(SpacePacket(header, None, bytes(data)).pack()))
    return packets


def not_rebuilt(header: SpacePacketHeader, raw: bytes) -> str | None:
    """Why `spacepackets` does not rebuild `raw` (a whole packet) from its header, or None."""
    rebuilt = bytes(SpacePacket(header, None, raw[len(header.pack()) :]).pack())
    if rebuilt != raw:
        return f"spacepackets rebuilds {rebuilt.hex()} from {raw.hex()}"
    return None


def describe(packet: bytes) -> dict:
    """A packet's manifest entry, its header read by `spacepackets`."""
    header = SpacePacketHeader.unpack(packet)
    return {
        "apid": header.apid,
        "count": header.seq_count,
        "len": len(packet),
        "sha256": hashlib.sha256(packet).hexdigest(),
    }


def open_output(path: str) -> IO[str]:
    return sys.stdout if path == "-" else open(path, "w", encoding="utf-8")


def write_manifest(path: str, packets: Iterable[bytes]) -> None:
    out = open_output(path)
    try:
        for packet in packets:
            out.write(json.dumps(describe(packet)) + "\n")
        out.flush()
    finally:
        if out is not sys.stdout:
            out.close()
