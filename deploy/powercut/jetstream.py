#!/usr/bin/env python3
"""The power-cut harness's JetStream side (powercut.py --target jetstream): NATS JetStream in the
same VM, on the same written-through disk, loaded by 48 publishers from the host.

Each publisher i publishes to pc.i messages numbered 0, 1, 2, ... (the number is the payload's
start), with up to 64 awaiting their PubAck (publish_async), all on one connection, and records
every number JetStream acknowledged.
After a cut and a reboot, the last message stored for pc.i is read back (get_last_msg): every
acknowledged number above it is an acknowledged message lost. The next load numbers after the
highest number either side has seen.

Runs as `python3 jetstream.py load URL STATE SECONDS` (the load; ends when the connection breaks)
and `python3 jetstream.py check URL STATE` (after a reboot), with the state in a JSON file. Needs
the nats-py package (PyPI `nats-py`; deploy/powercut/setup.sh --jetstream installs it).
"""

import asyncio
import json
import os
import sys
import time

import nats
from nats.js.errors import NotFoundError

STREAM = "POWERCUT"
PUBLISHERS = 48
# PubAcks each publisher awaits at once (POWERCUT_JS_WINDOW). With sync_interval always under TCG
# a deep queue holds the PubAcks back behind it: 4 lets them through.
WINDOW = int(os.environ.get("POWERCUT_JS_WINDOW", "64"))
PAYLOAD = 100


def load_state(path):
    try:
        with open(path) as f:
            return json.load(f)
    except FileNotFoundError:
        return {"next": [0] * PUBLISHERS, "acked": [[] for _ in range(PUBLISHERS)]}


def save_state(path, state):
    with open(path + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(path + ".tmp", path)


async def connect(url, closed=None):
    async def on_closed():
        if closed is not None:
            closed.set()

    async def on_error(err):
        pass  # a broken connection is the cut the harness made; it shows in the counts

    connecting = nats.connect(url, allow_reconnect=False, connect_timeout=5, max_reconnect_attempts=1,
                              closed_cb=on_closed, disconnected_cb=on_closed, error_cb=on_error)
    return await asyncio.wait_for(connecting, timeout=30)


async def load(url, path, seconds):
    state = load_state(path)
    closed = asyncio.Event()
    nc = await connect(url, closed)
    js = nc.jetstream(publish_async_max_pending=PUBLISHERS * WINDOW)
    try:
        await js.add_stream(name=STREAM, subjects=["pc.>"])
    except Exception:  # there already, after the first boot: the check below says if not
        await js.stream_info(STREAM)
    acked = [[] for _ in range(PUBLISHERS)]
    stop = time.monotonic() + seconds
    print("publishing", flush=True)  # the harness starts the clock to the cut here

    async def publisher(i):
        """Publishes with WINDOW messages awaiting their PubAck; records each one acknowledged."""
        subject = f"pc.{i}"
        window = asyncio.Semaphore(WINDOW)

        def done(future, n):
            window.release()
            if not future.cancelled() and future.exception() is None:
                acked[i].append(n)

        while not closed.is_set() and time.monotonic() < stop:
            try:
                await asyncio.wait_for(window.acquire(), timeout=0.5)
            except asyncio.TimeoutError:
                continue
            n = state["next"][i]
            state["next"][i] += 1
            try:
                future = await js.publish_async(subject, f"{n}:".encode().ljust(PAYLOAD, b"x"))
            except Exception:
                closed.set()
                return
            future.add_done_callback(lambda f, n=n: done(f, n))

    started = time.monotonic()
    await asyncio.gather(*(publisher(i) for i in range(PUBLISHERS)))
    elapsed = time.monotonic() - started
    broken = closed.is_set()
    try:
        await nc.close()
    except Exception:
        pass
    for i in range(PUBLISHERS):
        state["acked"][i].extend(acked[i])
    save_state(path, state)
    total = sum(len(a) for a in acked)
    print(json.dumps({"acked": total, "seconds": elapsed, "broken": broken}))


async def check(url, path):
    state = load_state(path)
    nc = await connect(url)
    js = nc.jetstream()
    lost, short = 0, []
    for i in range(PUBLISHERS):
        try:
            msg = await js.get_last_msg(STREAM, f"pc.{i}")
            last = int(msg.data.split(b":", 1)[0])
        except NotFoundError:
            last = -1
        gone = [n for n in state["acked"][i] if n > last]
        if gone:
            lost += len(gone)
            short.append(f"pc.{i}: acked up to {max(gone)}, last stored {last}")
        # Acknowledged numbers at or below the last stored one need no more tracking.
        state["acked"][i] = []
        state["next"][i] = max(state["next"][i], last + 1)
    info = await js.stream_info(STREAM)
    await nc.close()
    save_state(path, state)
    print(json.dumps({"lost": lost, "short": short, "stored": info.state.messages}))


def main():
    if len(sys.argv) == 5 and sys.argv[1] == "load":
        asyncio.run(load(sys.argv[2], sys.argv[3], float(sys.argv[4])))
    elif len(sys.argv) == 4 and sys.argv[1] == "check":
        asyncio.run(check(sys.argv[2], sys.argv[3]))
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
