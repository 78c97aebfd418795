#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""The official `openai` npm client (chat.completions.create, plain and
streamed, errors) against aigw with the mock model and an OpenAI-type mock
upstream (tests/upstream/mock_openai.py).

The package is installed with npm into a cache directory at test time
($AIGW_NPM_CACHE_DIR, else $XDG_CACHE_HOME/aigw-tests or ~/.cache/aigw-tests)
and reused by later runs. openai 7 needs Node >= 22; on older Node the
newest 6.x is used ($AIGW_OPENAI_NPM_SPEC overrides the choice). Exits 77
(skipped) when node or npm is missing or the installation fails.

    python3 tests/openai-client/test_openai_client.py --aigw build/aigw --source-dir .
"""

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "chat"))
import chatlib  # noqa: E402
from chatlib import Mock, backend, check, config, eq, fail, model, start  # noqa: E402
from harness import Skip, test  # noqa: E402

INSTALL_TIMEOUT = 240


def node_major(node):
    p = subprocess.run([node, "--version"], capture_output=True, timeout=30)
    m = re.match(r"v(\d+)\.", p.stdout.decode())
    return int(m.group(1)) if m else 0


def cache_root():
    d = os.environ.get("AIGW_NPM_CACHE_DIR")
    if d:
        return d
    base = os.environ.get("XDG_CACHE_HOME") or (os.path.join(os.path.expanduser("~"), ".cache")
                                                if os.path.expanduser("~") != "~" else None)
    if base:
        return os.path.join(base, "aigw-tests")
    return os.path.join(tempfile.gettempdir(), "aigw-tests")


def install(t):
    """Directory with node_modules/openai and a copy of client.mjs, or Skip."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        raise Skip(f"node or npm not installed (node: {node}, npm: {npm})")
    major = node_major(node)
    spec = os.environ.get("AIGW_OPENAI_NPM_SPEC") or ("openai" if major >= 22 else "openai@6")
    if spec == "openai@6":
        t.note(f"Node {major}: openai 7 needs Node >= 22, using {spec}")
    d = os.path.join(cache_root(), "openai-client-" + re.sub(r"[^A-Za-z0-9.@_-]", "_", spec))
    pkg = os.path.join(d, "node_modules", "openai", "package.json")
    if not os.path.exists(pkg):
        try:
            os.makedirs(d, exist_ok=True)
            with open(os.path.join(d, "package.json"), "w") as f:
                json.dump({"name": "aigw-openai-client-test", "private": True}, f)
        except OSError as e:
            raise Skip(f"cannot create {d}: {e}")
        argv = [npm, "install", "--no-audit", "--no-fund", "--no-save", "--loglevel=error", "--prefix", d, spec]
        t.note("running: " + " ".join(argv))
        try:
            p = subprocess.run(argv, cwd=d, stdin=subprocess.DEVNULL, capture_output=True, timeout=INSTALL_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise Skip(f"npm install {spec} took longer than {INSTALL_TIMEOUT} s")
        if p.returncode != 0 or not os.path.exists(pkg):
            err = (p.stderr or p.stdout).decode("utf-8", "replace").strip().splitlines()
            raise Skip(f"npm install {spec} failed (exit {p.returncode}): {' | '.join(err[-5:])}")
    with open(pkg) as f:
        t.note(f"openai npm package {json.load(f).get('version')} (Node {major}) in {d}")
    shutil.copy(os.path.join(HERE, "client.mjs"), os.path.join(d, "client.mjs"))
    return node, d


@test(timeout=INSTALL_TIMEOUT + 60)
def test_openai_npm_client(t):
    node, d = install(t)
    m = Mock(t, "openai")
    a = start(t, config(backend("local", "mock", mock_chunks=3), backend("oa", "openai", m.url),
                        model("mock", "local"), model("gpt-up", "oa", upstream_model="upstream-gpt"),
                        default_model="mock"))
    env = dict(os.environ, AIGW_BASE_URL=f"http://127.0.0.1:{a.port}")
    for k in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID", "HTTP_PROXY",
              "HTTPS_PROXY", "http_proxy", "https_proxy"):
        env.pop(k, None)
    try:
        p = subprocess.run([node, os.path.join(d, "client.mjs")], cwd=d, env=env, stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        fail("the node client hung")
    out = p.stdout.decode("utf-8", "replace").strip()
    err = p.stderr.decode("utf-8", "replace").strip()
    try:
        res = json.loads(out.splitlines()[-1]) if out else {}
    except ValueError:
        res = {}
    check(p.returncode == 0 and "failure" not in res,
          f"node client failed (exit {p.returncode}): {res.get('failure') or out[-1500:]}\n{err[-1500:]}")
    t.note(f"{res.get('checks')} checks in the node client; not found: {res['not_found']['message']!r}; "
           f"broken stream: {res['broken_stream']['error']!r}")

    reqs = m.chat_requests()
    # plain, stream, stream+usage, broken stream
    eq(len(reqs), 4, "requests that reached the mock upstream")
    eq({r["json"]["model"] for r in reqs}, {"upstream-gpt"}, "upstream model")
    eq([bool(r["json"].get("stream")) for r in reqs], [False, True, True, True], "stream flags upstream")
    for r in reqs:
        check("sk-client-side-not-checked" not in json.dumps(r["headers"]),
              "the client's API key was passed upstream")


if __name__ == "__main__":
    chatlib.main()
