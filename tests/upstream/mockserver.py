#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Scriptable mock LLM upstreams for aigw's integration tests (stdlib only).

One threaded HTTP/1.1 server (keep-alive, chunked streaming written by
hand) that speaks either the OpenAI-compatible API or Gemini's v1beta API
(--flavor). mock_openai.py and mock_gemini.py start it with their flavor.

    python3 tests/upstream/mock_openai.py [--port 0] [--exit-on-stdin-eof]

prints the port it listens on (first line of stdout) and serves until
killed (or, with --exit-on-stdin-eof, until its stdin is closed: a test
runner that dies takes its mocks with it).

Routes
  OpenAI  POST /v1/chat/completions            GET /v1/models (probe)
  Gemini  POST /v1beta/models/M:generateContent
          POST /v1beta/models/M:streamGenerateContent?alt=sse
                                               GET /v1beta/models (probe)
  both    POST /_control   JSON: {"queue": [B, ...]}  behaviours for the next
                           chat requests, one each (appended to the queue);
                           {"default": B} the behaviour once the queue is
                           empty; {"probe": B} for the probe route;
                           {"reset": true} clears log, queue, default, probe.
          GET  /_requests  {"requests": [record, ...]} every request received
                           (control routes excepted), live: a streaming
                           answer updates its record while it runs.

A chat request's behaviour B is, in this order: a directive in the last
user message ("MOCK {json}"), the next queued one, the default.

Behaviour fields (all optional):
  status (200), headers {name: value}, body (raw text sent as is;
  for a non-2xx status without body a flavored error body is made),
  delay (s before the status line; the wait notices the client leaving),
  text (answer; default "mock answer: " + last user text),
  chunks (stream pieces, default 3), chunk_delay (s between events),
  piece_size + pieces (a big stream: `pieces` events of `piece_size` bytes),
  usage {"prompt": P, "completion": C},
  finish_reason ("stop" / "STOP"), finish_on_last_piece (Gemini: no
  separate final event), stop_every_chunk (Gemini: finishReason STOP on
  every event, as older models did), block_reason (Gemini: promptFeedback
  only), garbage (200 with a body / an event that is not JSON),
  cut_after (stream: close the connection after N events, without the
  terminating chunk),
  no_done (OpenAI stream without [DONE]), crlf (event separator CRLF CRLF;
  the Gemini default), big_event (bytes of content in one event, sent at
  big_event_at, default 0), error_event (an error object sent as an event
  after `error_event_at` events, then the stream ends cleanly),
  close_without_response (read the request, then close), raw (a list of
  strings or {"base64": ...}: a 200 stream whose body is exactly these, one
  write each, for SSE framing tests), raw_utf8 (JSON
  with UTF-8 text instead of \\u escapes), gzip (a whole answer gzipped when
  the client accepts it).

