#!/usr/bin/env python3
"""Sends a bounded mix of requests to aigw: plain and streamed chats, the
old /chat shape, webhook calls, bad input, unknown models, clients that
leave mid-stream, health and metrics. Used by the valgrind and endurance
runs. Prints counts per outcome; exits non-zero if aigw stops answering."""
import argparse
import http.client
import json
import random
import socket
import sys
import threading
import time

CHAT = {"model": "mock", "messages": [{"role": "system", "content": "be brief"},
                                      {"role": "user", "content": "hello there gateway"}]}
WEBHOOK_ES = {"session": "projects/p/agent/sessions/s%d", "queryResult": {
    "queryText": "what time is it", "languageCode": "en", "intent": {"displayName": "time"}}}


def request(port, method, path, body=None, headers=None, read=True, timeout=10):
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    conn.request(method, path, body=data, headers=h)
    resp = conn.getresponse()
    payload = resp.read() if read else resp.read(64)
    conn.close()
    return resp.status, payload


def leave_mid_stream(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    body = json.dumps(dict(CHAT, model="slowstream", stream=True)).encode()
    s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
              b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    s.recv(512)
    s.close()
    return 200, b""


def one(port, i, rnd):
    k = rnd.randrange(100)
    if k < 35:
        return request(port, "POST", "/v1/chat/completions", CHAT)
    if k < 55:
        return request(port, "POST", "/v1/chat/completions", dict(CHAT, stream=True,
                       stream_options={"include_usage": True}))
    if k < 62:
        return request(port, "POST", "/chat", CHAT)
    if k < 70:
        body = json.loads(json.dumps(WEBHOOK_ES))
        body["session"] = body["session"] % (i % 50)
        return request(port, "POST", "/webhook", body)
    if k < 76:
        return request(port, "POST", "/v1/chat/completions", b'{"model":"mock","messages":[')
    if k < 80:
        return request(port, "POST", "/v1/chat/completions", dict(CHAT, model="nope"))
    if k < 84:
        return request(port, "POST", "/v1/chat/completions", b'{"a":1,"a":2}')
    if k < 88:
        return leave_mid_stream(port)
    if k < 90:
        return request(port, "POST", "/v1/chat/completions", dict(CHAT, model="unreachable"))
    if k < 95:
        return request(port, "GET", "/health")
    if k < 97:
        return request(port, "GET", "/metrics")
    return request(port, "GET", "/ready")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--requests", type=int, default=3000)
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    counts = {}
    errors = []
    lock = threading.Lock()
    next_i = [0]

    def worker(tid):
        rnd = random.Random(args.seed * 1000 + tid)
        while True:
            with lock:
                i = next_i[0]
                if i >= args.requests:
                    return
                next_i[0] += 1
            try:
                status, _ = one(args.port, i, rnd)
                key = str(status)
            except Exception as e:  # noqa: BLE001 - counted, reported
                key = type(e).__name__
                with lock:
                    if len(errors) < 5:
                        errors.append(repr(e))
            with lock:
                counts[key] = counts.get(key, 0) + 1

    start = time.time()
    threads = [threading.Thread(target=worker, args=(t,)) for t in range(args.threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.time() - start
    print(json.dumps({"requests": args.requests, "seconds": round(elapsed, 1), "outcomes": counts}))
    for e in errors:
        print("error:", e)
    bad = sum(v for k, v in counts.items() if not k.isdigit() or k.startswith("5") and k != "503")
    return 1 if bad > args.requests // 100 else 0


if __name__ == "__main__":
    sys.exit(main())
