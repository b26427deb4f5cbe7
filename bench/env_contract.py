"""CPU per call of an environment's hot routes: ``/seed_session``, a tool and ``/verify`` of
example_multi_step (its first example row; a response of 14 output items), through the served app
(the fast path), without sockets. Prints the median over 7 rounds of 2,000 calls, in µs.

Run from a checkout's root (compare two checkouts with the same interpreter)::

    PYTHONPATH=. python bench/env_contract.py
"""
import asyncio
import json
import statistics
import time
from pathlib import Path

from ngym.server.client import ServerClient
from resources_servers.example_multi_step.app import MultiStepResourcesServer

row = json.loads(Path("resources_servers/example_multi_step/data/example.jsonl").read_text().splitlines()[0])
msg = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "ok"}]}
calls = [{"type": "function_call", "call_id": f"c{i}", "name": "get_synonym_value", "arguments": json.dumps({"synonym": "Warm"})} for i in range(6)]
outs = [{"type": "function_call_output", "call_id": f"c{i}", "output": json.dumps({"synonym_value": 407})} for i in range(6)]
verify_row = {**row, "response": {"output": [*calls, *outs, {"type": "function_call", "call_id": "x", "name": "extract_synonym_values", "arguments": json.dumps({"synonym_values": [711, 407]})}, msg]}}
config = MultiStepResourcesServer.config_type().model_validate({"name": "env", "entrypoint": "app.py", "domain": "other"})
app = MultiStepResourcesServer(config, ServerClient({})).build_app()

async def call(path: str, body: bytes, cookie: bytes | None) -> bytes:
    headers = [(b"content-type", b"application/json")] + ([(b"cookie", cookie)] if cookie else [])
    scope = {"type": "http", "method": "POST", "path": path, "headers": headers, "query_string": b"", "http_version": "1.1", "scheme": "http", "server": ("x", 80), "client": ("y", 1), "root_path": ""}
    sent = []
    done = False
    async def receive():
        nonlocal done
        if done:
            await asyncio.Future()
        done = True
        return {"type": "http.request", "body": body, "more_body": False}
    async def send(m):
        sent.append(m)
    await app(scope, receive, send)
    assert sent[0]["status"] == 200, (path, sent)
    return dict(sent[0]["headers"]).get(b"set-cookie", b"").split(b";")[0]

async def main():
    seed, tool, ver = json.dumps(row).encode(), json.dumps({"synonym": "Warm"}).encode(), json.dumps(verify_row).encode()
    res = {"seed": [], "tool": [], "verify": []}
    for rep in range(7):
        for name, path, body in (("seed", "/seed_session", seed), ("tool", "/get_synonym_value", tool), ("verify", "/verify", ver)):
            cookie = await call("/seed_session", seed, None)
            n = 2000
            t0 = time.process_time()
            for _ in range(n):
                await call(path, body, cookie)
            res[name].append((time.process_time() - t0) / n * 1e6)
    print({k: round(statistics.median(v), 1) for k, v in res.items()})

asyncio.run(main())
