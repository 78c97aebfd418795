#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Helpers for probe.sh, run inside the container with the host's /usr/bin/python3.

  helper.py journal [--since USEC] [--wait SEC] [--match F=V]... [--has F]...
                    [--regex F=RE]... [--count] [--print F]...
      Polls `journalctl -u aigw.service -o json` until an entry (at or after
      realtime USEC) satisfies every condition; prints it as JSON (or the
      fields named by --print), exit 0. --count prints the number of matching
      entries after waiting and always exits 0. Exit 1 when nothing matched.

  helper.py load --url URL --seconds S --threads N --at T [--pause P] -- CMD...
      N client loops, each making a new connection per request (GET URL, a
      pause of P s between requests) for S seconds; CMD runs at T seconds.
      Prints the counts of outcomes as JSON.
"""
import argparse
import http.client
import json
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.parse


def field_str(v):
    # journalctl -o json: non-UTF-8 values are byte arrays, repeated fields lists
    if isinstance(v, list):
        if all(isinstance(x, int) for x in v):
            return bytes(v).decode("utf-8", "replace")
        return field_str(v[-1]) if v else ""
    return "" if v is None else str(v)


def journal_entries(unit):
    p = subprocess.run(["journalctl", "--no-pager", "-q", "-u", unit, "-o", "json"],
                       capture_output=True, text=True, timeout=20)
    out = []
    for line in p.stdout.splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        out.append({k: field_str(v) for k, v in e.items()})
    return out


def cmd_journal(a):
    matches = [m.split("=", 1) for m in a.match]
    regexes = [(r.split("=", 1)[0], re.compile(r.split("=", 1)[1])) for r in a.regex]
    deadline = time.monotonic() + a.wait
    while True:
        found = []
        for e in journal_entries(a.unit):
            if a.since and int(e.get("__REALTIME_TIMESTAMP", "0")) < a.since:
                continue
            if any(e.get(k) != v for k, v in matches):
                continue
            if any(k not in e for k in a.has):
                continue
            if any(not rx.search(e.get(k, "")) for k, rx in regexes):
                continue
            found.append(e)
        if a.count:
            if time.monotonic() >= deadline:
                print(len(found))
                return 0
        elif found:
            e = found[0]
            if a.print:
                print(" ".join(f"{k}={e.get(k, '<missing>')}" for k in a.print))
            else:
                print(json.dumps({k: v for k, v in e.items() if not k.startswith("__")}, sort_keys=True))
            return 0
        elif time.monotonic() >= deadline:
            print(f"no journal entry of {a.unit} matched within {a.wait}s", file=sys.stderr)
            return 1
        time.sleep(0.2)


def request(method, url, body=None, timeout=10.0):
    u = urllib.parse.urlsplit(url)
    c = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        headers = {"Connection": "close"}
        if body is not None:
            headers["Content-Type"] = "application/json"
        c.request(method, u.path or "/", body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        return r.status, r.getheader("x-request-id"), data
    finally:
        c.close()


def cmd_load(a):
    # "draining": 503 {"status":"draining"} from the old process on a
    # connection it had accepted before SIGTERM: aigw's documented signal
    # for a proxy's health check, not a failure (new connections queue in
    # systemd's socket for the next process)
    counts = {"ok": 0, "draining": 0, "refused": 0, "reset": 0, "timeout": 0, "bad_status": 0, "other": 0}
    errors = []
    lock = threading.Lock()
    max_latency = [0.0]
    start = time.monotonic()
    end = start + a.seconds

    def loop():
        while time.monotonic() < end:
            t0 = time.monotonic()
            kind = "ok"
            try:
                status, _, data = request(a.method, a.url, body=a.body, timeout=a.timeout)
                if status == 503 and b'"draining"' in data:
                    kind = "draining"
                elif status != 200:
                    kind = "bad_status"
                    detail = f"HTTP {status}"
            except ConnectionRefusedError as e:
                kind, detail = "refused", repr(e)
            except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected,
                    http.client.BadStatusLine) as e:
                kind, detail = "reset", repr(e)
            except (socket.timeout, TimeoutError) as e:
                kind, detail = "timeout", repr(e)
            except Exception as e:
                kind, detail = "other", repr(e)
            dt = time.monotonic() - t0
            with lock:
                counts[kind] += 1
                max_latency[0] = max(max_latency[0], dt)
                if kind not in ("ok", "draining") and sum(e.startswith(kind) for e in errors) < 3:
                    errors.append(f"{kind} at t={t0 - start:.3f}s: {detail}")
            # Paced: unthrottled loops log tens of thousands of access entries,
            # and journald then drops the service's later messages (its
            # RateLimitBurst=10000 per 30 s).
            time.sleep(a.pause)

    threads = [threading.Thread(target=loop) for _ in range(a.threads)]
    for t in threads:
        t.start()
    time.sleep(a.at)
    t0 = time.monotonic()
    p = subprocess.run(a.cmd, capture_output=True, text=True, timeout=60)
    cmd_secs = time.monotonic() - t0
    for t in threads:
        t.join()
    failed = sum(v for k, v in counts.items() if k not in ("ok", "draining"))
    print(json.dumps({"total": sum(counts.values()), "failed": failed, **counts,
                      "max_latency_ms": round(max_latency[0] * 1000, 1),
                      "cmd_rc": p.returncode, "cmd_secs": round(cmd_secs, 3),
                      "cmd_stderr": p.stderr.strip(), "errors": errors}))
    return 0


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd_name", required=True)

    j = sub.add_parser("journal")
    j.add_argument("--unit", default="aigw.service")
    j.add_argument("--since", type=int, default=0, help="realtime usec")
    j.add_argument("--wait", type=float, default=5.0)
    j.add_argument("--match", action="append", default=[])
    j.add_argument("--has", action="append", default=[])
    j.add_argument("--regex", action="append", default=[])
    j.add_argument("--print", action="append", default=[])
    j.add_argument("--count", action="store_true")
    j.set_defaults(func=cmd_journal)

    ld = sub.add_parser("load")
    ld.add_argument("--url", required=True)
    ld.add_argument("--seconds", type=float, default=6.0)
    ld.add_argument("--threads", type=int, default=4)
    ld.add_argument("--at", type=float, default=2.0)
    ld.add_argument("--timeout", type=float, default=10.0)
    ld.add_argument("--pause", type=float, default=0.01, help="seconds between requests of one loop")
    ld.add_argument("--method", default="GET")
    ld.add_argument("--body", default=None, help="JSON request body (sent as application/json)")
    ld.add_argument("cmd", nargs="+")
    ld.set_defaults(func=cmd_load)

    a = ap.parse_args()
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
