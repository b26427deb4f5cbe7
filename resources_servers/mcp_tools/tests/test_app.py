"""mcp_tools against the shipped MCP server, started for real (stdio and streamable HTTP): the tools
the model gets, the oracle, per-episode isolation, the verifier over the final state, and hacks."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from ngym.devkit.testing.asgi import wire
from ngym.server.client import ServerClient, response_cookies
from resources_servers.mcp_tools.app import McpToolsEnvironment
from resources_servers.mcp_tools.generate import TEMPLATES, generate
from tests.fakes import make

pytestmark = pytest.mark.anyio
ENV_DIR = Path(__file__).resolve().parents[1]
EXAMPLES = [json.loads(line) for line in (ENV_DIR / "data" / "example.jsonl").read_text().splitlines()]


@asynccontextmanager
async def served(**settings: Any) -> AsyncIterator[ServerClient]:
    env = make(McpToolsEnvironment, "env", domain="agent", **settings)
    try:
        yield wire({"env": env})
    finally:
        connection = getattr(env, "connection", None)
        if connection is not None:
            await connection.close()


def said(text: str) -> dict[str, Any]:
    return {"output": [{"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": text}]}]}


async def oracle(client: ServerClient, cookies: dict[str, str], row: dict[str, Any]) -> None:
    """Make the store equal to the expected state with the model's tools only."""
    keys = (await client.post("env", "/list_keys", json={}, cookies=cookies)).json()["result"]
    for key in keys:
        if key not in row["expected_state"]:
            assert "result" in (await client.post("env", "/delete", json={"key": key}, cookies=cookies)).json()
    for key, value in row["expected_state"].items():
        await client.post("env", "/put", json={"key": key, "value": value}, cookies=cookies)


async def verify(client: ServerClient, cookies: dict[str, str], row: dict[str, Any], text: str = "done") -> dict[str, Any]:
    result = await client.post("env", "/verify", json={**row, "response": said(text)}, cookies=cookies)
    assert result.status_code == 200, result.text
    return dict(result.json())


async def test_stdio_tools_oracle_empty_and_isolation() -> None:
    async with served() as client:
        seeded = await client.post("env", "/seed_session", json=EXAMPLES[0])
        tools = {t["name"]: t for t in seeded.json()["tools"]}
        assert sorted(tools) == ["delete", "get", "list_keys", "put"]
        assert "namespace" not in json.dumps(tools) and tools["put"]["parameters"]["required"] == ["key", "value"]
        rows = EXAMPLES + [r for r in generate("validation", 40, 3)]
        assert {r["template"] for r in rows} == set(TEMPLATES)
        for row in rows:
            cookies = response_cookies(await client.post("env", "/seed_session", json=row))
            empty = response_cookies(await client.post("env", "/seed_session", json=row))
            await oracle(client, cookies, row)
            body = await verify(client, cookies, row)
            assert body["reward"] == 1.0 and body["key_accuracy"] == 1.0, body
            untouched = await verify(client, empty, row)   # the other episode's store was not changed
            assert untouched["reward"] == 0.0 and untouched["final_state"] == row["initial_state"]


async def test_verifier_details_and_hacks() -> None:
    async with served(max_calls=5) as client:
        row = next(r for r in generate("validation", 40, 3) if r["template"] == "sum")
        cookies = response_cookies(await client.post("env", "/seed_session", json=row))
        # saying it is done does nothing
        claim = await verify(client, cookies, row, text=f"done: total = {row['expected_state']['total']}")
        assert claim["reward"] == 0.0 and claim["missing"] == ["total"]
        # a wrong value, then an extra key
        await client.post("env", "/put", json={"key": "total", "value": "-1"}, cookies=cookies)
        assert (await verify(client, cookies, row))["wrong"] == ["total"]
        await client.post("env", "/put", json={"key": "total", "value": row["expected_state"]["total"]}, cookies=cookies)
        await client.post("env", "/put", json={"key": "junk", "value": "1"}, cookies=cookies)
        body = await verify(client, cookies, row)
        assert body["reward"] == 0.0 and body["extra"] == ["junk"] and 0 < body["key_accuracy"] < 1
        # the namespace cannot be chosen, hidden tools cannot be called, unknown tools are refused
        other = await client.post("env", "/put", json={"key": "x", "value": "1", "namespace": "n"}, cookies=cookies)
        assert "unknown argument 'namespace'" in other.json()["error"]
        assert (await client.post("env", "/snapshot", json={}, cookies=cookies)).status_code == 404
        assert (await client.post("env", "/reset", json={}, cookies=cookies)).status_code == 404
        assert "error" in (await client.post("env", "/get", json={"key": "nope"}, cookies=cookies)).json()
        # the call budget
        await client.post("env", "/delete", json={"key": "junk"}, cookies=cookies)
        assert "at most 5 tool calls" in (await client.post("env", "/list_keys", json={}, cookies=cookies)).json()["error"]
        assert (await verify(client, cookies, row))["reward"] == 1.0
        # a call without an episode
        assert "seed_session first" in (await client.post("env", "/list_keys", json={})).json()["error"]


async def test_streamable_http_transport() -> None:
    async with served(server={"transport": "streamable_http", "command": sys.executable}) as client:
        for row in EXAMPLES[:3]:
            cookies = response_cookies(await client.post("env", "/seed_session", json=row))
            await oracle(client, cookies, row)
            assert (await verify(client, cookies, row))["reward"] == 1.0


async def test_unreachable_server_is_a_verifier_error() -> None:
    async with served(server={"transport": "streamable_http", "url": "http://127.0.0.1:9/mcp",
                              "startup_timeout_s": 5}) as client:
        result = await client.post("env", "/seed_session", json=EXAMPLES[0])
        assert result.status_code == 500 and "cannot open the MCP session" in result.text


def test_generator() -> None:
    rows = list(generate("train", 200, 1))
    assert rows == list(generate("train", 200, 1)) and rows != list(generate("train", 200, 2))
    assert all(r["initial_state"] != r["expected_state"] for r in rows)
