#!/usr/bin/env python3
"""Reads the frames of the aggregator's NATS stream back with nats-py, one JSON object a line: the
lines of `aggregator nats read` (docs/scale-out.md, "Reading the stream back"), byte for byte.

    python3 read_stream.py nats://127.0.0.1:4222 TELEMETRY 'telemetry.>'

A frame's message: the subject of its source, the payload as the body, and the headers of
docs/scale-out.md. Its kind, source and sequence are the last three dot-separated parts of its
Nats-Msg-Id. Reads what the stream holds of SUBJECT when it starts, then ends.
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
    """The JSON object of one message."""
    headers = msg.headers or {}
    kind, source, sequence = headers["Nats-Msg-Id"].split(".")[-3:]
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
    for header, key in RECEPTION:
        if header in headers:
            value = headers[header]
            row[key] = rfc3339(value) if key == "earth_received" else value
    return row


async def main(url, stream, subject):
    nc = await nats.connect(url)
    js = nc.jetstream()
    sub = await js.pull_subscribe(subject, stream=stream)
    pending = (await sub.consumer_info()).num_pending
    while pending > 0:
        for msg in await sub.fetch(min(pending, 256), timeout=10):
            print(json.dumps(frame(msg), sort_keys=True, separators=(",", ":")))
            pending = msg.metadata.num_pending
            await msg.ack()
    await sub.unsubscribe()
    await nc.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
