#!/usr/bin/env python3
"""A slow OpenAI-compatible upstream: every POST /v1/chat/completions is
held for --delay seconds, then answered with a fixed chat.completion.

asyncio on raw streams (no http.server threads), so thousands of requests
can wait at once. HTTP/1.1 keep-alive, Content-Length bodies only (what
curl sends). Any other path answers 200 {} at once (health probes).
Prints "READY <port>" on stdout once listening."""

import argparse
import asyncio
import json
import resource
import signal
import time
import sys

ANSWER = json.dumps({
    "id": "chatcmpl-slow",
    "object": "chat.completion",
    "created": 1700000000,
    "model": "slow",
    "choices": [{"index": 0,
                 "message": {"role": "assistant", "content": "Sorry for the wait."},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 9, "completion_tokens": 5, "total_tokens": 14},
}).encode()

stats = {"accepted": 0, "requests": 0, "answered": 0, "open": 0, "max_open": 0, "max_waiting": 0,
         "reused": 0}
waiting = 0
arrivals = []  # monotonic time each chat request was complete


def response(body, status="200 OK"):
    return (b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: application/json\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


async def handle(reader, writer, delay):
    global waiting
    stats["accepted"] += 1
    stats["open"] += 1
    stats["max_open"] = max(stats["max_open"], stats["open"])
    served = 0
    try:
        while True:
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            except asyncio.LimitOverrunError:
                writer.write(response(b"{}", "431 Request Header Fields Too Large"))
                return
            lines = head.decode("latin-1").split("\r\n")
            method, path = (lines[0].split(" ") + ["", ""])[:2]
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
                elif name.strip().lower() == "expect" and "100-continue" in value.lower():
                    writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            if length:
                await reader.readexactly(length)
            stats["requests"] += 1
            if served:
                stats["reused"] += 1
            served += 1
            if method == "POST" and path.startswith("/v1/chat/completions"):
                arrivals.append(time.monotonic())
                waiting += 1
                stats["max_waiting"] = max(stats["max_waiting"], waiting)
                try:
                    await asyncio.sleep(delay)
                finally:
                    waiting -= 1
                writer.write(response(ANSWER))
                stats["answered"] += 1
            else:
                writer.write(response(b"{}"))
            await writer.drain()
    except (ConnectionError, asyncio.IncompleteReadError):
        pass
    finally:
        stats["open"] -= 1
        writer.close()


async def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--delay", type=float, default=30.0)
    ap.add_argument("--stats", help="write counters as JSON here on exit")
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    server = await asyncio.start_server(lambda r, w: handle(r, w, args.delay),
                                        "127.0.0.1", args.port, backlog=4096)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"READY {args.port}", flush=True)
    async with server:
        await stop.wait()
        if args.stats:
            if arrivals:
                a = sorted(t - arrivals[0] for t in arrivals)
                stats["arrival_spread_s"] = {"p50": a[len(a) // 2], "p90": a[int(len(a) * 0.9)],
                                             "max": a[-1]}
            with open(args.stats, "w") as f:
                json.dump(stats, f)


if __name__ == "__main__":
    asyncio.run(main())
    sys.exit(0)
