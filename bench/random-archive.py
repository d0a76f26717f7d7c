"""Writes an archive of incompressible payloads for timing `aggregator archive export`
(BENCHMARKS.md, "Archive export"): SHARDS shard directories of 64 MiB segments in the format of
docs/archive-format.md, FRAMES records of 64 frames of PAYLOAD random bytes each, sources 0..SOURCES-1
(live) round robin, received times from 2026-11-24T00:00:00Z, 1 us apart or spread evenly over
SPAN seconds. No segment index files: the first reader writes them (they are caches). For the
archive query benchmarks (`bench/src/bin/query-bench.rs`) the same file makes a day of 50 sources.

    python3 bench/random-archive.py DIR [--mib 1024] [--payload 256] [--shards 2] \
        [--sources 16] [--span SECONDS]
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
        while written < per_shard:
            out = [MAGIC]
            size = len(MAGIC)
            while size < SEGMENT_BYTES - 64 * (a.payload + 12) - 64 and written + size < per_shard:
                at = T0 + (record * a.shards + shard) * step
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


if __name__ == "__main__":
    main()
