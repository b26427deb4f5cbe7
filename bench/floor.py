"""The floor: what the same number of local HTTP hops costs with no framework work at all.

Three processes as in a deployment — an "agent" whose ``POST /run`` makes the seed mix's inner
calls one after another (example_single_tool_call: seed, model, tool, model, verify = 5;
example_multi_step: seed, 4 x model, 3 x tool, verify = 9; so 7 inner hops + the driver's call = 8
hops per rollout on average), a "model" and a "resources" server that answer a small JSON at once —
driven like bench/overhead.py. Stacks:

* ``fastapi``: uvicorn (uvloop + httptools) + FastAPI with a pydantic body, aiohttp client (ngym's stack)
* ``asgi``: uvicorn (uvloop + httptools) + a bare ASGI function, aiohttp client
* ``aiohttp``: aiohttp.web server (on uvloop) + aiohttp client (the fastest pure-Python pair we found)

    python bench/floor.py                          # all stacks, concurrency 1 32 256, median of 3
    python bench/floor.py --stack asgi --concurrency 256 --runs 1

Appends JSON lines to bench/results.jsonl (label "floor-<stack>").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import aiohttp
import orjson
from pydantic import BaseModel

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
from overhead import cpu_seconds, machine, rss_bytes, throughput  # noqa: E402

PLANS = {"single": ["resources", "model", "resources", "model", "resources"],
         "multi": ["resources"] + ["model", "resources"] * 3 + ["model", "resources"]}
class Body(BaseModel):
    plan: str | None = None
    input: str | None = None


ANSWER = orjson.dumps({"id": "x", "output": [{"type": "message", "content": [{"type": "output_text", "text": "ok"}]}]})


def serve(stack: str, role: str, port: int, peers: dict[str, int]) -> None:
    session: aiohttp.ClientSession | None = None

    async def inner(plan: str) -> bytes:
        nonlocal session
        if session is None:
            session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        for target in PLANS[plan]:
            async with session.post(f"http://127.0.0.1:{peers[target]}/call", data=b'{"input":"hi"}',
                                    headers={"content-type": "application/json"}) as r:
                await r.read()
        return b'{"reward":1.0}'

    async def handle(body: bytes) -> bytes:
        return await inner(orjson.loads(body)["plan"]) if role == "agent" else ANSWER

    if stack == "aiohttp":
        import uvloop
        from aiohttp import web

        async def view(request: web.Request) -> web.Response:
            return web.Response(body=await handle(await request.read()), content_type="application/json")

        app = web.Application()
        app.router.add_post("/run", view)
        app.router.add_post("/call", view)
        uvloop.install()
        web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
        return
    import uvicorn

    if stack == "asgi":
        async def asgi(scope, receive, send):  # type: ignore[no-untyped-def]
            if scope["type"] != "http":
                return
            body = b""
            while True:
                message = await receive()
                body += message.get("body", b"")
                if not message.get("more_body"):
                    break
            out = await handle(body)
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(out)).encode())]})
            await send({"type": "http.response.body", "body": out})
        app = asgi
    else:
        from fastapi import FastAPI
        from fastapi.responses import Response
        app = FastAPI()

        @app.post("/run")
        @app.post("/call")
        async def route(body: Body) -> Response:
            return Response(await handle(body.model_dump_json().encode()) if role == "agent" else ANSWER,
                            media_type="application/json")
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False, backlog=8192)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def drive(port: int, n: int, concurrency: int) -> tuple[float, list[float]]:
    latencies: list[float] = []
    todo = iter(range(n))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        async def worker() -> None:
            for i in todo:
                t = time.perf_counter()
                async with session.post(f"http://127.0.0.1:{port}/run", data=orjson.dumps({"plan": ("single", "multi")[i % 2]}),
                                        headers={"content-type": "application/json"}) as r:
                    await r.read()
                    assert r.status == 200, r.status
                latencies.append(time.perf_counter() - t)
        t0 = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - t0, latencies


def one_run(stack: str, concurrency: int, n: int) -> dict:
    ports = {role: free_port() for role in ("agent", "model", "resources")}
    procs = [subprocess.Popen([sys.executable, __file__, "--serve", role, "--stack", stack, "--ports", json.dumps(ports)])
             for role in ports]
    try:
        for port in ports.values():
            for _ in range(200):
                try:
                    socket.create_connection(("127.0.0.1", port), 0.2).close()
                    break
                except OSError:
                    time.sleep(0.05)
        pids = [p.pid for p in procs]
        asyncio.run(drive(ports["agent"], min(n, 200), min(concurrency, 32)))  # warm-up
        cpu0, me0 = cpu_seconds(pids), time.process_time()
        wall, lat = asyncio.run(drive(ports["agent"], n, concurrency))
        cpu1, me1 = cpu_seconds(pids), time.process_time()
        rss = rss_bytes(pids)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
    return {
        **throughput(n, wall, lat),
        "cpu_ms_per_rollout_servers": 1000 * (cpu1 - cpu0) / n,
        "cpu_ms_per_rollout_driver": 1000 * (me1 - me0) / n,
        "peak_rss_mb": rss / 2**20,
        "wall_s": wall,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stack", nargs="+", default=["fastapi", "asgi", "aiohttp"])
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 32, 256])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rollouts", type=int, default=0, help="per run (default: 300 at c=1, else max(2000, 8*c))")
    parser.add_argument("--out", default=str(REPO / "bench/results.jsonl"))
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    parser.add_argument("--ports", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        ports = json.loads(args.ports)
        serve(args.stack[0], args.serve, ports[args.serve], ports)
        return
    for stack in args.stack:
        for c in args.concurrency:
            n = args.rollouts or (300 if c == 1 else max(2000, 8 * c))
            runs = [one_run(stack, c, n) for _ in range(args.runs)]
            record = {
                "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "label": f"floor-{stack}", "machine": machine(), "concurrency": c, "rollouts": n, "runs": args.runs,
                "hops_per_rollout": 8,
                **{k: round(statistics.median(r[k] for r in runs), 3) for k in runs[0]},
            }
            print(json.dumps(record), flush=True)
            with open(args.out, "a") as f:
                f.write(json.dumps(record) + "\n")


if __name__ == "__main__":
    main()
