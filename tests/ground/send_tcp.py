"""Sends a packet set to HOST:PORT with tmtccmd's TCP space-packet client, as a ground station's
software would, and writes its manifest.

The packets are built by `spacepackets` (tests/ground/packets.py); the connection, and the
writing of each packet on it, are `tmtccmd.com.tcp.TcpSpacepacketsClient`'s. Exits 0 once every
packet was written and the connection closed; non-zero, naming why, when the client could not
connect or its thread died with packets left.

    send_tcp.py 127.0.0.1 4000 --apids 100,101 --count 500 --size 64 --manifest sent.jsonl
"""

from __future__ import annotations

import argparse
import sys
import time

from spacepackets.ccsds.spacepacket import PacketId, PacketType
from tmtccmd.com.tcp import TcpSpacepacketsClient
from tmtccmd.com.tcpip_utils import EthAddr

import packets as pk

# How long the client may take to write the set before this gives up.
PATIENCE_S = 30.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    pk.add_packet_arguments(parser)
    args = parser.parse_args()
    apids = pk.parse_apids(args.apids)
    packets = pk.build_packets(apids, args.count, args.size, args.seed)

    client = TcpSpacepacketsClient(
        com_if_id="ground-test",
        space_packet_ids=[PacketId(PacketType.TM, False, apid) for apid in apids],
        inner_thread_delay=0.01,
        target_address=EthAddr(args.host, args.port),
    )
    # Raises (ConnectionRefusedError) when nothing listens.
    client.open()
    # The client queues what send() is given and a thread of its own writes it, one packet per
    # turn of its select loop. It offers no flush, so this waits on its queue, then stops the
    # thread and joins it: the thread takes the stop only at the top of its loop, after the write
    # of the packet it took last, and closes the socket then. (Its own close() joins for one loop
    # delay only.) The attributes are name-mangled privates of tmtccmd 8.2.
    queue = client._TcpSpacepacketsClient__tc_queue
    thread = client._TcpSpacepacketsClient__tcp_thread
    stop = client._TcpSpacepacketsClient__thread_kill_signal
    for packet in packets:
        client.send(packet)
    deadline = time.monotonic() + PATIENCE_S
    while not queue.empty():
        if not thread.is_alive():
            print(
                f"send_tcp.py: tmtccmd's TCP thread ended with {queue.qsize()} of"
                f" {len(packets)} packets unsent (its error is above)",
                file=sys.stderr,
            )
            return 1
        if time.monotonic() > deadline:
            print(
                f"send_tcp.py: {queue.qsize()} of {len(packets)} packets still queued after"
                f" {PATIENCE_S:.0f} s: {args.host}:{args.port} does not read",
                file=sys.stderr,
            )
            return 1
        time.sleep(0.002)
    stop.set()
    thread.join(PATIENCE_S)
    if thread.is_alive():
        print("send_tcp.py: tmtccmd's TCP thread did not stop", file=sys.stderr)
        return 1
    client.close()
    pk.write_manifest(args.manifest, packets)
    return 0


if __name__ == "__main__":
    sys.exit(main())
