"""The sample MCP server shipped with mcp_tools: a key-value store with one namespace per episode.

Built on the official ``mcp`` SDK (FastMCP). Run over stdio (``python kv_server.py``) or streamable
HTTP (``python kv_server.py --transport streamable-http --port 8765``; endpoint ``/mcp``). Every tool
takes a ``namespace``: the environment fills it with the episode's key and hides it from the model,
so episodes never see each other's keys. ``snapshot`` and ``reset`` are for the environment (the
verifier reads the final state with ``snapshot``), not offered to the model.
"""

from __future__ import annotations

import argparse
from collections import defaultdict

from mcp.server.fastmcp import FastMCP

MAX_KEYS = 200
MAX_VALUE = 1000

server = FastMCP("ngym-kv", log_level="WARNING")
MAX_NAMESPACES = 20000
STORE: defaultdict[str, dict[str, str]] = defaultdict(dict)


@server.tool()
def put(namespace: str, key: str, value: str) -> str:
    """Store a value under a key (replacing any previous value)."""
    if namespace not in STORE and len(STORE) >= MAX_NAMESPACES:
        STORE.pop(next(iter(STORE)))  # the oldest episode's namespace goes first
    space = STORE[namespace]
    if key not in space and len(space) >= MAX_KEYS:
        raise ValueError(f"the store is full ({MAX_KEYS} keys); delete some first")
    if len(value) > MAX_VALUE:
        raise ValueError(f"values are at most {MAX_VALUE} characters")
    space[key] = value
    return f"stored {key}"


@server.tool()
def get(namespace: str, key: str) -> str:
    """Read the value stored under a key."""
    space = STORE[namespace]
    if key not in space:
        raise ValueError(f"no key {key!r}")
    return space[key]


@server.tool()
def delete(namespace: str, key: str) -> str:
    """Delete a key and its value."""
    if STORE[namespace].pop(key, None) is None:
        raise ValueError(f"no key {key!r}")
    return f"deleted {key}"


@server.tool()
def list_keys(namespace: str, prefix: str = "") -> list[str]:
    """List the stored keys (sorted), optionally only those starting with a prefix."""
    return sorted(k for k in STORE[namespace] if k.startswith(prefix))


@server.tool()
def snapshot(namespace: str) -> dict[str, str]:
    """Every key and value of a namespace (for the verifier)."""
    return dict(STORE[namespace])


@server.tool()
def reset(namespace: str) -> str:
    """Drop a namespace (at the end of an episode)."""
    STORE.pop(namespace, None)
    return "reset"


def main() -> None:
    parser = argparse.ArgumentParser(description="ngym's sample MCP key-value server")
    parser.add_argument("--transport", choices=["stdio", "streamable-http"], default="stdio")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    server.settings.host = args.host
    server.settings.port = args.port
    server.settings.log_level = "WARNING"
    server.run(transport=args.transport)


if __name__ == "__main__":
    main()
