"""Issue 10's quota and cap attacks against the real server, with its default limits.

    python bench/limits.py [<project dir, default: this checkout>]

One tenant (``bench``) does what a hostile one would: 600 anonymous viewers on
one share key over WebSockets, then over Server-Sent Events; four concurrent
9.5 MB uploads through the document socket with a steering key; six
concurrent exports of that document; ``createfeed --count 150``. Prints how
many were accepted and the server's peak RSS growth. Pass another checkout
(e.g. an older commit exported with ``git archive``) to get the "before".
Uses bench.targets.StreamsiteTarget (scratch SQLite, private Redis) without
BENCH_LIMITS.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import targets  # noqa: E402

project = Path(sys.argv[1]) if len(sys.argv) > 1 else targets.REPO_ROOT
target = targets.StreamsiteTarget(project=project)
target.setup()
for name in targets.BENCH_LIMITS:
    target.env.pop(name, None)
target.env["SECURE_SSL_REDIRECT"] = "0"
target.start_server()
port = target.port
results = {}


class Peak:
    def __init__(self, pid):
        self.proc, self.peak, self.stop = psutil.Process(pid), 0, False
        self.base = self.proc.memory_info().rss
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while not self.stop:
            try:
                self.peak = max(self.peak, self.proc.memory_info().rss)
            except psutil.Error:
                return
            time.sleep(0.05)


try:
    feed = json.loads(
        target._manage("createfeed", "--tenant", "bench", "--name", "f", "--share", "--json").stdout
    )

    # A. anonymous WebSocket viewers with one share key
    async def sockets(n):
        url = f"ws://127.0.0.1:{port}/ws/feeds/{feed['uuid']}/?key={feed['key']}"
        opened, refused = [], 0
        for _ in range(n):
            ws = await websockets.connect(url, ping_interval=None)
            first = json.loads(await ws.recv())
            if first["type"] == "hello":
                opened.append(ws)
            else:
                refused += 1
                await ws.close()
        for ws in opened:
            await ws.close()
        return len(opened), refused

    results["ws_key_viewers_600"] = asyncio.run(sockets(600))
    time.sleep(2)

    # B. anonymous SSE streams with the key
    def streams(n):
        held, refused = [], 0
        for _ in range(n):
            c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            c.request("GET", f"/feeds/{feed['uuid']}/events/?key={feed['key']}")
            r = c.getresponse()
            if r.status == 200:
                r.readline()
                held.append(c)
            else:
                refused += 1
                r.read()
                c.close()
        for c in held:
            c.close()
        return len(held), refused

    results["sse_key_streams_600"] = streams(600)

    # C/D. a 9.5 MB document: 4 concurrent uploads, 6 concurrent exports
    tsv = target.tmpdir / "document.tsv"
    row = "\t".join(["x" * 9] * 9)
    lines = ["id\tvalues"] + [f"{i}\t{row}" for i in range(1, 9_900_000 // 100)]
    tsv.write_bytes(("\n".join(lines) + "\n").encode())
    doc = json.loads(
        target._manage(
            "importtsv", str(tsv), "--tenant", "bench", "--share", "steer", "--json"
        ).stdout
    )
    data = tsv.read_bytes()

    async def upload_ws():
        url = f"ws://127.0.0.1:{port}/ws/documents/{doc['uuid']}/?key={doc['key']}"
        async with websockets.connect(url, max_size=None) as ws:
            await ws.recv()  # the page
            await ws.send(data)
            while True:
                frame = json.loads(await ws.recv())
                if frame["type"] in ("uploaded", "error"):
                    return frame.get("error", "uploaded") + (
                        ":" + frame["limit"] if "limit" in frame else ""
                    )

    async def uploads():
        return await asyncio.gather(*(upload_ws() for _ in range(4)))

    def upload_all():
        return sorted(asyncio.run(uploads()))

    assert target.server is not None  # started above
    pids = target.server.pids()
    peak = Peak(pids[0])
    t0 = time.monotonic()
    results["uploads_4_concurrent"] = upload_all()
    results["uploads_seconds"] = round(time.monotonic() - t0, 1)
    peak.stop = True
    results["uploads_peak_rss_mb"] = round((peak.peak - peak.base) / 2**20)

    def export(_):
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        c.request("GET", f"/documents/{doc['uuid']}/export.tsv?key={doc['key']}")
        r = c.getresponse()
        r.read()
        return r.status

    peak = Peak(pids[0])
    with ThreadPoolExecutor(6) as pool:
        results["exports_6_concurrent"] = sorted(pool.map(export, range(6)))
    peak.stop = True
    results["exports_peak_rss_mb"] = round((peak.peak - peak.base) / 2**20)

    # E. feeds without limit
    done = target._manage(
        "createfeed", "--tenant", "bench", "--name", "many", "--count", "150", "--json", check=False
    )
    results["createfeed_150_created"] = done.stdout.count('"uuid"')
    results["createfeed_150_error"] = (
        done.stderr.strip().splitlines()[-1:] if done.returncode else []
    )
finally:
    print(json.dumps(results, indent=1))
    target.teardown()
