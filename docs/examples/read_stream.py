#!/usr/bin/env python3
"""Reads the frames of the aggregator's NATS stream back with nats-py, one JSON object a line: the
lines of `aggregator nats read` (docs/scale-out.md, "Reading the stream back"), byte for byte.

    python3 read_stream.py nats://127.0.0.1:4222 TELEMETRY 'telemetry.>'

A frame's message: the subject of its source, the payload as the body, and the headers of
docs/scale-out.md. Its kind, source and sequence are the last three dot-separated parts of its
Nats-Msg-Id. Reads SUBJECT's messages up to the stream's last when it starts, then ends; a message
that is no frame is named on standard error, and reading goes on.
"""

import asyncio
import base64
import json
import sys
import time

import nats

# The headers of a link frame's reception, and the keys they become.
RECEPTION = [
    ("Aggregator-Link", "link"),
    ("Aggregator-Station", "station"),
    ("Aggregator-Mode", "mode"),
    ("Aggregator-Earth-Received-Unix-Ns", "earth_received"),
    ("Aggregator-Ax25-From", "ax25_from"),
    ("Aggregator-Ax25-To", "ax25_to"),
]


def rfc3339(ns):
    """Nanoseconds since the Unix epoch as RFC 3339, UTC, with nine decimals."""
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


def frame(msg):
    """The JSON object of one message; KeyError or ValueError when it is no frame."""
    headers = msg.headers or {}
    kind, source, sequence = headers["Nats-Msg-Id"].split(".")[-3:]
    if not (source.isdigit() and sequence.isdigit()):
        raise ValueError(f"Nats-Msg-Id {headers['Nats-Msg-Id']!r}")
    row = {
        "received": rfc3339(headers["Aggregator-Received-Unix-Ns"]),
        "kind": kind,
        "source": int(source),
        "sequence": int(sequence),
        "priority": headers["Aggregator-Priority"],
        "payload": base64.b64encode(msg.data).decode(),
        "site": headers.get("Aggregator-Site"),
        "stream_sequence": msg.metadata.sequence.stream,
    }
    for header, key in RECEPTION if "Aggregator-Link" in headers else []:
        if header in headers:
            value = headers[header]
            row[key] = rfc3339(value) if key == "earth_received" else value
    return row


async def main(url, stream, subject):
    nc = await nats.connect(url)
    js = nc.jetstream()
    last = (await js.stream_info(stream)).state.last_seq
    sub = await js.pull_subscribe(subject, stream=stream)
    pending = (await sub.consumer_info()).num_pending
    while pending > 0:
        for msg in await sub.fetch(min(pending, 256), timeout=10):
            await msg.ack()
            at = msg.metadata.sequence.stream
            pending = 0 if at >= last else msg.metadata.num_pending
            if at > last:
                break
            try:
                row = frame(msg)
            except (KeyError, ValueError) as why:
                print(f"stream sequence {at}: not a frame: {why}", file=sys.stderr)
                continue
            print(json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    await sub.unsubscribe()
    await nc.close()


if __name__ == "__main__":
    sys.stdout.reconfigure(encoding="utf-8")
    asyncio.run(main(*sys.argv[1:4]))
