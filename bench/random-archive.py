"""Writes an archive of incompressible payloads for timing `aggregator archive export`
(BENCHMARKS.md, "Archive export"): SHARDS shard directories of 64 MiB segments in the format of
docs/archive-format.md, FRAMES records of 64 frames of PAYLOAD random bytes each, sources 0..SOURCES-1
(live) round robin, received times from 2026-11-24T00:00:00Z, 1 us apart or spread evenly over
SPAN seconds. No segment index files: the first reader writes them (they are caches). For the
archive query benchmarks (`bench/src/bin/query-bench.rs`) the same file makes a day of 50 sources.

With --stations N it adds N ground stations' passes (docs/ground-segment.md): station S (link
`gs-S`, station `Station-S`, source live:1000000+S, in shard S mod SHARDS) has a pass every 90
minutes from minute 20 x S, 10 minutes long, a RECEIVED FRAMES record a second of 10 frames of
100 bytes, each with an earth-receive time 1.5 s before it was received (0.1 s apart).

    python3 bench/random-archive.py DIR [--mib 1024] [--payload 256] [--shards 2] \
        [--sources 16] [--span SECONDS] [--stations N]
"""

import argparse
import os
import struct
import zlib

MAGIC = b"TLMSEG04"
SEGMENT_BYTES = 64 << 20
FRAMES_PER_RECORD = 64
T0 = 1_795_478_400_000_000_000  # 2026-11-24T00:00:00Z


def main():
    args = argparse.ArgumentParser()
    args.add_argument("dir")
    args.add_argument("--mib", type=int, default=1024)
    args.add_argument("--payload", type=int, default=256)
    args.add_argument("--shards", type=int, default=2)
    args.add_argument("--sources", type=int, default=16)
    args.add_argument("--span", type=float, default=None)
    args.add_argument("--stations", type=int, default=0)
    a = args.parse_args()
    record_bytes = 8 + 19 + FRAMES_PER_RECORD * (12 + a.payload)
    records = max(1, (a.mib << 20) // record_bytes)
    step = 1000 if a.span is None else max(1, int(a.span * 1e9) // records)
    pool = os.urandom(1 << 24)
    per_shard = (a.mib << 20) // a.shards
    sequences = [0] * a.sources
    taken = 0
    for shard in range(a.shards):
        folder = a.dir if shard == 0 else os.path.join(a.dir, f"shard-{shard:02}")
        os.makedirs(folder, exist_ok=True)
        written, index, record = 0, 1, 0
        passes = station_records(a.stations, a.shards, shard)
        while written < per_shard:
            out = [MAGIC]
            size = len(MAGIC)
            while size < SEGMENT_BYTES - 64 * (a.payload + 12) - 64 and written + size < per_shard:
                at = T0 + (record * a.shards + shard) * step
                while passes and passes[-1][0] <= at:
                    station = received_frames(*passes.pop(), pool)
                    out.append(station)
                    size += len(station)
                source = (record * a.shards + shard) % a.sources
                body = [struct.pack(">BBBIQI", 4, 0, 0, source, at, FRAMES_PER_RECORD)]
                for _ in range(FRAMES_PER_RECORD):
                    start = taken % (len(pool) - a.payload)
                    taken += a.payload + 7
                    body.append(struct.pack(">QI", sequences[source], a.payload))
                    body.append(pool[start : start + a.payload])
                    sequences[source] += 1
                body = b"".join(body)
                out.append(struct.pack(">II", len(body), zlib.crc32(body)) + body)
                size += 8 + len(body)
                record += 1
            path = os.path.join(folder, f"segment-{index:020}.seg")
            with open(path, "wb") as f:
                f.write(b"".join(out))
            written += size
            index += 1
        # The stations' records past the last frame of the sources: a segment of their own.
        if passes:
            rest = [received_frames(*record, pool) for record in reversed(passes)]
            path = os.path.join(folder, f"segment-{index:020}.seg")
            with open(path, "wb") as f:
                f.write(MAGIC + b"".join(rest))


STATION_FRAMES = 10
STATION_PAYLOAD = 100


def station_records(stations, shards, shard):
    """The (received, station, first sequence) of each RECEIVED FRAMES record of the stations in
    `shard`, newest first (popped oldest first)."""
    records = []
    for station in range(stations):
        if station % shards != shard:
            continue
        sequence = 0
        for k in range(16):
            start = T0 + (k * 5400 + station * 1200) * 1_000_000_000
            for second in range(600):
                records.append((start + second * 1_000_000_000, station, sequence))
                sequence += STATION_FRAMES
    records.sort(reverse=True)
    return records


def received_frames(at, station, first, pool):
    """A RECEIVED FRAMES record (type 6) of station `station`'s frames from `first`."""
    link, name = f"gs-{station}".encode(), f"Station-{station}".encode()
    body = [struct.pack(">BBBIQI", 6, 0, 0, 1_000_000 + station, at, STATION_FRAMES)]
    body.append(struct.pack(">B", len(link)) + link + struct.pack(">B", len(name)) + name)
    for i in range(STATION_FRAMES):
        earth = at - 1_500_000_000 + i * 100_000_000
        body.append(struct.pack(">QIBQ", first + i, STATION_PAYLOAD, 1, earth))
        start = (at // 1000 + i * 7919) % (len(pool) - STATION_PAYLOAD)
        body.append(pool[start : start + STATION_PAYLOAD])
    body = b"".join(body)
    return struct.pack(">II", len(body), zlib.crc32(body)) + body


if __name__ == "__main__":
    main()
