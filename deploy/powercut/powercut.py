#!/usr/bin/env python3
"""The power-cut harness behind deploy/powercut/run.sh (standard library only).

The daemon runs in a qemu VM booted from the image of image.sh, its archive on a second virtual
disk written through (cache=none), its ports forwarded to host loopback. For each cut:

  1. boot the VM; wait for the daemon's /healthz through the forwarded monitor port;
  2. check: every source connects once (uplink-sim --frames 1 --ack-log): its WELCOME's
     resume_after must be at or above the last ACK it received before the cut (each acknowledged
     frame it lacks is counted lost);
  3. verify: over the second serial port, the guest's init stops the daemon (a clean drain, after
     the start that recovered from the cut), runs `aggregator archive verify --strict` and starts
     it again; any duplicate, gap or damage fails the cut;
  4. load: 48 sources saturate the daemon (uplink-sim --scenario saturate --ack-log), every ACK
     recorded; after a random time the VM is killed (kill -9 qemu): a power cut.

After the last cut one more boot runs steps 1-3. Exit status 0 when nothing acknowledged was lost or
duplicated (or, with --expect-loss, when a loss was found), 1 otherwise, 2 on a usage or set-up
error.

With --retention-mib N the guest's archive is bounded ([archive.retention] max_bytes = "N MiB"):
with small segments (--segment-mib) retention deletes the oldest segments all through the load,
and each cut, after its random load, waits for retention's next deletion (the daemon's /stats,
polled) and lands within 2 s of it, however slow the host (the summary counts the cuts whose
window saw a deletion). What retention deleted is read from the archive itself: each
shard's RETENTION file, dumped by the guest's verify script. An acknowledged frame it names deleted
is excused; every other acknowledged frame must be in the archive: none below a source's first
retained sequence, none above its last, no gap between (verify does not call deleted sequences
gaps), none stored twice (retention.py).

With --backfill RECORDING --backfill-link TOML the recording is uploaded into that link's spool
(a disk of its own) at the first boot, cut 1 comes as the upload is answered, the later ones while
it is imported; then it must be in done/ and its packets in the archive once (backfill.py).
"""

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import backfill
from retention import judge_retained, read_retention

GUEST_UPLINK, GUEST_REPLAY, GUEST_MONITOR = 7700, 7701, 7780
AGGREGATOR_PORTS = {"uplink": GUEST_UPLINK, "replay": GUEST_REPLAY, "monitor": GUEST_MONITOR}
# nats-server's client port and its monitoring port (/healthz).
JETSTREAM_PORTS = {"client": 4222, "monitor": 8222}
SOURCES = 48
# With --retention-mib, each cut waits for retention's next deletion (the daemon's /stats, read
# every PROBE_EVERY_S for at most PROBE_WAIT_S) and lands at a random moment in the CUT_WINDOW_S
# after the last read that had not seen it.
PROBE_EVERY_S, PROBE_WAIT_S, CUT_WINDOW_S = 0.2, 600.0, 2.0


def cut_under_load(guest, load, rng, args, out_path, what, probe=None):
    """Lets `load` run for a random time (--load-min to --load-max seconds), cuts the guest's power
    under it, and waits for the load to give up; returns how long it ran before the cut. With
    `probe` (returning a count that grows), the cut then waits for the count to grow (polled every
    PROBE_EVERY_S, for at most PROBE_WAIT_S) and lands at a random moment in the CUT_WINDOW_S after
    the last probe that had not seen it grow; returns that probe's answer and one just before the
    cut too."""
    load_for = rng.uniform(args.load_min, args.load_max)
    started = time.monotonic()

    def run_until(at):
        try:
            load.wait(timeout=max(0.0, at - time.monotonic()))
            raise RuntimeError(f"the load ended before the cut:\n{Path(out_path).read_text(errors='replace')[-2000:]}")
        except subprocess.TimeoutExpired:
            pass

    run_until(started + load_for)
    probed = []
    if probe:
        before = probe()
        give_up = time.monotonic() + PROBE_WAIT_S
        while time.monotonic() < give_up:
            run_until(time.monotonic() + PROBE_EVERY_S)
            now = probe()
            if None not in (before[1], now[1]) and now[1] > before[1]:
                break
            before = now
        run_until(before[0] + rng.uniform(PROBE_EVERY_S, CUT_WINDOW_S))
        probed = [before, probe()]
    guest.cut()
    cut_load_s = time.monotonic() - started
    try:
        load.wait(timeout=120)
    except subprocess.TimeoutExpired:
        load.kill()
        raise RuntimeError(f"{what} did not end within 120 s of the cut")
    return (cut_load_s, probed) if probe else cut_load_s


class ServiceDied(RuntimeError):
    """The daemon in the guest ended by itself before it was ready (the console says why)."""


