#!/usr/bin/env python3
"""Start aigw N times under a private NOTIFY_SOCKET and time exec -> READY=1.

For each start: t0 just before posix_spawn(), t1 when the READY=1 datagram
arrives. After the first start, aigw is left idle for --settle seconds and
its VmRSS/VmHWM/threads are read from /proc. Every start is then stopped
with SIGTERM and the stop time (SIGTERM -> exit) is recorded too.
Writes a JSON summary to --out."""

import argparse
import json
import os
import re
import signal
import socket
import statistics
import sys
import tempfile
import time
import urllib.request


CHILD = None  # the aigw being timed, killed if we are


def on_signal(signo, frame):
    if CHILD:
        try:
            os.kill(CHILD, signal.SIGKILL)
            os.waitpid(CHILD, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
    sys.exit(128 + signo)


def proc_status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads"):
                out[k] = int(v.split()[0])
    return out


def one_start(args, sockdir, i, measure_rss):
    path = os.path.join(sockdir, f"notify-{i}")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
    sock.bind(path)
    env = dict(os.environ)
    env["NOTIFY_SOCKET"] = path
    env.pop("LISTEN_FDS", None)
    env.pop("LISTEN_PID", None)
    env.pop("WATCHDOG_USEC", None)
    env.pop("JOURNAL_STREAM", None)
    logpath = os.path.join(sockdir, f"aigw-{i}.log")
    fa = [(os.POSIX_SPAWN_OPEN, 1, logpath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
          (os.POSIX_SPAWN_DUP2, 1, 2),
          (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0)]
    argv = [args.aigw, "--config", args.config, "--listen", f"127.0.0.1:{args.port}"]
    t0 = time.monotonic_ns()
    global CHILD
    pid = os.posix_spawn(args.aigw, argv, env, file_actions=fa)
    CHILD = pid
    deadline = time.monotonic() + 10
    ready_ns = None
    sock.settimeout(0.2)
    while time.monotonic() < deadline:
        try:
            msg = sock.recv(4096)
        except socket.timeout:
            wpid, _ = os.waitpid(pid, os.WNOHANG)
            if wpid:
                break
            continue
        if b"READY=1" in msg.split(b"\n"):
            ready_ns = time.monotonic_ns()
            break
    res = {"pid": pid}
    if ready_ns is None:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        with open(logpath) as f:
            sys.stderr.write(f.read())
        raise SystemExit(f"aigw start {i}: no READY=1 within 10 s")
    res["ready_us"] = (ready_ns - t0) / 1000
    if measure_rss:
        # answer one request so the loops are known to turn, then idle
        urllib.request.urlopen(f"http://127.0.0.1:{args.port}/ready", timeout=5).read()
        time.sleep(args.settle)
        res.update(proc_status(pid))
    t2 = time.monotonic_ns()
    os.kill(pid, signal.SIGTERM)
    end = time.monotonic() + 15
    while time.monotonic() < end:
        wpid, status = os.waitpid(pid, os.WNOHANG)
        if wpid:
            res["stop_us"] = (time.monotonic_ns() - t2) / 1000
            res["exit"] = os.waitstatus_to_exitcode(status)
            break
        time.sleep(0.001)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        res["stop_us"] = None
        res["exit"] = "killed"
    CHILD = None
    with open(logpath) as f:
        m = re.search(r"started in (\d+) us", f.read())
        if m:
            res["self_reported_us"] = int(m.group(1))
    sock.close()
    return res


def spawn_floor(aigw, runs):
    """exec -> exit of `aigw --version`: process creation and dynamic
    loading, the part of the start time aigw's own code cannot cut."""
    ts = []
    for _ in range(runs):
        fa = [(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)]
        t0 = time.monotonic_ns()
        pid = os.posix_spawn(aigw, [aigw, "--version"], dict(os.environ), file_actions=fa)
        os.waitpid(pid, 0)
        ts.append((time.monotonic_ns() - t0) / 1000)
    return statistics.median(ts)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--aigw", required=True)
    ap.add_argument("--config", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--settle", type=float, default=1.0)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    with tempfile.TemporaryDirectory(prefix="aigw-bench-notify-") as d:
        starts = [one_start(args, d, i, i == 0) for i in range(args.runs)]
    ready = [s["ready_us"] for s in starts]
    stops = [s["stop_us"] for s in starts if s.get("stop_us") is not None]
    selfrep = [s["self_reported_us"] for s in starts if "self_reported_us" in s]
    out = {
        "runs": args.runs,
        "ready_us_median": statistics.median(ready),
        "ready_us_min": min(ready),
        "ready_us_max": max(ready),
        "self_reported_us_median": statistics.median(selfrep) if selfrep else None,
        "version_exit_us_median": spawn_floor(args.aigw, args.runs),
        "stop_us_median": statistics.median(stops) if stops else None,
        "exit_codes": sorted({str(s.get("exit")) for s in starts}),
        "idle": {k: starts[0].get(k) for k in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "Threads")},
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
