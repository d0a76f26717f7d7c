"""Checks the ground-segment test programs against each other, without the daemon: what each
sender sends is what its manifest says, as the third-party libraries read it back; read_tm.py
reads a TM stream (plain and with sync markers) and refuses a broken or overlong one; read_udp.py
reads datagrams and refuses one too many.

Each check starts the program under test as a child, plays the other end itself with
`spacepackets` (and kiss3's decoder for KISS), and compares manifests. Prints one line per check;
exits 1 at the first that fails, naming what differed.

    target/ground-venv/bin/python tests/ground/selftest.py
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading

from kiss.kiss import KISSDecode
from spacepackets.ccsds.spacepacket import PacketId, PacketType, parse_space_packets

import packets as pk

HERE = os.path.dirname(os.path.abspath(__file__))
TIMEOUT_S = 30.0


class Failed(Exception):
    pass


def program(name: str, *args: object) -> list[str]:
    return [sys.executable, os.path.join(HERE, name), *map(str, args)]


def manifest(packets: list[bytes]) -> list[dict]:
    return [pk.describe(p) for p in packets]


def read_manifest(path: str) -> list[dict]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def same(what: str, got: list[dict], want: list[dict]) -> None:
    if got == want:
        return
    for index, (g, w) in enumerate(zip(got, want)):
        if g != w:
            raise Failed(f"{what}: entry {index} is {g}, expected {w}")
    raise Failed(f"{what}: {len(got)} entries, expected {len(want)}")


def run(command: list[str]) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT_S)
    if done.returncode != 0:
        raise Failed(f"{command[1]} exited {done.returncode}: {done.stderr.strip()}")
    return done


def check_send_tcp(tmp: str) -> None:
    apids, count = [100, 101], 300
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = bytearray()

    def accept() -> None:
        conn, _ = listener.accept()
        with conn:
            while chunk := conn.recv(65536):
                received.extend(chunk)

    reader = threading.Thread(target=accept)
    reader.start()
    sent = os.path.join(tmp, "tcp.jsonl")
    run(program("send_tcp.py", "127.0.0.1", port, "--apids", "100,101", "--count", count,
                "--size", 64, "--manifest", sent))
    reader.join(TIMEOUT_S)
    listener.close()
    ids = [PacketId(PacketType.TM, False, apid) for apid in apids]
    result = parse_space_packets(bytes(received), ids)
    if result.skipped_ranges or result.scanned_bytes != len(received):
        raise Failed(f"send_tcp.py: stray bytes {result.skipped_ranges}, scanned"
                     f" {result.scanned_bytes} of {len(received)}")
    # parse_space_packets leaves a last packet of at most six bytes unparsed; ours are longer.
    same("send_tcp.py: received vs its manifest", manifest(result.tm_list), read_manifest(sent))
    same("send_tcp.py: its manifest vs the packet set", read_manifest(sent),
         manifest(pk.build_packets(apids, count, 64, 43)))


def check_send_udp(tmp: str) -> None:
    apids, count = [7, 2047], 200
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(TIMEOUT_S)
    port = receiver.getsockname()[1]
    sent = os.path.join(tmp, "udp.jsonl")
    run(program("send_udp.py", "127.0.0.1", port, "--apids", "7,2047", "--count", count,
                "--size", 100, "--rate", 0, "--manifest", sent))
    got = []
    for _ in range(len(apids) * count):
        datagram = receiver.recv(70000)
        ids = [PacketId(PacketType.TM, False, apid) for apid in apids]
        result = parse_space_packets(datagram, ids)
        if len(result.tm_list) != 1 or result.tm_list[0] != datagram:
            raise Failed(f"send_udp.py: a datagram is not one packet: {datagram.hex()}")
        got.append(pk.describe(datagram))
    receiver.close()
    same("send_udp.py: received vs its manifest", got, read_manifest(sent))


def check_kiss_server(tmp: str) -> None:
    count = 50
    sent = os.path.join(tmp, "kiss.jsonl")
    server = subprocess.Popen(program("kiss_server.py", 0, "--count", count, "--with-command",
                                      "--manifest", sent),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(server.stdout.readline())
        decoder = KISSDecode(strip_df_start=False)
        frames: list[bytes] = []
        raw = bytearray()
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT_S) as conn:
            while sum(1 for f in frames if f[0] & 0x0F == 0) < 2 * count:
                chunk = conn.recv(65536)
                if not chunk:
                    raise Failed("kiss_server.py closed the connection early")
                raw.extend(chunk)
                frames.extend(decoder.update(chunk))
        if server.wait(TIMEOUT_S) != 0:
            raise Failed(f"kiss_server.py exited {server.returncode}: {server.stderr.read()}")
        if frames[0] != b"\x01\x28":
            raise Failed(f"kiss_server.py: the first frame is {frames[0].hex()}, not TXDELAY 40")
        data = [f[1:] for f in frames if f[0] == 0]
        same("kiss_server.py: received vs its manifest", manifest(data), read_manifest(sent))
        if b"\xdb\xdc" not in raw or b"\xdb\xdd" not in raw:
            raise Failed("kiss_server.py: the stream escapes neither FEND nor FESC")
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()
        server.stdout.close()
        server.stderr.close()


def serve_once(payload: bytes) -> tuple[socket.socket, threading.Thread]:
    """A TM server stand-in: sends `payload` to its first client in uneven pieces, then closes."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        conn, _ = listener.accept()
        with conn:
            at, piece = 0, 1
            try:
                while at < len(payload):
                    conn.sendall(payload[at : at + piece])
                    at += piece
                    piece = piece * 3 % 1021 + 1
            except OSError:
                pass  # the reader stopped early: the cases that expect it check its exit
        listener.close()

    thread = threading.Thread(target=serve)
    thread.start()
    return listener, thread


