"""What retention deleted, read from the archive's RETENTION files, for powercut.py --retention-mib
(standard library only): an acknowledged frame they name deleted is excused, every other one must
be in the archive.
"""

import base64
import gzip
import re
import struct
import zlib

# A shard's RETENTION file (docs/archive-format.md, "Retention"): its magic, and the source kinds'
# bytes as the ack logs name them.
RETENTION_MAGIC = b"TLMRET01"
SOURCE_KINDS = {0: "live", 1: "replay"}
KEPT_LINE = re.compile(r"^archive-source (\w+) (\d+): .*?\bfirst=(\d+|-) last=(\d+|-)")


def decode_retention(data):
    """A shard's RETENTION file: (segments deleted, their bytes, {source: [(first, last), ...]}), or
    None when it is not a whole file with a matching CRC."""
    body, crc = data[:-4], data[-4:]
    if len(data) < 48 or not body.startswith(RETENTION_MAGIC) or zlib.crc32(body) != int.from_bytes(crc, "big"):
        return None
    _, segments, deleted_bytes, _ = struct.unpack_from(">4Q", body, 8)
    (count,), at, sources = struct.unpack_from(">I", body, 40), 44, {}
    for _ in range(count):
        if at + 17 > len(body):
            return None
        kind, ident, _, runs = struct.unpack_from(">BIQI", body, at)
        at += 17
        if kind not in SOURCE_KINDS or at + 16 * runs > len(body):
            return None
        sources[(SOURCE_KINDS[kind], ident)] = [struct.unpack_from(">QQ", body, at + 16 * i) for i in range(runs)]
        at += 16 * runs
    return (segments, deleted_bytes, sources) if at == len(body) else None


def read_retention(lines):
    """What retention deleted, from the archive: the guest's verify script prints each shard's
    RETENTION file (`retention-state PATH BASE64-OF-GZIP`). Returns the segments and bytes deleted
    over the archive's life, each source's deleted sequences as sorted, merged runs, and the files
    that could not be read (a damaged state: a failure, never "nothing deleted")."""
    out = dict(segments=0, bytes=0, runs={}, bad=[])
    for line in lines:
        if not line.startswith("retention-state "):
            continue
        _, path, blob = (line.split(" ", 2) + [""])[:3]
        try:
            state = decode_retention(gzip.decompress(base64.b64decode(blob)))
        except (ValueError, OSError, EOFError):
            state = None
        if state is None:
            out["bad"].append(f"{path}: damaged retention state (bad length or CRC)")
            continue
        out["segments"] += state[0]
        out["bytes"] += state[1]
        for key, runs in state[2].items():
            out["runs"].setdefault(key, []).extend(runs)
    for key, runs in out["runs"].items():
        merged = []
        for lo, hi in sorted(runs):
            if merged and lo <= merged[-1][1] + 1:
                merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
            else:
                merged.append((lo, hi))
        out["runs"][key] = merged
    return out


def deleted_in(runs, lo, hi):
    """How many sequences of lo..=hi the sorted, merged `runs` hold."""
    return sum(max(0, min(b, hi) - max(a, lo) + 1) for a, b in runs) if lo <= hi else 0


def judge_retained(lines, ledger, retention):
    """Every acknowledged frame not deleted by retention must be in the archive. `verify` reports
    gaps only between the sequences a source still holds, leaving out those retention deleted, so
    this adds the two ends: an acknowledged frame below a source's first retained sequence (or of
    a source with none left) must be one RETENTION names deleted, and none may lie above its last
    stored one. An acknowledgement covers every sequence up to it, so the frames stored but not yet
    acknowledged at a cut count as acknowledged once the check's frame is. Returns the acknowledged
    frames missing at the ends, those excused (deleted), those of them inside what a source keeps
    (emergencies that went with their segment while routine frames of lower sequence stayed), a
    line per source with frames missing, and each source's last stored sequence."""
    out = dict(missing=0, excused=0, inside=0, bad=[], last={})
    kept = {}
    for line in lines:
        m = KEPT_LINE.match(line)
        if m:
            first, last = (None if v == "-" else int(v) for v in m.group(3, 4))
            kept[(m.group(1), int(m.group(2)))] = (first, last)
            if last is not None:
                out["last"][(m.group(1), int(m.group(2)))] = last
    for key, acked in sorted(ledger.acked.items()):
        if acked < 0:
            continue
        runs = retention["runs"].get(key, [])
        first, last = kept.get(key, (None, None))
        out["excused"] += deleted_in(runs, 0, acked)
        if first is None:
            below, above = acked + 1 - deleted_in(runs, 0, acked), 0
        else:
            below = first - deleted_in(runs, 0, first - 1) if acked >= first else acked + 1 - deleted_in(runs, 0, acked)
            above = acked - last - deleted_in(runs, last + 1, acked) if acked > last else 0
            out["inside"] += deleted_in(runs, first, acked)
        if below or above:
            out["missing"] += below + above
            out["bad"].append(f"{key[0]} {key[1]}: acked up to {acked}, archive keeps {first}..={last}: "
                              f"{below} below and {above} above it neither stored nor deleted by retention")
    return out
