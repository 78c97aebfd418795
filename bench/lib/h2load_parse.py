#!/usr/bin/env python3
"""Parse h2load's text output into a dict (also usable as a script:
h2load_parse.py FILE [--cpu S --wall S] prints JSON; with the server's CPU
seconds over a wall-clock window it adds cpu_cores and cpu_us_per_req, and
with per-thread ticks the busiest thread's share of the CPU time)."""

import json
import re

UNITS = {"us": 1.0, "ms": 1000.0, "s": 1000000.0}


def to_us(text):
    m = re.fullmatch(r"([0-9.]+)(us|ms|s)", text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def parse(text):
    out = {}
    m = re.search(r"^finished in ([0-9.]+(?:us|ms|s)), ([0-9.]+) req/s", text, re.M)
    if m:
        out["elapsed_us"] = to_us(m.group(1))
        out["rps"] = float(m.group(2))
    m = re.search(r"^requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, "
                  r"(\d+) errored, (\d+) timeout", text, re.M)
    if m:
        keys = ("total", "started", "done", "succeeded", "failed", "errored", "timeout")
        out.update({k: int(v) for k, v in zip(keys, m.groups())})
    m = re.search(r"^status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", text, re.M)
    if m:
        out.update({k: int(v) for k, v in zip(("s2xx", "s3xx", "s4xx", "s5xx"), m.groups())})
    m = re.search(r"^time for request:\s+(\S+)\s+(\S+)\s+(\S+)\s+(\S+)", text, re.M)
    if m:
        out["lat_min_us"], out["lat_max_us"], out["lat_mean_us"], out["lat_sd_us"] = (
            to_us(x) for x in m.groups())
    return out


if __name__ == "__main__":
    import argparse
    ap = argparse.ArgumentParser()
    ap.add_argument("file")
    ap.add_argument("--cpu", type=float, help="CPU seconds the server used while measured")
    ap.add_argument("--wall", type=float, help="wall seconds of that measurement")
    ap.add_argument("--threads-before", help='"TID:TICKS ..." of the server before')
    ap.add_argument("--threads-after", help="and after the measurement")
    a = ap.parse_args()
    with open(a.file) as f:
        d = parse(f.read())
    if a.cpu is not None and a.wall and d.get("rps"):
        d["cpu_cores"] = a.cpu / a.wall
        d["cpu_us_per_req"] = a.cpu / a.wall * 1e6 / d["rps"]
    if a.threads_before and a.threads_after:
        def ticks(text):
            return {k: int(float(v)) for k, _, v in (x.partition(":") for x in text.split()) if v}
        b, e = ticks(a.threads_before), ticks(a.threads_after)
        used = sorted((e[t] - b.get(t, 0) for t in e), reverse=True)
        if sum(used) > 0:
            # share of the busiest thread: 0.5 = two workers evenly loaded, 1.0 = one did everything
            d["busiest_thread_share"] = used[0] / sum(used)
    print(json.dumps(d))
