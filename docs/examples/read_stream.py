#!/usr/bin/env python3
"""Reads the frames of the aggregator's NATS stream back with nats-py, one JSON object a line: the
lines of `aggregator nats read` (docs/scale-out.md, "Reading the stream back"), byte for byte.

    python3 read_stream.py nats://127.0.0.1:4222 TELEMETRY 'telemetry.>'

A message of layout records/1 or records/2 (header Aggregator-Layout) holds frames of one source
as the archive's FRAMES and RECEIVED FRAMES records (docs/archive-format.md), in records/2 as a
zstd frame where the header Aggregator-Compression says zstd (pip install zstandard); a message
without the header (layout frame/1) is one frame: the payload as the body, its kind, source and
sequence the last three dot-separated parts of its Nats-Msg-Id, the rest in headers
(docs/scale-out.md). Reads SUBJECT's messages up to the stream's last when it starts, then ends;
a message that is no frame is named on standard error, and reading goes on.
"""

import asyncio
import base64
import json
import struct
import sys
import time
import zlib

import nats

# The headers of a link frame's reception, and the keys they become.
RECEPTION = [
    ("Aggregator-Link", "link"),
    ("Aggregator-Station", "station"),
    ("Aggregator-Mode", "mode"),
    ("Aggregator-Earth-Received-Unix-Ns", "earth_received"),
    ("Aggregator-Ax25-From", "ax25_from"),
    ("Aggregator-Ax25-To", "ax25_to"),
    ("Aggregator-Recording", "recording"),
]


def rfc3339(ns):
    """Nanoseconds since the Unix epoch as RFC 3339, UTC, with nine decimals."""
    seconds, nanos = divmod(int(ns), 1_000_000_000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"


KINDS = {0: "live", 1: "replay"}
PRIORITIES = {0: "routine", 1: "emergency"}


def callsign(raw):
    """An AX.25 address of a record (6 characters, space-padded, then the SSID) as shown: the
    trailing spaces dropped, and any byte but printable ASCII, a '-' or a '\\' as \\xNN."""
    call = bytes(raw[:6]).rstrip(b" ")
    shown = (f"\\x{c:02X}" if not 0x21 <= c <= 0x7E or c in b"-\\" else chr(c) for c in call)
    text = "".join(shown)
    return f"{text}-{raw[6]}" if raw[6] else text


def reception(body, pos, names):
    """A RECEIVED FRAMES frame's reception at pos: the keys it gives, and where its payload is."""
    flags = body[pos]
    pos += 1
    row = {"link": names[0], "station": names[1], "mode": "playback" if flags & 2 else "realtime"}
    if flags & 1:
        row["earth_received"] = rfc3339(struct.unpack_from(">Q", body, pos)[0])
        pos += 8
    if flags & 4:
        row["ax25_from"], row["ax25_to"] = callsign(body[pos : pos + 7]), callsign(body[pos + 7 : pos + 14])
        pos += 14
    return row, pos


def records(data):
    """The JSON objects of a records/1 body's frames; ValueError when it is not one."""
    at = 0
    while at < len(data):
        length, crc = struct.unpack_from(">II", data, at)
        body = data[at + 8 : at + 8 + length]
        if len(body) != length or zlib.crc32(body) != crc:
            raise ValueError(f"record at byte {at}: cut short or CRC mismatch")
        rtype, kind, priority, source, received, count = struct.unpack_from(">BBBIQI", body)
        if rtype not in (4, 6):
            raise ValueError(f"record at byte {at}: type {rtype}, not FRAMES")
        pos, names = 19, []
        for _ in range(2 if rtype == 6 else 0):
            names.append(body[pos + 1 : pos + 1 + body[pos]].decode())
            pos += 1 + body[pos]
        for _ in range(count):
            sequence, size = struct.unpack_from(">QI", body, pos)
            row, pos = reception(body, pos + 12, names) if rtype == 6 else ({}, pos + 12)
            row.update(
                received=rfc3339(received),
                kind=KINDS[kind],
                source=source,
                sequence=sequence,
                priority=PRIORITIES[priority],
                payload=base64.b64encode(body[pos : pos + size]).decode(),
            )
            pos += size
            yield row
        at += 8 + length


def frames(msg):
    """The JSON objects of one message's frames; KeyError or ValueError when it holds none."""
    headers = msg.headers or {}
    layout = headers.get("Aggregator-Layout")
    if layout is None:
        return [frame(msg, headers)]
    if layout not in ("records/1", "records/2"):
        raise ValueError(f"layout {layout!r}")
    data, compression = msg.data, headers.get("Aggregator-Compression")
    if compression is not None:
        if layout != "records/2" or compression != "zstd":
            raise ValueError(f"Aggregator-Compression {compression!r} in layout {layout}")
        import zstandard  # only for compressed bodies: pip install zstandard

        try:
            size = zstandard.frame_content_size(data)
            if size < 0:
                raise ValueError("body: a zstd frame without its size")
            if size > 64 << 20:
                raise ValueError(f"body: a zstd frame of {size} bytes unpacked")
            unpacker = zstandard.ZstdDecompressor().decompressobj()
            data = unpacker.decompress(data)
            if not unpacker.eof or unpacker.unused_data or len(data) != size:
                raise ValueError("body: not one whole zstd frame and nothing after it")
        except zstandard.ZstdError as why:
            raise ValueError(f"body: {why}") from why
    rows = list(records(data))
    if len(rows) != int(headers["Aggregator-Frames"]):
        raise ValueError(f"{len(rows)} frames, where Aggregator-Frames says {headers['Aggregator-Frames']}")
    for row in rows:
        row.update(site=headers.get("Aggregator-Site"), stream_sequence=msg.metadata.sequence.stream)
    return rows


def frame(msg, headers):
    """The JSON object of a frame/1 message; KeyError or ValueError when it is no frame."""
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
                rows = frames(msg)
            except (KeyError, ValueError, struct.error) as why:
                print(f"stream sequence {at}: not a frame: {why}", file=sys.stderr)
                continue
            for row in rows:
                print(json.dumps(row, sort_keys=True, separators=(",", ":"), ensure_ascii=False))
    await sub.unsubscribe()
    await nc.close()


if __name__ == "__main__":
    sys.stdout.reconfigure(encoding="utf-8")
    asyncio.run(main(*sys.argv[1:4]))
