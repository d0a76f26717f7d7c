"""Sends a packet set to HOST:PORT over UDP, one packet per datagram, with tmtccmd's UDP client,
and writes its manifest.

The packets are built by `spacepackets` (tests/ground/packets.py); the datagrams are sent by
`tmtccmd.com.udp.UdpClient`. UDP has no flow control: `--rate` paces the sender (packets per
second, evenly spaced) so that a receiver's socket buffer is not overrun; 0 sends as fast as the
socket takes them.

    send_udp.py 127.0.0.1 4001 --apids 100,101 --count 200 --rate 2000 --manifest sent.jsonl
"""

from __future__ import annotations

import argparse
import select
import sys
import time

from tmtccmd.com.tcpip_utils import EthAddr
from tmtccmd.com.udp import UdpClient

import packets as pk


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    pk.add_packet_arguments(parser)
    parser.add_argument(
        "--rate",
        type=float,
        default=2000.0,
        help="packets per second, evenly spaced; 0: unpaced (default 2000)",
    )
    args = parser.parse_args()
    apids = pk.parse_apids(args.apids)
    packets = pk.build_packets(apids, args.count, args.size, args.seed)

    client = UdpClient("ground-test", send_address=EthAddr(args.host, args.port))
    client.open()
    started = time.monotonic()
    for index, packet in enumerate(packets):
        if args.rate > 0:
            # Pacing, not synchronisation: UDP gives the sender nothing to wait on.
            due = started + index / args.rate
            late = due - time.monotonic()
            if late > 0:
                time.sleep(late)
        while True:
            try:
                client.send(packet)
                break
            except BlockingIOError:
                # The client's socket is non-blocking: wait until the kernel takes more.
                select.select([], [client.udp_socket], [], 1.0)
    client.close()
    pk.write_manifest(args.manifest, packets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
