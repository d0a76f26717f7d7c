"""A KISS TCP server, as a TNC or a KISS modem serves, with kiss3's own framing: accepts one
connection, sends it a packet set as KISS data frames, and holds it until the peer closes it.

Each packet is built by `spacepackets` (tests/ground/packets.py) and framed by kiss3's
`KISSProtocol.write` (FEND, the command byte, `kiss.util.escape_special_codes`, FEND). Every other
packet's data starts with FEND and FESC bytes, and the default APIDs (0x0C0, 0x0DB) and size (193:
a data length field of 0xC0) put them in the headers too, so the escapes are exercised.

Prints the bound port alone on the first line of stdout (bind port 0 to get a free one), then
`connected`, then `sent N` once the N frames are handed to the connection. Exits 0 when the peer
closes the connection; 1 when nobody connects within 30 s.

    kiss_server.py 0 --count 100 --manifest sent.jsonl
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from kiss import Command, KISSProtocol

import packets as pk

# How long to wait for the daemon to dial.
PATIENCE_S = 30.0


async def serve(args: argparse.Namespace, packets: list[bytes]) -> int:
    loop = asyncio.get_running_loop()
    connected: asyncio.Future[KISSProtocol] = loop.create_future()
    closed: asyncio.Future[None] = loop.create_future()

    class OneConnection(KISSProtocol):
        """kiss3's protocol, telling this server when its connection comes and goes."""

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            if connected.done():
                transport.close()  # one connection only
            else:
                connected.set_result(self)

        def connection_lost(self, exc: Exception | None) -> None:
            super().connection_lost(exc)
            if connected.done() and connected.result() is self and not closed.done():
                closed.set_result(None)

    server = await loop.create_server(OneConnection, args.host, args.port)
    port = server.sockets[0].getsockname()[1]
    print(port, flush=True)
    try:
        protocol = await asyncio.wait_for(connected, PATIENCE_S)
    except asyncio.TimeoutError:
        print(
            f"kiss_server.py: nobody connected to {args.host}:{port} within {PATIENCE_S:.0f} s",
            file=sys.stderr,
        )
        return 1
    server.close()
    print("connected", flush=True)
    if args.with_command:
        # A command frame (TXDELAY) first: a receiver must skip it, not take it for data.
        protocol.write_setting(Command.TX_DELAY, 40)
    for packet in packets:
        protocol.write(packet)
    print(f"sent {len(packets)}", flush=True)
    await closed
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("port", type=int, help="TCP port to listen on; 0 for a free one")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    pk.add_packet_arguments(parser)
    parser.set_defaults(apids="192,219", size=193, manifest=None)
    parser.add_argument(
        "--with-command",
        action="store_true",
        help="send a KISS command frame (TXDELAY) before the data frames",
    )
    args = parser.parse_args()
    if args.manifest in (None, "-"):
        parser.error("--manifest FILE: stdout carries the port and progress lines")
    apids = pk.parse_apids(args.apids)
    packets = pk.build_packets(apids, args.count, args.size, args.seed, pk.KISS_SPECIALS)
    # Written before the port is printed: whoever reads the port can read the manifest.
    pk.write_manifest(args.manifest, packets)
    return asyncio.run(serve(args, packets))


if __name__ == "__main__":
    sys.exit(main())
