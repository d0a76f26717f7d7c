"""Power cuts in the middle of a backfill (powercut.py --backfill RECORDING --backfill-link TOML).

The guest's daemon gets one more link, the [[links]] table of --backfill-link, with its spool
directory (`spool_dir = "spool"`) on a disk of its own, /dev/vdc, written through like the
archive's: nothing the archive syncs carries the spool's directory entries to the disk. At the
first boot, once the load runs, the recording is uploaded into that spool through the monitor
(`PUT /links/NAME/spool/FILE`, as `aggregator backfill` does), and the first cut comes as soon as
the upload is answered (201: the file is in the spool, synced). Every later cut lands while the
file is being imported: once that boot's import has read a random 30-70 % of it (`GET
/links/NAME/spool/FILE`, polled). After the last cut the import must end by itself, and then,
read from outside: the file is in `done/` with the bytes uploaded, nothing in `failed/` or left in
the spool, and each of the link's sources in the archive holds one frame per sequence from its
first to its last, as many frames as the import read packets, none twice, none unplaced; and the
import that finished found held what the cut imports had made durable before the cuts.
Standard library only.
"""

import hashlib
import http.client
import json
import re
import subprocess
import time
import tomllib
from pathlib import Path
from urllib.parse import quote

# Where the link's spool is, relative to the guest daemon's directory (the data disk's root).
SPOOL = "spool"
# The service script mounts the spool's disk before it starts the daemon (again after a verify).
MOUNT = f"mountpoint -q {SPOOL} || mount -t ext4 -o noatime /dev/vdc {SPOOL} || exit 1\n"
# How often the import's progress is read, and for how long at most.
PROBE_EVERY_S, PROBE_WAIT_S = 0.2, 600.0
# The guest's verify script lists every file of the spool with its SHA-256.
VERIFY_LINES = (
    f"for f in {SPOOL}/* {SPOOL}/.[!.]* {SPOOL}/done/* {SPOOL}/failed/*; do\n"
    '    if [ -f "$f" ]; then echo "spool-file $f $(sha256sum < "$f" | cut -c1-64)"; fi\n'
    "done\n"
)
SPOOL_LINE = re.compile(r"^spool-file (\S+) ([0-9a-f]{64})$")
SOURCE_LINE = re.compile(
    r"^archive-source (\w+) (\d+): frames=(\d+) .*?\bfirst=(\d+|-) last=(\d+|-) missing=(\d+) duplicates=(\d+)"
)


class SetupError(Exception):
    """The recording or its link cannot be used."""


