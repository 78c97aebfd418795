#!/usr/bin/env python3
"""The old gateway's failure, replayed against aigw.

A storm of --storm chat requests (one HTTP/1.1 connection each, all at
once) goes to a model whose upstream takes ~30 s per answer. Meanwhile a
separate prober process opens a fresh connection every --interval seconds
for GET --health-path (as a container healthcheck or Traefik would) and,
every --mock-every probes, POSTs a chat to the built-in mock model. The
prober starts --baseline seconds before the storm so the same numbers
exist for an idle gateway.

Writes a JSON summary to --out."""

import argparse
import asyncio
import json
import multiprocessing
import resource
import signal
import socket
import statistics
import time

CHAT = '{"model":"%s","messages":[{"role":"user","content":"Say hello."}]}'


def pct(values, p):
    if not values:
        return None
    s = sorted(values)
    k = min(len(s) - 1, max(0, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]


def summary_ms(values):
    if not values:
        return {"n": 0}
    return {"n": len(values), "p50": pct(values, 50), "p90": pct(values, 90), "p99": pct(values, 99),
            "max": max(values), "mean": statistics.fmean(values)}


def blocking_request(port, raw, timeout):
    """One request on a fresh connection; returns (status, ms)."""
    t0 = time.perf_counter()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.sendall(raw)
            buf = b""
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
                head, sep, body = buf.partition(b"\r\n\r\n")
                if sep:
                    cl = None
                    for line in head.split(b"\r\n")[1:]:
                        k, _, v = line.partition(b":")
                        if k.strip().lower() == b"content-length":
                            cl = int(v.strip())
                    if cl is not None and len(body) >= cl:
                        break
        status = int(buf.split(b" ", 2)[1]) if buf.startswith(b"HTTP/") else 0
    except (OSError, ValueError, IndexError):
        status = -1
    return status, (time.perf_counter() - t0) * 1000.0


def prober(args, storm_start, q):
    health = (f"GET {args.health_path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n").encode()
    mport = args.health_port or args.port
    body = (CHAT % args.mock_model).encode()
    mock = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n"
            b"content-type: application/json\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    out = {"health": [], "mock": []}
    end = time.monotonic() + args.baseline + args.duration
    n = 0
    next_t = time.monotonic()
    while time.monotonic() < end:
        now = time.monotonic()
        if now < next_t:
            time.sleep(next_t - now)
        next_t += args.interval
        phase = "storm" if storm_start.value and time.monotonic() >= storm_start.value else "idle"
        st, ms = blocking_request(mport, health, 5)
        out["health"].append((phase, st, ms, time.monotonic()))
        n += 1
        if n % args.mock_every == 0:
            st, ms = blocking_request(args.port, mock, 10)
            out["mock"].append((phase, st, ms, time.monotonic()))
    q.put(out)


async def storm_request(port, raw, timeout):
    t0 = time.monotonic()
    try:
        r, w = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), 10)
    except (OSError, asyncio.TimeoutError) as e:
        return ("connect:" + type(e).__name__, time.monotonic() - t0)
    try:
        w.write(raw)
        head = await asyncio.wait_for(r.readuntil(b"\r\n\r\n"), timeout)
        status = head.split(b" ", 2)[1].decode()
        cl = 0
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == b"content-length":
                cl = int(v.strip())
        if cl:
            await asyncio.wait_for(r.readexactly(cl), timeout)
        return (status, time.monotonic() - t0)
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as e:
        return ("error:" + type(e).__name__, time.monotonic() - t0)
    finally:
        w.close()


async def run_storm(args, storm_start):
    body = (CHAT % args.slow_model).encode()
    raw = (b"POST /v1/chat/completions HTTP/1.1\r\nhost: 127.0.0.1\r\n"
           b"content-type: application/json\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    storm_start.value = time.monotonic()
    tasks = [asyncio.create_task(storm_request(args.port, raw, args.storm_timeout)) for _ in range(args.storm)]
    rss = []

    async def sample_rss():
        while True:
            await asyncio.sleep(1)
            try:
                with open(f"/proc/{args.aigw_pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            rss.append(int(line.split()[1]))
            except OSError:
                return

    sampler = asyncio.create_task(sample_rss()) if args.aigw_pid else None
    results = await asyncio.gather(*tasks)
    if sampler:
        sampler.cancel()
    return results, rss


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True, help="aigw main port")
    ap.add_argument("--health-port", type=int, help="port for --health-path (default --port)")
    ap.add_argument("--health-path", default="/health")
    ap.add_argument("--storm", type=int, default=1000)
    ap.add_argument("--storm-timeout", type=float, default=90)
    ap.add_argument("--slow-model", default="slow")
    ap.add_argument("--mock-model", default="mock")
    ap.add_argument("--interval", type=float, default=0.010)
    ap.add_argument("--mock-every", type=int, default=50)
    ap.add_argument("--baseline", type=float, default=2.0)
    ap.add_argument("--duration", type=float, default=20.0)
    ap.add_argument("--aigw-pid", type=int)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

    storm_start = multiprocessing.Value("d", 0.0)
    q = multiprocessing.Queue()
    p = multiprocessing.Process(target=prober, args=(args, storm_start, q))
    p.start()

    def on_signal(signo, frame):
        p.terminate()
        raise SystemExit(128 + signo)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    time.sleep(args.baseline)
    t0 = time.monotonic()
    results, rss = asyncio.run(run_storm(args, storm_start))
    storm_wall = time.monotonic() - t0
    probes = q.get(timeout=args.baseline + args.duration + 60)
    p.join(10)

    statuses = {}
    for st, _ in results:
        statuses[st] = statuses.get(st, 0) + 1
    ok_durations = [d for st, d in results if st == "200"]

    def split(rows, phase):
        return [ms for ph, st, ms, _ in rows if ph == phase and st == 200]

    def failures(rows, phase):
        return sum(1 for ph, st, _, _ in rows if ph == phase and st != 200)

    out = {
        "storm": {
            "requests": args.storm,
            "statuses": statuses,
            "wall_s": storm_wall,
            "ok_duration_s": summary_ms(ok_durations),
            "aigw_rss_kb_max": max(rss) if rss else None,
        },
        "health_idle_ms": summary_ms(split(probes["health"], "idle")),
        "health_storm_ms": summary_ms(split(probes["health"], "storm")),
        "health_idle_failures": failures(probes["health"], "idle"),
        "health_storm_failures": failures(probes["health"], "storm"),
        "mock_idle_ms": summary_ms(split(probes["mock"], "idle")),
        "mock_storm_ms": summary_ms(split(probes["mock"], "storm")),
        "mock_storm_failures": failures(probes["mock"], "storm"),
        "mock_storm_statuses": sorted({st for ph, st, _, _ in probes["mock"] if ph == "storm"}),
        # when the slow probes happened, in seconds after the storm began
        "health_slow_over_2ms": [[round(t - t0, 2), round(ms, 2)] for ph, st, ms, t in probes["health"]
                                 if ms > 2.0][:500],
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