def fail_run(guest, err):
    """A run that failed: cuts the guest it left running; a failure of the harness itself
    (RuntimeError) ends the run with status 2, anything else goes on up."""
    if guest:
        guest.cut()
    if isinstance(err, RuntimeError):
        print(f"powercut: FAILED to run: {err}", file=sys.stderr)
        sys.exit(2)
    raise err

def fail_setup(message):
    print(f"powercut: {message}", file=sys.stderr)
    sys.exit(2)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(port, path, timeout=2.0):
    """The monitor's answer to GET `path` as (status line, body), or None when nothing (or not the
    daemon) answers."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.settimeout(timeout)
            s.sendall(f"GET {path} HTTP/1.1\r\nHost: powercut\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    if not data:
        return None
    # The monitor answers with a Content-Length and closes: the body is the rest.
    head, _, body = data.partition(b"\r\n\r\n")
    return head.split(b"\r\n", 1)[0].decode(errors="replace"), body


def healthz(port, timeout=2.0):
    """The monitor's /healthz status line, or None when nothing (or not the daemon) answers."""
    answer = http_get(port, "/healthz", timeout)
    return answer[0] if answer else None


def deleted_segments_now(port):
    """Segments retention has deleted over the archive's life, as the daemon's /stats says (from
    retention's last check: every segment roll and check_interval_ms); None without an answer."""
    answer = http_get(port, "/stats", timeout=5.0)
    if not answer or " 200 " not in answer[0] + " ":
        return None
    try:
        return int(json.loads(answer[1])["stats"]["retention_deleted_segments"])
    except (ValueError, KeyError, TypeError):
        return None


