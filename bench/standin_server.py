"""The TikTok end of the benchmarks, in its own process so its CPU is counted apart from ours.

Two kinds, both on 127.0.0.1:

- ``strict``: the test suite's ``TikTokStandIn``, which validates every event the way TikTok
  does. Faithful, but its Flask app spends CPU per event on the same two cores as the worker.
- ``lean``: an asyncio HTTP/1.1 sink that answers TikTok's success envelope without looking
  inside the body, standing for a TikTok that costs this machine nothing.

With ``--receipts FILE`` each accepted event is written as ``event_id monotonic_seconds``
(CLOCK_MONOTONIC is system-wide on Linux, so other processes' clocks compare with it). The
strict stand-in is read through its public ``batches`` list every millisecond, so its receipt
times are at most about a millisecond late; the lean sink stamps a request as it arrives.

    python bench/standin_server.py --kind strict --receipts /tmp/r.txt
    # prints {"port": N} when listening; SIGTERM prints {"requests": R, "events": E}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
import time
from pathlib import Path
from typing import TextIO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchlib import PIXEL, TOKEN  # noqa: E402

from connector.standins.tiktok import TikTokStandIn  # noqa: E402

OK_BODY = b'{"code":0,"message":"OK","request_id":"%d","data":{}}'


def main() -> None:
    args = parse_args()
    receipts = args.receipts.open("w", buffering=1 << 16) if args.receipts else None
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    if args.kind == "strict":
        totals = serve_strict(receipts, stop)
    else:
        totals = serve_lean(receipts, stop)
    if receipts:
        receipts.close()
    print(json.dumps(totals), flush=True)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kind", choices=("strict", "lean"), default="strict")
    parser.add_argument("--receipts", type=Path, help="write 'event_id monotonic' lines here")
    return parser.parse_args()


def announce(port: int) -> None:
    print(json.dumps({"port": port}), flush=True)


# -- strict: the test suite's stand-in ---------------------------------------------------------


def serve_strict(receipts: TextIO | None, stop: threading.Event) -> dict[str, int]:
    """Run TikTokStandIn and note each accepted batch as it appears in ``batches``."""
    stand_in = TikTokStandIn({TOKEN: {PIXEL}}).start()
    announce(int(stand_in.base_url.rsplit(":", 1)[1]))
    seen = events = 0
    try:
        while not stop.is_set():
            batches = stand_in.batches
            if len(batches) > seen:
                now = time.monotonic()
                for batch in batches[seen : len(batches)]:
                    events += _note_strict(
                        batch.body, batch.answer, batch.http_status, now, receipts
                    )
                seen = len(batches)
            time.sleep(0.001)
    finally:
        stand_in.stop()
    return {"requests": seen, "events": events}


def _note_strict(body: dict, answer: dict, status: int, now: float, receipts: TextIO | None) -> int:
    if status != 200 or answer.get("code") != 0:
        return 0
    data = body.get("data") or []
    if receipts:
        receipts.write("".join(f"{event.get('event_id')} {now:.6f}\n" for event in data))
        receipts.flush()
    return len(data)


# -- lean: a sink that only answers -------------------------------------------------------------


class LeanSink:
    """HTTP/1.1 keep-alive; counts ``"event_id"`` occurrences rather than parsing the JSON."""

    def __init__(self, receipts: TextIO | None) -> None:
        self.receipts = receipts
        self.requests = 0
        self.events = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                body = await reader.readexactly(_content_length(head))
                self._note(body, time.monotonic())
                writer.write(self._answer())
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def _note(self, body: bytes, arrived: float) -> None:
        self.requests += 1
        if self.receipts:
            ids = [event.get("event_id") for event in json.loads(body).get("data", [])]
            self.receipts.write("".join(f"{event_id} {arrived:.6f}\n" for event_id in ids))
            self.receipts.flush()
            self.events += len(ids)
        else:
            self.events += body.count(b'"event_id"')

    def _answer(self) -> bytes:
        payload = OK_BODY % self.requests
        return (
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
        )


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def serve_lean(receipts: TextIO | None, stop: threading.Event) -> dict[str, int]:
    sink = LeanSink(receipts)

    async def run() -> None:
        server = await asyncio.start_server(sink.handle, "127.0.0.1", 0, limit=1 << 20)
        announce(server.sockets[0].getsockname()[1])
        while not stop.is_set():
            await asyncio.sleep(0.05)
        server.close()

    asyncio.run(run())
    return {"requests": sink.requests, "events": sink.events}


if __name__ == "__main__":
    sys.exit(main())