class Backfill:
    """The recording, its link, and what its imports showed."""

    def __init__(self, recording, link_file):
        self.recording = Path(recording)
        if not self.recording.is_file():
            raise SetupError(f"--backfill {recording}: no such file")
        self.size = self.recording.stat().st_size
        if self.size == 0:
            raise SetupError(f"--backfill {recording}: an empty file")
        self.link_toml = Path(link_file).read_text()
        try:
            table = tomllib.loads(self.link_toml)
        except tomllib.TOMLDecodeError as err:
            raise SetupError(f"--backfill-link {link_file}: {err}")
        links = table.get("links")
        if set(table) != {"links"} or not isinstance(links, list) or len(links) != 1:
            raise SetupError(f"--backfill-link {link_file}: one [[links]] table, nothing else")
        if "spool_dir" in links[0]:
            raise SetupError(f"--backfill-link {link_file}: no spool_dir (the harness sets it)")
        self.link = links[0].get("name")
        if not isinstance(self.link, str):
            raise SetupError(f"--backfill-link {link_file}: the link has no name")
        with self.recording.open("rb") as f:
            self.sha256 = hashlib.file_digest(f, "sha256").hexdigest()
        self.name = None  # the name the upload took in the spool
        self.durable_at_cuts = 0  # what the cut imports counted stored (durable) just before each cut
        self.cuts = []  # where each cut found the file, in words

    def config(self):
        """The link's table for the guest's aggregator.toml, its spool on the data disk."""
        return self.link_toml.rstrip("\n") + f'\nspool_dir = "{SPOOL}"\n'

    def stage(self, stage):
        """The spool's mount point on the data disk."""
        (stage / SPOOL).mkdir()

    def make_disk(self, work):
        """The spool's disk: ext4, empty, with room for the recording."""
        img = work / "spool.img"
        if img.exists():
            img.unlink()
        size_mib = 64 + 3 * self.size // (1 << 20)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "powercut-spool", str(img), f"{size_mib}M"],
                       check=True, stdout=subprocess.DEVNULL)
        return img

    def cut_after_upload(self, guest, load):
        """Uploads the recording while the load runs and cuts the power as soon as the daemon has
        answered that the file is in the spool; returns how long the load ran."""
        started = time.monotonic()
        self.upload(guest.ports["monitor"])
        guest.cut()
        cut_load_s = time.monotonic() - started
        self.cuts.append(f"the cut came as the upload of {self.name} was answered ({self.size} bytes, "
                         f"{cut_load_s:.1f} s)")
        wait_load(load)
        return cut_load_s

    def upload(self, port, timeout=300):
        """Uploads the recording into the link's spool through the guest's monitor."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout, blocksize=1 << 20)
        try:
            with self.recording.open("rb") as body:
                conn.request("PUT", f"/links/{quote(self.link)}/spool/{quote(self.recording.name)}", body=body,
                             headers={"Content-Length": str(self.size)})
                answer = conn.getresponse()
                text = answer.read().decode(errors="replace")
        except OSError as err:
            raise RuntimeError(f"uploading {self.recording.name} into the spool: {err}")
        finally:
            conn.close()
        if answer.status != 201:
            raise RuntimeError(f"uploading {self.recording.name}: {answer.status} {text.strip()}")
        self.name = json.loads(text)["file"]

    def state(self, port):
        """Where the file stands (`GET /links/NAME/spool/FILE`): the answer's JSON, {"state":
        "lost"} when the daemon knows no such file, None when the daemon does not answer."""
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", f"/links/{quote(self.link)}/spool/{quote(self.name)}")
            answer = conn.getresponse()
            text = answer.read()
        except OSError:
            return None
        finally:
            conn.close()
        if answer.status == 404:
            return {"state": "lost"}
        try:
            return json.loads(text) if answer.status == 200 else None
        except ValueError:
            return None

    def cut_mid_import(self, guest, load, rng, out_path):
        """Cuts the guest's power once this boot's import has read a random 30-70 % of the file, the
        load running (or at once when the file is lost); returns how long the load ran."""
        at = rng.uniform(0.3, 0.7)
        started = time.monotonic()
        give_up = started + PROBE_WAIT_S
        while True:
            try:
                load.wait(timeout=PROBE_EVERY_S)
                raise RuntimeError(f"the load ended before the cut:\n{Path(out_path).read_text(errors='replace')[-2000:]}")
            except subprocess.TimeoutExpired:
                pass
            now = self.state(guest.ports["monitor"])
            if now and now["state"] == "lost":
                break
            if now and now["state"] not in ("waiting", "importing"):
                raise RuntimeError(f"{self.name} is {now['state']} before the cut: a longer recording, please "
                                   f"({json.dumps(now)})")
            imported = (now or {}).get("imported") or {}
            if imported.get("bytes", 0) >= at * self.size:
                break
            if time.monotonic() > give_up:
                raise RuntimeError(f"the import of {self.name} did not read {at:.0%} of it within {PROBE_WAIT_S:.0f} s: {now}")
        guest.cut()
        cut_load_s = time.monotonic() - started
        if now["state"] == "lost":
            self.cuts.append(f"{self.name} was not in the spool after the reboot: LOST")
        else:
            self.durable_at_cuts += imported["stored"]
            self.cuts.append(f"the cut came when the import had read {imported['bytes'] / self.size:.0%} of "
                             f"{self.name}: {imported['stored']} packets stored and durable, {imported['held']} held")
        wait_load(load)
        return cut_load_s

    def wait_imported(self, guest):
        """Waits for the file to leave the spool (done, failed, or lost); the last answer."""
        give_up = time.monotonic() + PROBE_WAIT_S
        while True:
            now = self.state(guest.ports["monitor"])
            if now and now["state"] not in ("waiting", "importing"):
                return now
            if time.monotonic() > give_up:
                return now or {"state": "stuck (the daemon did not answer)"}
            if not guest.alive():
                raise RuntimeError(f"qemu exited while the import ran:\n{guest.console_tail()}")
            time.sleep(PROBE_EVERY_S)

    def judge(self, lines, load_source, finished):
        """The final verify's lines, judged: the file's place and bytes, the link's sources in the
        archive against what the import that `finished` counted. Returns (summary fields, problems)."""
        files = {m.group(1): m.group(2) for m in map(SPOOL_LINE.match, lines) if m}
        imported = finished.get("imported") or {}
        done = f"{SPOOL}/done/{finished.get('moved_to') or self.name}"
        problems = []
        if finished.get("state") != "done":
            problems.append(f"{self.name}: {finished.get('state')}, not done: {json.dumps(finished)}")
        if done not in files:
            problems.append(f"{done} is not on the disk")
        elif files[done] != self.sha256:
            problems.append(f"{done} is not the file uploaded (SHA-256 {files[done]}, uploaded {self.sha256})")
        for path in sorted(set(files) - {done}):
            problems.append(f"{path}: {'failed' if path.startswith(SPOOL + '/failed/') else 'left'} in the spool")
        frames = duplicates = 0
        for m in map(SOURCE_LINE.match, lines):
            if not m or load_source((m.group(1), int(m.group(2)))):
                continue
            key = f"{m.group(1)} {m.group(2)}"
            count, dups = int(m.group(3)), int(m.group(7))
            frames, duplicates = frames + count, duplicates + dups
            span = 0 if m.group(4) == "-" else int(m.group(5)) - int(m.group(4)) + 1
            if dups:
                problems.append(f"source {key}: {dups} frames stored twice")
            if count - dups != span:
                problems.append(f"source {key}: {count - dups} sequences stored of {span} between its first and last")
        packets = imported.get("packets", 0)
        if frames - duplicates != packets:
            problems.append(f"the link's sources hold {frames - duplicates} sequences; the import read {packets} packets")
        if imported.get("unplaced", 0) or imported.get("damaged_ranges", 0):
            problems.append(f"the import left packets unplaced or found damage: {json.dumps(imported)}")
        if imported.get("held", 0) < self.durable_at_cuts:
            problems.append(f"the import that finished found {imported.get('held', 0)} packets held, below the "
                            f"{self.durable_at_cuts} the cut imports counted durable")
        fields = (f"backfill_packets={packets} backfill_frames={frames} backfill_duplicates={duplicates} "
                  f"backfill_done={int(done in files and files[done] == self.sha256)} "
                  f"backfill_failed={sum(p.startswith(SPOOL + '/failed/') for p in files)} "
                  f"backfill_durable_at_cuts={self.durable_at_cuts} backfill_held_after={imported.get('held', 0)} "
                  f"backfill_stored_after={imported.get('stored', 0)} backfill_problems={len(problems)}")
        return fields, problems


def wait_load(load):
    """Waits for the load to give up after a cut."""
    try:
        load.wait(timeout=120)
    except subprocess.TimeoutExpired:
        load.kill()
        raise RuntimeError("uplink-sim did not end within 120 s of the cut")