class Guest:
    """One boot of the VM."""

    def __init__(self, args, image, work, data_imgs, boot_no, forwards):
        """`data_imgs`: the data disk, and any more (/dev/vdb, /dev/vdc, ...), all written through.
        `forwards`: name -> guest port; each gets a free host loopback port (self.ports)."""
        self.args = args
        self.work = work
        self.console = work / f"console-{boot_no:03}.log"
        self.ctl_path = work / "ctl.sock"
        if self.ctl_path.exists():
            self.ctl_path.unlink()
        self.ports = {name: free_port() for name in forwards}
        fwd = ",".join(f"hostfwd=tcp:127.0.0.1:{self.ports[name]}-:{guest}" for name, guest in forwards.items())
        accel = args.accel if args.accel != "tcg" else "tcg,thread=multi"
        cmd = [
            args.qemu, "-accel", accel, "-m", str(args.mem), "-smp", str(args.smp),
            "-display", "none", "-no-reboot", "-nodefaults",
            "-kernel", str(image / "vmlinuz"), "-initrd", str(image / "initrd.img"),
            "-append", "root=/dev/vda ro console=ttyS0 quiet loglevel=4 mitigations=off init=/usr/local/sbin/powercut-init",
            "-drive", f"file={image / 'root.img'},if=virtio,format=raw,snapshot=on",
            *[arg for img in data_imgs for arg in ("-drive", f"file={img},if=virtio,format=raw,cache=none,aio=threads")],
            "-netdev", f"user,id=n0,{fwd}", "-device", "virtio-net-pci,netdev=n0",
            "-serial", f"file:{self.console}",
            "-serial", f"unix:{self.ctl_path},server=on,wait=off",
        ]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=open(work / f"qemu-{boot_no:03}.err", "w"))
        self.ctl = None
        self.buf = b""

    def alive(self):
        return self.proc.poll() is None

    def console_tail(self, lines=15):
        try:
            return "\n".join(self.console.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def wait_ready(self, deadline_s):
        """Waits for the daemon's /healthz to answer 200 (ready) through the forwarded port."""
        deadline = time.monotonic() + deadline_s
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"qemu exited ({self.proc.returncode}) before the daemon was ready:\n{self.console_tail()}")
            if "service died:" in self.console_tail():
                raise ServiceDied(f"the daemon stopped before it was ready:\n{self.console_tail()}")
            line = healthz(self.ports["monitor"])
            if line and " 200 " in line + " ":
                return time.monotonic() - self.started
            time.sleep(0.25)
        raise RuntimeError(f"the daemon was not ready within {deadline_s} s:\n{self.console_tail()}")

    def command(self, cmd, deadline_s):
        """Sends one command to the guest's init over the second serial port; its one-line answer."""
        deadline = time.monotonic() + deadline_s
        while self.ctl is None:
            try:
                self.ctl = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.ctl.connect(str(self.ctl_path))
            except OSError:
                self.ctl = None
                if time.monotonic() > deadline:
                    raise RuntimeError("cannot connect to the guest's control port")
                time.sleep(0.1)
        self.ctl.sendall(cmd.encode() + b"\n")
        return self.read_line(deadline, cmd)

    def read_line(self, deadline, what):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0 or not self.alive():
                raise RuntimeError(f"no answer to {what!r} from the guest:\n{self.console_tail()}")
            self.ctl.settimeout(left)
            try:
                chunk = self.ctl.recv(65536)
            except socket.timeout:
                continue
            if not chunk:
                raise RuntimeError(f"the guest's control port closed:\n{self.console_tail()}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode(errors="replace").strip()

    def verify(self, deadline_s=600):
        """Stops the service, verifies its archive, starts it again: (exit status, report lines)."""
        deadline = time.monotonic() + deadline_s
        answer = self.command("verify", deadline_s)
        m = re.match(r"verify exit=(\d+) lines=(\d+)$", answer)
        if not m:
            raise RuntimeError(f"unexpected answer to verify: {answer!r}")
        lines = [self.read_line(deadline, "verify") for _ in range(int(m.group(2)))]
        return int(m.group(1)), lines

    def cut(self):
        """The power cut: SIGKILL to qemu, nothing flushed."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        if self.ctl:
            self.ctl.close()

    def poweroff(self):
        try:
            self.command("poweroff", 120)
            self.proc.wait(timeout=60)
        except (RuntimeError, subprocess.TimeoutExpired):
            self.cut()


class Ledger:
    """Each source's highest acknowledged sequence, from the --ack-log files in order."""

    def __init__(self):
        self.acked = {}

    def read(self, path):
        """Applies one ack log; returns (frames lost, sources whose WELCOME was below their ACK)."""
        lost, short = 0, []
        for line in Path(path).read_text().splitlines():
            parts = line.split()
            if len(parts) != 4:
                continue
            what, kind, ident, value = parts
            key = (kind, int(ident))
            if what == "ack":
                self.acked[key] = max(self.acked.get(key, -1), int(value))
            elif what == "welcome":
                resume = -1 if value == "-" else int(value)
                last = self.acked.get(key, -1)
                if resume < last:
                    lost += last - resume
                    short.append(f"{kind} {ident}: acked {last}, resume_after {value}")
                    # The source now numbers its frames after resume_after: its ledger starts there.
                    self.acked[key] = resume
        return lost, short


SOURCE_LINE = re.compile(r"^source (\w+) (\d+): .*?\blast=(\d+)\b.*?\bduplicates=(\d+)(?:.*?\bgaps=\[([^\]]*)\])?")


def judge_archive(lines, ledger):
    """What `aggregator archive verify` says, judged against the ACKs: a gap at or below a source's
    last ACK is an acknowledged frame missing from the archive; a gap above it holds frames never
    acknowledged (emergencies stored from their journal above routine frames the cut lost), which
    the source sends again. Returns a dict of counts and the highest stored sequence per source."""
    out = dict(total="", acked_missing=0, unacked_gaps=0, duplicates=0, problems=0, bad=[], last={})
    for line in lines:
        if line.startswith("verify total:"):
            out["total"] = line
            out["problems"] = field(line, "problems") + field(line, "damaged")
            out["duplicates"] = field(line, "duplicates")
        m = SOURCE_LINE.match(line)
        if not m:
            continue
        kind, ident, last, dups, gaps = m.group(1), int(m.group(2)), int(m.group(3)), int(m.group(4)), m.group(5)
        out["last"][(kind, ident)] = last
        acked = ledger.acked.get((kind, ident), -1)
        for part in (gaps or "").split(","):
            part = part.strip()
            if not part:
                continue
            lo, _, hi = part.partition("..=")
            lo, hi = int(lo), int(hi or lo)
            below = max(0, min(hi, acked) - lo + 1)
            out["acked_missing"] += below
            out["unacked_gaps"] += (hi - lo + 1) - below
            if below:
                out["bad"].append(f"{kind} {ident}: acked up to {acked}, archive lacks {lo}..={min(hi, acked)}")
        if "more gaps" in line and gaps and int(gaps.split(",")[-1].strip().split("..=")[-1]) < acked:
            out["bad"].append(f"{kind} {ident}: more gaps than verify lists, some may be at or below {acked}")
            out["acked_missing"] += 1
        if dups:
            out["bad"].append(f"{kind} {ident}: {dups} duplicates")
    return out


def sim(args, guest, log_path, extra, out_path):
    cmd = [
        str(args.bin / "uplink-sim"), "--scenario", "saturate", "--uplinks", str(SOURCES), "--replays", "0",
        "--uplink", f"127.0.0.1:{guest.ports['uplink']}", "--replay", f"127.0.0.1:{guest.ports['replay']}",
        "--ack-log", str(log_path), "--progress", "off", "--seed", str(args.seed),
        # A TCG guest can be slow to accept: an attempt abandoned early is still open in the daemon.
        "--connect-timeout-ms", "20000", *extra,
    ]
    return subprocess.Popen(cmd, stdout=open(out_path, "w"), stderr=subprocess.STDOUT)


def sim_settled(args, guest, ledger, name, extra, timeout):
    """Runs uplink-sim to its end, its ack log applied to `ledger`. A source refused with
    DuplicateSource (a connection attempt the simulator abandoned as too slow, which the daemon
    still holds until it sees it closed) is run again, up to 5 times: the WELCOMEs and ACKs of
    every attempt count. Returns the frames lost (WELCOME below the last ACK) and the lines."""
    work = args.work.resolve()
    lost, short = 0, []
    for attempt in range(1, 6):
        log, out = work / f"{name}-{attempt}.acks", work / f"{name}-{attempt}.out"
        s = sim(args, guest, log, extra + ["--give-up-after", "60"], out)
        status = s.wait(timeout=timeout)
        more_lost, more_short = ledger.read(log)
        lost, short = lost + more_lost, short + more_short
        text = Path(out).read_text(errors="replace")
        if status == 0:
            return lost, short
        if "DuplicateSource" not in text:
            break
        time.sleep(1)
    raise RuntimeError(f"uplink-sim ({name}) failed:\n{text[-2000:]}")


def sim_total(out_path):
    text = Path(out_path).read_text(errors="replace")
    m = re.search(r"sim total: .*", text)
    return m.group(0) if m else ""


def field(line, name):
    m = re.search(rf"\b{name}=(\d+)", line)
    return int(m.group(1)) if m else 0


def script(path, body):
    path.write_text("#!/bin/sh\n# Written by deploy/powercut/powercut.py for the guest.\ncd /data\n" + body)
    path.chmod(0o755)


def make_disk(args, work, stage):
    img = work / "data.img"
    if img.exists():
        img.unlink()
    subprocess.run(
        ["mkfs.ext4", "-q", "-F", "-L", "powercut-data", "-N", "4096",
         "-E", "lazy_itable_init=0,lazy_journal_init=0", "-d", str(stage), str(img), f"{args.disk_gib}G"],
        check=True, stdout=subprocess.DEVNULL,
    )
    return img


def make_jetstream_disk(args, work):
    stage = work / "data-stage"
    shutil.rmtree(stage, ignore_errors=True)
    (stage / "js").mkdir(parents=True)
    shutil.copy2(args.nats_server, stage / "nats-server")
    sync = "  sync_interval: always\n" if args.jetstream_sync == "always" else ""
    (stage / "nats.conf").write_text(
        f"# Written by deploy/powercut/powercut.py for the guest.\nlisten: 0.0.0.0:{JETSTREAM_PORTS['client']}\n"
        f"http: 0.0.0.0:{JETSTREAM_PORTS['monitor']}\njetstream {{\n  store_dir: /data/js\n{sync}}}\n"
    )
    script(stage / "service", "exec ./nats-server -c nats.conf\n")
    script(stage / "verify", "echo 'verify total: none for nats-server'\n")
    return make_disk(args, work, stage)


def make_data_disk(args, work):
    stage = work / "data-stage"
    shutil.rmtree(stage, ignore_errors=True)
    if args.seed_archive:
        # An archive an earlier build wrote: the first start is the upgrade the cuts hit.
        shutil.copytree(args.seed_archive, stage / "archive")
    else:
        (stage / "archive").mkdir(parents=True)
    shutil.copy2(args.bin / "aggregator", stage / "aggregator")
    # Without its debug information the binary loads faster from the emulated disk.
    if shutil.which("strip"):
        subprocess.run(["strip", str(stage / "aggregator")], check=True)
    (stage / "aggregator.toml").write_text(
        f"""# Written by deploy/powercut/powercut.py for the guest.
[uplink]
listen = "0.0.0.0:{GUEST_UPLINK}"
[replay]
listen = "0.0.0.0:{GUEST_REPLAY}"
[monitor]
enabled = true
listen = "0.0.0.0:{GUEST_MONITOR}"
[archive]
kind = "segments"
dir = "archive"
segment_bytes = {args.segment_mib * 1024 * 1024}
sync = "{args.sync}"
"""
        + (f'[archive.retention]\nmax_bytes = "{args.retention_mib}MiB"\n' if args.retention_mib else "")
        + (args.backfill.config() if args.backfill else "")
    )
    if args.backfill:
        args.backfill.stage(stage)
    script(stage / "service", (backfill.MOUNT if args.backfill else "") + "exec ./aggregator --config aggregator.toml\n")
    # The report on the console, its summary line last (the harness reads that one). Before it,
    # every source's line again under a name the guest's init does not leave out of the report
    # (it keeps only the sources with a gap or a duplicate), each shard's RETENTION file, and with
    # --backfill each file of the spool with its SHA-256.
    script(stage / "verify", "./aggregator archive verify --strict archive > /tmp/verify.out 2> /tmp/verify.err\n"
                             "status=$?\ncat /tmp/verify.err\n"
                             "sed -n 's/^source /archive-source /p' /tmp/verify.out\n"
                             "for f in archive/RETENTION archive/shard-*/RETENTION; do\n"
                             "    if [ -f \"$f\" ]; then echo \"retention-state $f $(gzip -c \"$f\" | base64 -w 0)\"; fi\n"
                             "done\n"
                             + (backfill.VERIFY_LINES if args.backfill else "")
                             + "cat /tmp/verify.out\nexit $status\n")
    return make_disk(args, work, stage)


def run_jetstream(args, rng, work, t0):
    """The same cuts against NATS JetStream (jetstream.py): acknowledged messages lost per cut."""
    data_img = make_jetstream_disk(args, work)
    here = Path(__file__).resolve().parent
    state = work / "jetstream-state.json"
    if state.exists():
        state.unlink()
    print(f"powercut: target=jetstream sync_interval={args.jetstream_sync} cuts={args.cuts} seed={args.seed} "
          f"accel={args.accel} load={args.load_min:g}-{args.load_max:g}s work={work}", flush=True)
    totals = dict(acked=0, lost=0, load_s=0.0, boots=0, boot_s=0.0, cuts_with_loss=0)
    guest = None
    try:
        for boot in range(args.cuts + 1):
            guest = Guest(args, args.image, work, [data_img], boot, JETSTREAM_PORTS)
            boot_s = guest.wait_ready(args.boot_timeout)
            totals["boots"] += 1
            totals["boot_s"] += boot_s
            url = f"nats://127.0.0.1:{guest.ports['client']}"
            if boot > 0:
                out = subprocess.run([sys.executable, str(here / "jetstream.py"), "check", url, str(state)],
                                     capture_output=True, text=True, timeout=300)
                if out.returncode != 0:
                    raise RuntimeError(f"the JetStream check failed:\n{out.stdout}{out.stderr[-2000:]}")
                checked = json.loads(next(x for x in out.stdout.splitlines() if x.startswith("{")))
                totals["lost"] += checked["lost"]
                totals["cuts_with_loss"] += checked["lost"] > 0
                print(f"cut {boot}/{args.cuts}: load {cut_load_s:.1f} s, acked {cut_acked} messages "
                      f"({cut_acked / cut_load_s:.0f}/s); after reboot: acked messages lost {checked['lost']}, "
                      f"stream holds {checked['stored']}; boot to ready {boot_s:.1f} s", flush=True)
                for line in checked["short"][:3]:
                    print(f"  {line}", flush=True)
            if boot == args.cuts:
                break
            out_path = work / f"load-{boot + 1:03}.out"
            load = subprocess.Popen([sys.executable, str(here / "jetstream.py"), "load", url, str(state), "100000"],
                                    stdout=open(out_path, "w"), stderr=subprocess.STDOUT)
            # The clock to the cut starts once the publishers are connected and the stream exists.
            deadline = time.monotonic() + 120
            while "publishing" not in out_path.read_text(errors="replace"):
                if load.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the JetStream load did not start:\n{out_path.read_text(errors='replace')[-2000:]}")
                time.sleep(0.1)
            cut_load_s = cut_under_load(guest, load, rng, args, out_path, "the JetStream load")
            lines = out_path.read_text(errors="replace").strip().splitlines()
            try:
                cut_acked = json.loads(next(x for x in lines if x.startswith('{"acked"')))["acked"]
            except (StopIteration, ValueError, KeyError):
                raise RuntimeError(f"the JetStream load said nothing usable:\n{chr(10).join(lines[-20:])}")
            totals["acked"] += cut_acked
            totals["load_s"] += cut_load_s
        guest.poweroff()
        guest = None
    except BaseException as err:
        fail_run(guest, err)
    elapsed = time.monotonic() - t0
    rate = totals["acked"] / totals["load_s"] if totals["load_s"] else 0
    summary = (f"target=jetstream sync_interval={args.jetstream_sync} cuts={args.cuts} acknowledged={totals['acked']} "
               f"missing={totals['lost']} cuts_with_loss={totals['cuts_with_loss']} acked_per_s={rate:.0f} "
               f"boot_to_ready_s_mean={totals['boot_s'] / totals['boots']:.1f} elapsed_s={elapsed:.0f} seed={args.seed}")
    if args.expect_loss:
        ok = totals["lost"] > 0
        print(f"powercut: {'OK: loss found, as expected' if ok else 'FAILED: expected loss, found none'}: {summary}")
    else:
        ok = totals["lost"] == 0
        print(f"powercut: {'OK: no acknowledged message lost' if ok else 'FAILED: acknowledged messages lost'}: {summary}")
    return 0 if ok else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cuts", type=int, default=20)
    p.add_argument("--sync", choices=["interval", "batch", "never"], default="interval")
    p.add_argument("--expect-loss", action="store_true",
                   help="succeed only if some acknowledged frame is lost (shows the test can fail)")
    p.add_argument("--image", type=Path, required=True)
    p.add_argument("--bin", type=Path, required=True)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--load-min", type=float, default=3.0, help="shortest load before a cut (s)")
    p.add_argument("--load-max", type=float, default=12.0, help="longest load before a cut (s)")
    p.add_argument("--accel", default=os.environ.get("POWERCUT_ACCEL", "tcg"))
    p.add_argument("--qemu", default="qemu-system-x86_64")
    p.add_argument("--smp", type=int, default=2)
    p.add_argument("--mem", type=int, default=1024, help="MiB")
    p.add_argument("--disk-gib", type=int, default=16)
    p.add_argument("--segment-mib", type=int, default=16)
    p.add_argument("--retention-mib", type=int, default=0,
                   help="[archive.retention] max_bytes in MiB: retention deletes the oldest segments "
                        "all through the load (0: no retention)")
    p.add_argument("--seed-archive", type=Path, default=None,
                   help="start the guest's daemon on a copy of this archive (one an earlier build "
                        "wrote, tests/fixtures/archive-vN): the cuts hit its upgrade")
    p.add_argument("--boot-timeout", type=float, default=300)
    p.add_argument("--backfill", type=Path, default=None, metavar="RECORDING",
                   help="upload this recording into the --backfill-link's spool, cut amid its import (backfill.py)")
    p.add_argument("--backfill-link", type=Path, default=None, metavar="TOML",
                   help="with --backfill: the [[links]] table that imports it, without spool_dir")
    p.add_argument("--target", choices=["aggregator", "jetstream"], default="aggregator")
    p.add_argument("--jetstream-sync", choices=["default", "always"], default="default",
                   help="with --target jetstream: nats-server's jetstream.sync_interval (default: its 2 min)")
    p.add_argument("--nats-server", type=Path, help="with --target jetstream: the nats-server binary for the guest")
    args = p.parse_args()
    if args.cuts < 1:
        fail_setup("--cuts must be at least 1")
    if not 0 < args.load_min <= args.load_max:
        fail_setup("--load-min must be positive and at most --load-max")
    if args.retention_mib < 0:
        fail_setup("--retention-mib must be 0 (no retention) or more")
    # The daemon refuses a max_bytes below two segments per shard (a shard per guest CPU).
    if args.retention_mib and args.retention_mib < args.segment_mib * 2 * args.smp:
        fail_setup(f"--retention-mib must be at least --segment-mib x 2 x --smp (the shards): "
                   f"{args.segment_mib * 2 * args.smp}")
    if args.retention_mib and args.target != "aggregator":
        fail_setup("--retention-mib is for --target aggregator")
    if (args.backfill is None) != (args.backfill_link is None):
        fail_setup("--backfill and --backfill-link go together")
    if args.backfill:
        if args.target != "aggregator" or args.retention_mib or args.expect_loss or args.cuts < 2:
            fail_setup("--backfill is for --target aggregator, 2 cuts or more, without --retention-mib or "
                       "--expect-loss")
        try:
            args.backfill = backfill.Backfill(args.backfill, args.backfill_link)
        except (backfill.SetupError, OSError) as err:
            fail_setup(str(err))
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1, 1 << 31)
    rng = random.Random(args.seed)
    for f in ("vmlinuz", "initrd.img", "root.img"):
        if not (args.image / f).is_file():
            fail_setup(f"{args.image / f} is missing: build the image with deploy/powercut/image.sh")
    if args.target == "jetstream":
        if not args.nats_server or not os.access(args.nats_server, os.X_OK):
            fail_setup("--target jetstream needs --nats-server PATH (deploy/powercut/setup.sh --jetstream)")
        try:
            import nats  # noqa: F401
        except ImportError:
            fail_setup("--target jetstream needs the nats-py package: deploy/powercut/setup.sh --jetstream")
    for f in (("aggregator", "uplink-sim") if args.target == "aggregator" else ()):
        if not os.access(args.bin / f, os.X_OK):
            fail_setup(f"{args.bin / f} is missing: cargo build --release --bin aggregator --bin uplink-sim")
    if shutil.which(args.qemu) is None:
        fail_setup(f"{args.qemu} is missing: run deploy/powercut/setup.sh")
    args.work.mkdir(parents=True, exist_ok=True)
    work = args.work.resolve()
    t0 = time.monotonic()
    if args.target == "jetstream":
        return run_jetstream(args, rng, work, t0)
    data_imgs = [make_data_disk(args, work)] + ([args.backfill.make_disk(work)] if args.backfill else [])
    retention = f"retention={args.retention_mib}MiB " if args.retention_mib else ""
    print(f"powercut: sync={args.sync} cuts={args.cuts} segment={args.segment_mib}MiB {retention}seed={args.seed} "
          f"accel={args.accel} load={args.load_min:g}-{args.load_max:g}s work={work}", flush=True)
    if args.backfill:
        print(f"powercut: backfill {args.backfill.recording} ({args.backfill.size} bytes) into link "
              f"{args.backfill.link}'s spool; each cut while it is imported", flush=True)

    ledger = Ledger()
    backfill_fields, backfill_problems, finished = "", [], {}

    def load_source(key):
        """Whether an archive source is one of the load's, not one of the backfill link's."""
        return key in ledger.acked or (key[0] == "live" and key[1] < SOURCES)

    totals = dict(acked=0, lost=0, archive_missing=0, duplicated=0, damaged=0, load_s=0.0, boots=0, boot_s=0.0,
                  segments_deleted=0, frames_deleted=0, excused=0, inside=0, cuts_amid_deletions=0)
    dup_before = 0
    final_strict = None
    guest = None

    def check(boot, guest):
        """Steps 2 and 3 after a cut: WELCOMEs against the last ACKs, then the archive."""
        nonlocal dup_before
        lost, short = sim_settled(args, guest, ledger, f"check-{boot:03}", ["--frames", "1", "--rate", "max"], 300)
        vexit, lines = guest.verify()
        judged = judge_archive(lines, ledger)
        if not judged["total"]:
            raise RuntimeError("verify printed no summary:\n" + "\n".join(lines[-20:]))
        deleted = read_retention(lines)
        kept = judge_retained(lines, ledger, deleted)
        judged["last"].update(kept["last"])
        judged["acked_missing"] += kept["missing"]
        judged["problems"] += len(deleted["bad"])
        judged["bad"] += deleted["bad"] + kept["bad"]
        judged["deleted_segments"] = deleted["segments"] - totals["segments_deleted"]
        judged["excused"], judged["inside"] = kept["excused"], kept["inside"]
        totals.update(segments_deleted=deleted["segments"], excused=kept["excused"], inside=kept["inside"])
        dup_cut, dup_before = judged["duplicates"] - dup_before, judged["duplicates"]
        totals["lost"] += lost
        totals["archive_missing"] += judged["acked_missing"]
        totals["duplicated"] += dup_cut
        totals["damaged"] += judged["problems"]
        guest.wait_ready(120)
        return lost, short, judged, dup_cut, vexit

    try:
        for boot in range(args.cuts + 1):
            guest = Guest(args, args.image, work, data_imgs, boot, AGGREGATOR_PORTS)
            try:
                boot_s = guest.wait_ready(args.boot_timeout)
            except ServiceDied as died:
                # Without syncs the page cache reaches the disk in any order: a cut can leave zeros
                # in the middle of the newest segment, which the start refuses as damage (an
                # operator runs `archive repair`). That is acknowledged frames lost, as expected.
                if not (args.expect_loss and boot > 0 and "corrupt record" in str(died)):
                    raise
                print(f"cut {boot}/{args.cuts}: the daemon refused to start on the damage the cut "
                      f"left (sync={args.sync}):\n{guest.console_tail(3)}", flush=True)
                guest.cut()
                print(f"powercut: OK: loss found, as expected with sync={args.sync}: the start "
                      f"refused the damaged archive: cuts={boot} acknowledged={totals['acked']} "
                      f"refused_start=1 seed={args.seed}")
                return 0
            totals["boots"] += 1
            totals["boot_s"] += boot_s
            if boot > 0 and args.backfill and boot < args.cuts:
                # The import started with the daemon: the next cut comes before a check could end
                # it. The load's WELCOMEs are checked against the ACKs all the same, the archive
                # after the last cut.
                print(f"cut {boot}/{args.cuts}: load {cut_load_s:.1f} s, acked {cut_acked} frames; the "
                      f"archive is checked after the last cut; boot to ready {boot_s:.1f} s", flush=True)
                print(f"  backfill: {args.backfill.cuts[-1]}", flush=True)
            elif boot > 0:
                if args.backfill:
                    finished = args.backfill.wait_imported(guest)
                    print(f"backfill: after the last cut, {args.backfill.name} is {finished['state']} "
                          f"{time.monotonic() - guest.started:.1f} s after the boot: "
                          f"{json.dumps(finished.get('imported'))}", flush=True)
                lost, short, judged, dup_cut, vexit = check(boot, guest)
                print(f"cut {boot}/{args.cuts}: load {cut_load_s:.1f} s, acked {cut_acked} frames "
                      f"({cut_acked / cut_load_s:.0f}/s); after reboot: lost {lost} (WELCOME below last ACK), "
                      f"acked but not in archive {judged['acked_missing']}, duplicated {dup_cut}, "
                      f"damaged {judged['problems']}; unacked gaps {judged['unacked_gaps']} (resent later); "
                      f"boot to ready {boot_s:.1f} s", flush=True)
                if args.retention_mib:
                    in_window = "?" if None in probed else probed[1] - probed[0]
                    print(f"  retention: {judged['deleted_segments']} segments deleted since the last check, "
                          f"{in_window} of them in the {window_s:.1f} s before the cut; acked frames it has deleted "
                          f"(excused) {judged['excused']}, {judged['inside']} of them inside what their source "
                          f"keeps", flush=True)
                if args.backfill:
                    print(f"  backfill: {args.backfill.cuts[-1]}", flush=True)
                for line in (short + judged["bad"])[:5]:
                    print(f"  {line}", flush=True)
                if len(short) + len(judged["bad"]) > 5:
                    print(f"  ... {len(short) + len(judged['bad']) - 5} more", flush=True)
            if boot == args.cuts:
                # Every source sends past the highest sequence stored, filling the gaps left above
                # its last ACK; then the whole archive must be each source's 0..=last exactly once.
                need = max([last - ledger.acked.get(key, -1) for key, last in judged["last"].items()
                            if load_source(key)] + [1])
                sim_settled(args, guest, ledger, "fill", ["--frames", str(need), "--rate", "max"], 600)
                final_strict, lines = guest.verify()
                final_total = next((x for x in lines if x.startswith("verify total:")), "")
                totals["segments_deleted"] = read_retention(lines)["segments"]
                totals["frames_deleted"] = field(final_total, "pruned")
                print(f"final: after {need} more frames per source, aggregator archive verify --strict "
                      f"exit={final_strict}: {final_total}", flush=True)
                for line in [x for x in lines[:-1] if not x.startswith(("archive-source ", "retention-state ",
                                                                            "spool-file "))][:5]:
                    print(f"  {line}", flush=True)
                if args.backfill:
                    backfill_fields, backfill_problems = args.backfill.judge(lines, load_source, finished)
                    print(f"backfill: {backfill_fields}", flush=True)
                    for line in backfill_problems:
                        print(f"  {line}", flush=True)
                break
            # 4. load, then the cut at a random moment.
            log = work / f"load-{boot + 1:03}.acks"
            out = work / f"load-{boot + 1:03}.out"
            s = sim(args, guest, log, ["--rate", "max", "--duration", "100000", "--give-up-after", "1"], out)
            if args.backfill and boot == 0:
                cut_load_s = args.backfill.cut_after_upload(guest, s)
            elif args.backfill:
                cut_load_s = args.backfill.cut_mid_import(guest, s, rng, out)
            elif args.retention_mib:
                # Retention's count of deleted segments shortly before the cut and at it.
                def probe(port=guest.ports["monitor"]):
                    return time.monotonic(), deleted_segments_now(port)

                cut_load_s, probed = cut_under_load(guest, s, rng, args, out, "uplink-sim", probe)
                window_s = probed[1][0] - probed[0][0]
                probed = [count for _, count in probed]
                totals["cuts_amid_deletions"] += None not in probed and probed[1] > probed[0]
            else:
                cut_load_s = cut_under_load(guest, s, rng, args, out, "uplink-sim")
            lost, short = ledger.read(log)
            totals["lost"] += lost
            for line in short[:5]:
                print(f"  {line}", flush=True)
            cut_acked = field(sim_total(out), "acked")
            totals["acked"] += cut_acked
            totals["load_s"] += cut_load_s
        guest.poweroff()
        guest = None
    except BaseException as err:
        fail_run(guest, err)

    elapsed = time.monotonic() - t0
    rate = totals["acked"] / totals["load_s"] if totals["load_s"] else 0
    missing = totals["lost"] + totals["archive_missing"]
    summary = (f"cuts={args.cuts} sync={args.sync} acknowledged={totals['acked']} missing={missing} "
               f"duplicated={totals['duplicated']} damaged={totals['damaged']} final_verify_exit={final_strict} "
               f"acked_per_s={rate:.0f} boot_to_ready_s_mean={totals['boot_s'] / totals['boots']:.1f} "
               f"elapsed_s={elapsed:.0f} seed={args.seed}")
    if args.retention_mib:
        # `excused` may pass `acknowledged` (the ACKs received under load): the check's frame
        # acknowledges what was stored but not yet acknowledged at the cut.
        summary += (f" retention_mib={args.retention_mib} segment_mib={args.segment_mib} "
                    f"segments_deleted={totals['segments_deleted']} frames_deleted={totals['frames_deleted']} "
                    f"excused={totals['excused']} excused_inside={totals['inside']} "
                    f"cuts_amid_deletions={totals['cuts_amid_deletions']}")
    if args.backfill:
        summary += f" {backfill_fields}"
    if args.expect_loss:
        if missing > 0:
            print(f"powercut: OK: loss found, as expected with sync={args.sync}: {summary}")
            return 0
        print(f"powercut: FAILED: expected acknowledged frames lost with sync={args.sync}, found none: {summary}")
        return 1
    if backfill_problems:
        print(f"powercut: FAILED: the recording was lost, stored twice or in part, or not done: {summary}")
        return 1
    if missing or totals["duplicated"] or totals["damaged"] or final_strict != 0:
        print(f"powercut: FAILED: acknowledged frames lost or duplicated, or the archive is damaged: {summary}")
        return 1
    print(f"powercut: OK: every acknowledged frame in the archive exactly once: {summary}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