def read_tm(payload: bytes, *args: object) -> subprocess.CompletedProcess:
    listener, thread = serve_once(payload)
    port = listener.getsockname()[1]
    done = subprocess.run(program("read_tm.py", "127.0.0.1", port, *args),
                          capture_output=True, text=True, timeout=TIMEOUT_S)
    thread.join(TIMEOUT_S)
    return done


def check_read_tm() -> None:
    packets = pk.build_packets([1, 2, 3], 40, 33, 5, pk.KISS_SPECIALS)
    want = manifest(packets)
    asm = bytes([0x1A, 0xCF, 0xFC, 0x1D])
    for name, payload, flags in [
        ("ccsds", b"".join(packets), []),
        ("ccsds-asm", b"".join(asm + p for p in packets), ["--asm"]),
    ]:
        done = read_tm(payload, "--expect", len(packets), "--to-eof", *flags)
        if done.returncode != 0:
            raise Failed(f"read_tm.py ({name}) exited {done.returncode}: {done.stderr.strip()}")
        got = [json.loads(line) for line in done.stdout.splitlines()]
        same(f"read_tm.py ({name}) vs the packet set", got, want)
    for name, payload, flags, why in [
        ("one too many", b"".join(packets), ["--to-eof"], "beyond those expected"),
        ("no marker", b"".join(packets), ["--asm"], "no sync marker"),
        ("cut short", b"".join(packets)[:-1], [], "closed the connection"),
    ]:
        done = read_tm(payload, "--expect", len(packets) - 1 if "many" in name else len(packets),
                       *flags)
        if done.returncode != 1 or why not in done.stderr:
            raise Failed(f"read_tm.py ({name}): exited {done.returncode}, {done.stderr.strip()!r};"
                         f" expected 1 and {why!r}")


def check_read_udp(tmp: str) -> None:
    for extra in (False, True):
        reader = subprocess.Popen(program("read_udp.py", "127.0.0.1", 0, "--expect", 60,
                                          "--until-stdin-closes"),
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        try:
            port = int(reader.stdout.readline())
            sent = os.path.join(tmp, "udp-forward.jsonl")
            run(program("send_udp.py", "127.0.0.1", port, "--apids", "5,6", "--count", 30,
                        "--manifest", sent))
            got = [json.loads(reader.stdout.readline()) for _ in range(60)]
            same("read_udp.py vs send_udp.py's manifest", got, read_manifest(sent))
            if extra:
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
                    again.sendto(pk.build_packets([5], 1, 64, 43)[0], ("127.0.0.1", port))
            reader.stdin.close()
            status = reader.wait(TIMEOUT_S)
            stderr = reader.stderr.read()
            if extra and (status != 1 or "beyond those expected" not in stderr):
                raise Failed(f"read_udp.py took a packet too many: exit {status}, {stderr!r}")
            if not extra and status != 0:
                raise Failed(f"read_udp.py exited {status}: {stderr}")
        finally:
            if reader.poll() is None:
                reader.kill()
            reader.wait()
            reader.stdout.close()
            reader.stderr.close()


def main() -> int:
    argparse.ArgumentParser(description=__doc__.split("\n\n")[0]).parse_args()
    checks = [
        ("send_tcp.py", check_send_tcp),
        ("send_udp.py", check_send_udp),
        ("kiss_server.py", check_kiss_server),
        ("read_tm.py", lambda _tmp: check_read_tm()),
        ("read_udp.py", check_read_udp),
    ]
    with tempfile.TemporaryDirectory(prefix="ground-selftest-") as tmp:
        for name, check in checks:
            try:
                check(tmp)
            except (Failed, subprocess.TimeoutExpired, OSError) as err:
                print(f"FAIL {name}: {err}", flush=True)
                return 1
            print(f"ok   {name}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
