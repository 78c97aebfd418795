#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""aigw behind a reverse proxy that speaks h2c to it, as Traefik's
h2c:// scheme does. Traefik is not packaged for Debian; HAProxy with
`proto h2` on the server line sends cleartext HTTP/2 by prior knowledge
the same way. Checks: requests arrive over h2c, the proxy's health check
on /health passes, streamed chunks arrive one by one (not buffered until
the end), and X-Forwarded-For from the trusted proxy is what aigw uses.

Run: python3 tests/proxy/test_haproxy.py --aigw build/aigw --source-dir ."""
import argparse
import http.client
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time

results = {"passed": 0, "failed": 0}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port, timeout=10):
    end = time.time() + timeout
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def check(name, cond, detail=""):
    if cond:
        results["passed"] += 1
        print(f"ok   {name}")
    else:
        results["failed"] += 1
        print(f"FAIL {name} {detail}")


AIGW_CONF = """
[server]
workers = 2
default_model = mock
trusted_proxies = 127.0.0.1
[log]
level = info
access_log = yes
[ratelimit]
requests_per_minute = 1000
[backend "mock"]
type = mock
mock_chunks = 5
mock_chunk_interval = 300ms
[model "mock"]
backend = mock
"""

HAPROXY_CONF = """
global
    maxconn 256
defaults
    mode http
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    option forwardfor
frontend fe
    bind 127.0.0.1:{front}
    default_backend aigw
backend aigw
    option httpchk GET /health
    http-check expect status 200
    server a1 127.0.0.1:{back} proto h2 check inter 500ms
listen stats
    bind 127.0.0.1:{stats}
    stats enable
    stats uri /stats
"""


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--aigw", required=True)
    ap.add_argument("--source-dir", default=".")
    args = ap.parse_args()
    if not shutil.which("haproxy"):
        print("haproxy not installed: skipped")
        return 77
    tmp = tempfile.mkdtemp(prefix="aigw-proxy-")
    back, front, stats = free_port(), free_port(), free_port()
    with open(os.path.join(tmp, "aigw.conf"), "w") as f:
        f.write(AIGW_CONF)
    with open(os.path.join(tmp, "haproxy.cfg"), "w") as f:
        f.write(HAPROXY_CONF.format(front=front, back=back, stats=stats))
    log = open(os.path.join(tmp, "aigw.log"), "w+")
    aigw = subprocess.Popen([args.aigw, "--config", os.path.join(tmp, "aigw.conf"), "--listen",
                             f"127.0.0.1:{back}"], stderr=log)
    hap = None
    try:
        check("aigw listens", wait_port(back))
        hap = subprocess.Popen(["haproxy", "-db", "-f", os.path.join(tmp, "haproxy.cfg")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        check("haproxy listens", wait_port(front))

        # the proxy's active health check on /health marks the server UP
        up = False
        end = time.time() + 10
        while time.time() < end and not up:
            c = http.client.HTTPConnection("127.0.0.1", stats, timeout=5)
            c.request("GET", "/stats;csv")
            csv = c.getresponse().read().decode()
            up = any(line.startswith("aigw,a1,") and ",UP," in line for line in csv.splitlines())
            if not up:
                time.sleep(0.2)
        check("haproxy health check on /health marks aigw UP", up)

        body = json.dumps({"model": "mock", "messages": [{"role": "user", "content": "one two three four five"}]})
        c = http.client.HTTPConnection("127.0.0.1", front, timeout=10)
        c.request("POST", "/v1/chat/completions", body=body, headers={
            "Content-Type": "application/json", "X-Forwarded-For": "203.0.113.7"})
        r = c.getresponse()
        raw = r.read()
        try:
            data = json.loads(raw)
        except ValueError:
            data = {"raw": raw[:300], "status": r.status}
        check("chat through the proxy", r.status == 200 and data.get("choices", [{}])[0].get("message", {}).get("content") ==
              "one two three four five", f"{r.status} {data}")

        # the access log entry is written when the request is disposed,
        # which can come a little after the client has its answer
        lines = []
        end = time.time() + 5
        while not lines and time.time() < end:
            log.flush()
            log.seek(0)
            lines = [line for line in log.read().splitlines() if "AIGW_ROUTE=chat_completions" in line]
            if not lines:
                time.sleep(0.05)
        check("the request reached aigw over h2c", lines and "AIGW_PROTOCOL=h2c" in lines[-1],
              lines[-1:] if lines else "no access log line")

        # streaming: every chunk must arrive when aigw sends it (300 ms apart)
        sbody = json.dumps({"model": "mock", "stream": True,
                            "messages": [{"role": "user", "content": "one two three four five"}]})
        c = http.client.HTTPConnection("127.0.0.1", front, timeout=10)
        c.request("POST", "/v1/chat/completions", body=sbody, headers={"Content-Type": "application/json"})
        r = c.getresponse()
        check("stream headers through the proxy", r.status == 200 and
              r.getheader("content-type", "").startswith("text/event-stream"))
        arrivals = []
        buf = b""
        while True:
            piece = r.read1(65536)
            if not piece:
                break
            buf += piece
            while b"\n\n" in buf:
                event, buf = buf.split(b"\n\n", 1)
                arrivals.append((time.monotonic(), event))
        contents = [e for _, e in arrivals if b'"content"' in e]
        times = [t for t, e in arrivals if b'"content"' in e]
        gaps = [b - a for a, b in zip(times, times[1:])]
        check("five content chunks and [DONE]", len(contents) == 5 and arrivals[-1][1] == b"data: [DONE]",
              f"{len(contents)} {arrivals[-1][1] if arrivals else None}")
        check("chunks arrive one by one (gaps of ~300 ms, not buffered)",
              len(gaps) == 4 and all(0.2 < g < 0.6 for g in gaps), f"gaps {['%.3f' % g for g in gaps]}")
    finally:
        for p in (hap, aigw):
            if p:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{results['passed']} passed, {results['failed']} failed")
    return 0 if results["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