Records: id, method, path, query, headers (lower-case names), body,
json, behaviour, t_start, t_headers_sent, t_end (time.monotonic(), which is
system-wide on Linux), status, events_sent, bytes_sent, writing_since
(monotonic time a write that has not returned began, else null),
client_closed, t_client_closed, done, peer (the client's address:port).
"""

import argparse
import base64
import gzip
import http.server
import json
import os
import select
import socket
import socketserver
import sys
import threading
import time
import urllib.parse

GEMINI_STATUS = {400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
                 429: "RESOURCE_EXHAUSTED", 500: "INTERNAL", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED"}


class ClientGone(Exception):
    pass


class State:
    def __init__(self, flavor):
        self.flavor = flavor
        self.lock = threading.Lock()
        self.records = []
        self.queue = []
        self.default = {}
        self.probe = {}

    def reset(self):
        with self.lock:
            self.records = []
            self.queue = []
            self.default = {}
            self.probe = {}

    def add_record(self, rec):
        with self.lock:
            rec["id"] = len(self.records)
            self.records.append(rec)

    def snapshot(self):
        with self.lock:
            return json.loads(json.dumps(self.records))

    def next_behaviour(self):
        with self.lock:
            if self.queue:
                return dict(self.queue.pop(0))
            return dict(self.default)


def last_user_text(flavor, req):
    """Text of the last user message (OpenAI messages or Gemini contents)."""
    try:
        if flavor == "openai":
            for m in reversed(req.get("messages") or []):
                if m.get("role") == "user":
                    c = m.get("content")
                    if isinstance(c, list):
                        return "".join(p.get("text", "") for p in c if isinstance(p, dict))
                    return c if isinstance(c, str) else ""
        else:
            for c in reversed(req.get("contents") or []):
                if c.get("role") == "user":
                    return "".join(p.get("text", "") for p in c.get("parts") or [] if isinstance(p, dict))
    except AttributeError:
        pass
    return ""


def split_text(text, n):
    n = max(1, min(n, len(text))) if text else 1
    size, rest = divmod(len(text), n)
    out, pos = [], 0
    for i in range(n):
        step = size + (1 if i < rest else 0)
        out.append(text[pos:pos + step])
        pos += step
    return out


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "aigw-mock/1"
    timeout = 120  # idle keep-alive connections and blocked writes give up eventually

    # ---- plumbing
    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("mock: " + (fmt % args) + "\n")

    @property
    def state(self):
        return self.server.state

    def read_body(self):
        n = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(n) if n > 0 else b""

    def send_json(self, status, obj, extra=None):
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for k, v in (extra or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        self.wfile.write(body)

    def client_closed(self):
        """True if the peer closed (or reset) the connection. While a
        response is running an HTTP/1.1 client sends nothing, so readable
        means EOF."""
        try:
            r, _, _ = select.select([self.connection], [], [], 0)
            if not r:
                return False
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (ConnectionError, OSError):
            return True

    def wait(self, seconds):
        """Sleep, but notice the client leaving meanwhile."""
        deadline = time.monotonic() + seconds
        while True:
            if self.client_closed():
                raise ClientGone()
            left = deadline - time.monotonic()
            if left <= 0:
                return
            try:
                select.select([self.connection], [], [], min(left, 0.05))
            except (ValueError, OSError):
                raise ClientGone()

    def mark_closed(self, rec):
        with self.state.lock:
            if not rec["client_closed"]:
                rec["client_closed"] = True
                rec["t_client_closed"] = time.monotonic()

    def write(self, rec, data):
        with self.state.lock:
            rec["writing_since"] = time.monotonic()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            raise ClientGone()
        finally:
            with self.state.lock:
                rec["writing_since"] = None
        with self.state.lock:
            rec["bytes_sent"] += len(data)

    def write_chunk(self, rec, data):
        if data:
            self.write(rec, b"%x\r\n%s\r\n" % (len(data), data))

    def start_stream(self, rec, content_type="text/event-stream"):
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        rec["status"] = 200
        rec["t_headers_sent"] = time.monotonic()

    def end_stream(self, rec):
        self.write(rec, b"0\r\n\r\n")

    def cut(self):
        """Close the connection in the middle of a response."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except OSError:
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ---- routes
    def do_GET(self):
        u = urllib.parse.urlsplit(self.path)
        if u.path == "/_requests":
            return self.send_json(200, {"requests": self.state.snapshot()})
        if u.path == "/_health":
            return self.send_json(200, {"ok": True})
        probe_path = "/v1/models" if self.state.flavor == "openai" else "/v1beta/models"
        rec = self.new_record(u, b"")
        if u.path == probe_path:
            with self.state.lock:
                b = dict(self.state.probe)
            rec["behaviour"] = b
            return self.answer_probe(rec, b)
        rec["status"] = 404
        rec["done"] = True
        self.send_json(404, {"error": {"message": f"no route {u.path}", "type": "invalid_request_error"}})

    def do_POST(self):
        u = urllib.parse.urlsplit(self.path)
        body = self.read_body()
        if u.path == "/_control":
            try:
                ctl = json.loads(body or b"{}")
            except ValueError as e:
                return self.send_json(400, {"error": str(e)})
            with self.state.lock:
                if ctl.get("reset"):
                    self.state.records, self.state.queue = [], []
                    self.state.default, self.state.probe = {}, {}
                self.state.queue.extend(ctl.get("queue") or [])
                if "default" in ctl:
                    self.state.default = ctl["default"] or {}
                if "probe" in ctl:
                    self.state.probe = ctl["probe"] or {}
            return self.send_json(200, {"ok": True})
        rec = self.new_record(u, body)
        route = self.chat_route(u, rec["json"])
        if route is None:
            rec["status"] = 404
            rec["done"] = True
            return self.send_json(404, {"error": {"message": f"no route {u.path}", "type": "invalid_request_error",
                                                  "code": 404, "status": "NOT_FOUND"}})
        stream, model = route
        req = rec["json"] if isinstance(rec["json"], dict) else {}
        text = last_user_text(self.state.flavor, req)
        b = None
        if text.startswith("MOCK "):
            try:
                b = json.loads(text[5:])
            except ValueError:
                b = None
        if b is None:
            b = self.state.next_behaviour()
        rec["behaviour"] = b
        try:
            self.answer_chat(rec, b, req, stream, model, text)
        except ClientGone:
            self.mark_closed(rec)
            self.close_connection = True
        finally:
            with self.state.lock:
                rec["t_end"] = time.monotonic()
                rec["done"] = True

    def new_record(self, u, body):
        rec = {
            "method": self.command, "path": u.path, "query": u.query, "raw_path": self.path,
            "headers": {k.lower(): v for k, v in self.headers.items()},
            "body": body.decode("utf-8", "replace"), "json": None, "behaviour": None,
            "t_start": time.monotonic(), "t_headers_sent": None, "t_end": None, "status": None,
            "events_sent": 0, "bytes_sent": 0, "writing_since": None,
            "client_closed": False, "t_client_closed": None, "done": False,
            "peer": "%s:%d" % self.client_address[:2],
        }
        try:
            rec["json"] = json.loads(body) if body else None
        except ValueError:
            pass
        self.state.add_record(rec)
        return rec

    def chat_route(self, u, j):
        """(stream, model) for a chat route of this flavor, else None."""
        if self.state.flavor == "openai":
            if u.path != "/v1/chat/completions":
                return None
            if not isinstance(j, dict):
                j = {}
            return bool(j.get("stream")), j.get("model")
        prefix = "/v1beta/models/"
        if not u.path.startswith(prefix) or ":" not in u.path:
            return None
        model, method = u.path[len(prefix):].rsplit(":", 1)
        model = urllib.parse.unquote(model)
        if method == "generateContent":
            return False, model
        if method == "streamGenerateContent":
            return True, model
        return None

    def answer_probe(self, rec, b):
        status = int(b.get("status", 200))
        rec["status"] = status
        if b.get("delay"):
            time.sleep(float(b["delay"]))
        if status != 200:
            self.send_json(status, {"error": {"message": "probe failure", "code": status}})
        elif self.state.flavor == "openai":
            self.send_json(200, {"object": "list", "data": [{"id": "mock-model", "object": "model"}]})
        else:
            self.send_json(200, {"models": [{"name": "models/gemini-mock"}], "nextPageToken": "x"})
        rec["done"] = True

    # ---- chat answers
    def error_body(self, status, message):
        if self.state.flavor == "openai":
            return {"error": {"message": message, "type": "invalid_request_error" if status < 500 else "server_error",
                              "param": None, "code": None}}
        return {"error": {"code": status, "message": message, "status": GEMINI_STATUS.get(status, "UNKNOWN")}}

    def answer_chat(self, rec, b, req, stream, model, user_text):
        if b.get("close_without_response"):
            rec["status"] = 0
            self.cut()
            return
        if b.get("delay"):
            self.wait(float(b["delay"]))
        status = int(b.get("status", 200))
        headers = b.get("headers") or {}
        if status != 200 or "body" in b:
            body = b.get("body")
            if body is None:
                body = json.dumps(self.error_body(status, b.get("message", f"mock failure {status}")))
            data = body.encode()
            self.send_response(status)
            self.send_header("Content-Type", b.get("content_type", "application/json"))
            self.send_header("Content-Length", str(len(data)))
            for k, v in headers.items():
                self.send_header(k, str(v))
            self.end_headers()
            rec["status"] = status
            rec["t_headers_sent"] = time.monotonic()
            self.write(rec, data)
            return
        if "raw" in b:
            # the body verbatim, one write (chunk) per element
            self.start_stream(rec, b.get("content_type", "text/event-stream"))
            for i, piece in enumerate(b["raw"]):
                if i and b.get("chunk_delay"):
                    self.wait(float(b["chunk_delay"]))
                data = base64.b64decode(piece["base64"]) if isinstance(piece, dict) else piece.encode()
                self.write_chunk(rec, data)
            self.end_stream(rec)
            return
        text = b.get("text")
        if text is None:
            text = "mock answer: " + user_text[:200]
        u = b.get("usage") or {}
        prompt_tokens = int(u.get("prompt", 11))
        completion_tokens = int(u.get("completion", 7))
        if self.state.flavor == "openai":
            if stream:
                self.openai_stream(rec, b, req, model, text, prompt_tokens, completion_tokens)
            else:
                self.openai_whole(rec, b, model, text, prompt_tokens, completion_tokens)
        else:
            if stream:
                self.gemini_stream(rec, b, model, text, prompt_tokens, completion_tokens)
            else:
                self.gemini_whole(rec, b, model, text, prompt_tokens, completion_tokens)

    def dumps(self, b, obj):
        return json.dumps(obj, ensure_ascii=not b.get("raw_utf8"))

    def whole(self, rec, b, obj):
        data = b"this is {not JSON" if b.get("garbage") else self.dumps(b, obj).encode()
        gzipped = b.get("gzip") and "gzip" in self.headers.get("Accept-Encoding", "")
        if gzipped:
            data = gzip.compress(data)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        if gzipped:
            self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (b.get("headers") or {}).items():
            self.send_header(k, str(v))
        self.end_headers()
        rec["status"] = 200
        rec["t_headers_sent"] = time.monotonic()
        self.write(rec, data)

    def pieces(self, b, text):
        if b.get("piece_size"):
            size, n = int(b["piece_size"]), int(b.get("pieces", 10))
            filler = ("abcdefghijklmnopqrstuvwxyz0123456789" * (size // 36 + 1))[:size]
            return [filler] * n
        return split_text(text, int(b.get("chunks", 3)))

    def run_events(self, rec, b, events, sep):
        """Send SSE events (strings, or None for 'the oversized event') with
        the behaviour's pacing, cuts and injections."""
        cut_after = b.get("cut_after")
        delay = float(b.get("chunk_delay", 0))
        for i, ev in enumerate(events):
            if cut_after is not None and i >= int(cut_after):
                break
            if i and delay:
                self.wait(delay)
            elif self.client_closed():
                raise ClientGone()
            self.write_chunk(rec, b"data: " + ev.encode() + sep)
            with self.state.lock:
                rec["events_sent"] += 1
        if cut_after is not None:
            self.cut()  # no terminating chunk: the body is incomplete
            return False
        return True

    def inject(self, b, events, make_big, make_error):
        if b.get("big_event"):
            events.insert(int(b.get("big_event_at", 0)), make_big(int(b["big_event"])))
        if b.get("error_event"):
            events.insert(int(b.get("error_event_at", 1)), self.dumps(b, make_error(b["error_event"])))
        if b.get("garbage"):
            events.insert(int(b.get("garbage_at", 0)), "{this is not JSON")
        return events

    # OpenAI
    def openai_whole(self, rec, b, model, text, p, c):
        self.whole(rec, b, {
            "id": "chatcmpl-mock", "object": "chat.completion", "created": int(time.time()), "model": model,
            "system_fingerprint": "fp_mock",
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "finish_reason": b.get("finish_reason", "stop")}],
            "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c},
        })

    def openai_stream(self, rec, b, req, model, text, p, c):
        include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
        created = int(time.time())

        def chunk(choices, usage=False):
            o = {"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": created, "model": model,
                 "system_fingerprint": "fp_mock", "choices": choices}
            if include_usage:
                o["usage"] = {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c} if usage else None
            return self.dumps(b, o)

        events = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])]
        for piece in self.pieces(b, text):
            events.append(chunk([{"index": 0, "delta": {"content": piece}, "finish_reason": None}]))
        events.append(chunk([{"index": 0, "delta": {}, "finish_reason": b.get("finish_reason", "stop")}]))
        if include_usage:
            events.append(chunk([], usage=True))
        events = self.inject(
            b, events,
            lambda n: chunk([{"index": 0, "delta": {"content": "B" * n}, "finish_reason": None}]),
            lambda e: {"error": e})
        if not b.get("no_done"):
            events.append("[DONE]")
        sep = b"\r\n\r\n" if b.get("crlf") else b"\n\n"
        self.start_stream(rec)
        if self.run_events(rec, b, events, sep):
            self.end_stream(rec)

    # Gemini
    def gemini_candidate(self, text, finish=None):
        cand = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
        if finish:
            cand["finishReason"] = finish
        return cand

    def gemini_whole(self, rec, b, model, text, p, c):
        usage = {"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c}
        if b.get("block_reason"):
            obj = {"promptFeedback": {"blockReason": b["block_reason"]}, "usageMetadata": usage,
                   "modelVersion": model, "responseId": "resp-mock"}
        else:
            obj = {"candidates": [self.gemini_candidate(text, b.get("finish_reason", "STOP"))],
                   "usageMetadata": usage, "modelVersion": model, "responseId": "resp-mock"}
        self.whole(rec, b, obj)

    def gemini_stream(self, rec, b, model, text, p, c):
        finish = b.get("finish_reason", "STOP")
        pieces = self.pieces(b, text)
        events = []
        if b.get("block_reason"):
            events.append(self.dumps(b, {"promptFeedback": {"blockReason": b["block_reason"]},
                                      "usageMetadata": {"promptTokenCount": p, "totalTokenCount": p},
                                      "modelVersion": model, "responseId": "resp-mock"}))
        else:
            last_separate = not b.get("finish_on_last_piece")
            for i, piece in enumerate(pieces):
                last = i == len(pieces) - 1
                f = None
                if b.get("stop_every_chunk"):
                    f = "STOP" if not (last and not last_separate) else finish
                elif last and not last_separate:
                    f = finish
                # usage grows with each event: only the last one is the total
                done = c if (last and not last_separate) else min(c, i + 1)
                events.append(self.dumps(b, {
                    "candidates": [self.gemini_candidate(piece, f)],
                    "usageMetadata": {"promptTokenCount": p, "candidatesTokenCount": done,
                                      "totalTokenCount": p + done},
                    "modelVersion": model, "responseId": "resp-mock"}))
            if last_separate:
                events.append(self.dumps(b, {
                    "candidates": [{"content": {"role": "model", "parts": [{"text": ""}]}, "finishReason": finish,
                                    "index": 0}],
                    "usageMetadata": {"promptTokenCount": p, "candidatesTokenCount": c, "totalTokenCount": p + c},
                    "modelVersion": model, "responseId": "resp-mock"}))
        events = self.inject(
            b, events,
            lambda n: self.dumps(b, {"candidates": [self.gemini_candidate("B" * n)]}),
            lambda e: {"error": e})
        sep = b"\n\n" if b.get("crlf") is False else b"\r\n\r\n"
        self.start_stream(rec)
        if self.run_events(rec, b, events, sep):
            self.end_stream(rec)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def serve(flavor, argv=None):
    ap = argparse.ArgumentParser(description=f"mock {flavor} upstream for aigw tests")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--exit-on-stdin-eof", action="store_true")
    ap.add_argument("-v", "--verbose", action="store_true")
    opts = ap.parse_args(argv)
    srv = Server((opts.host, opts.port), Handler)
    srv.state = State(flavor)
    srv.verbose = opts.verbose
    print(srv.server_address[1], flush=True)
    if opts.exit_on_stdin_eof:
        def watch():
            try:
                while sys.stdin.buffer.read(4096):
                    pass
            finally:
                os._exit(0)
        threading.Thread(target=watch, daemon=True).start()
    try:
        srv.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    ap = argparse.ArgumentParser(add_help=False)
    ap.add_argument("--flavor", choices=("openai", "gemini"), default="openai")
    known, rest = ap.parse_known_args()
    serve(known.flavor, rest)
