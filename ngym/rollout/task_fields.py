"""Rows checked up front against the task fields their environment declares (``GET /spec``).

An environment written on the typed contract (:class:`ngym.env.Environment`) answers ``GET /spec``
with ``task_schema``, the JSON schema of its task. Before anything is sent,
:func:`check_task_fields` reads that schema from the resources server behind each agent the rows
name (the agent's ``resources_server``), and checks every row: each required field present, each
top-level field of the JSON type the schema declares. A row that does not fit is a ``bad_input``
found before the first episode instead of after it, reported by file:line and field; nothing is
sent. Servers without ``/spec`` (reference-style servers: 404) are not checked.

The check is the schema's top level only (required fields and their JSON types); the environment
still validates the whole task when the episode starts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
from omegaconf import DictConfig, OmegaConf

from ngym.errors import InputError, NgymError
from ngym.rollout.collect import Task
from ngym.server.client import ServerClient

#: how long a server may take to answer ``GET /spec``
SPEC_TIMEOUT_S = 30.0
#: problems listed in one error before "... and N more"
MAX_LISTED = 20

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def resources_server_of(config: DictConfig | None, agent: str) -> str | None:
    """The resources server instance an agent's config names, if any."""
    if config is None or agent not in config:
        return None
    section = OmegaConf.to_container(config[agent], resolve=False)
    if not isinstance(section, dict):
        return None
    for body in (section.get("responses_api_agents") or {}).values():
        ref = body.get("resources_server") if isinstance(body, dict) else None
        name = ref.get("name") if isinstance(ref, dict) else None
        if isinstance(name, str):
            return name
    return None


async def task_schema(client: ServerClient, server: str) -> dict[str, Any] | None:
    """The task schema ``server`` declares, or None when it has no ``/spec`` (or no schema)."""
    if server not in client.urls:
        return None
    try:
        reply = await asyncio.wait_for(client.get(server, "/spec"), SPEC_TIMEOUT_S)
    except (NgymError, httpx.HTTPError, OSError, TimeoutError):
        return None  # unreachable or hung: the run itself reports it, as a typed failure per rollout
    if reply.status_code != 200:
        return None
    try:
        spec = reply.json()
    except ValueError:
        return None
    schema = spec.get("task_schema") if isinstance(spec, dict) else None
    return schema if isinstance(schema, dict) else None


def _types(prop: Any, defs: dict[str, Any]) -> set[str] | None:
    """The JSON types a property allows, or None when any value may do (or it is too rich to tell)."""
    if not isinstance(prop, dict):
        return None
    if "$ref" in prop:
        target = defs.get(str(prop["$ref"]).rsplit("/", 1)[-1])
        return _types(target, defs) if target is not None else None
    if isinstance(prop.get("type"), str):
        return {prop["type"]}
    if isinstance(prop.get("type"), list):
        return {t for t in prop["type"] if isinstance(t, str)}
    options = prop.get("anyOf") or prop.get("oneOf")
    if isinstance(options, list):
        found: set[str] = set()
        for option in options:
            t = _types(option, defs)
            if t is None:
                return None
            found |= t
        return found
    if "enum" in prop or "const" in prop:
        return None
    if "properties" in prop:
        return {"object"}
    return None


def _fits(value: Any, types: set[str]) -> bool:
    if isinstance(value, bool):  # a bool is an int to Python, not to JSON schema
        return "boolean" in types
    if isinstance(value, float) and value.is_integer() and "integer" in types:
        return True
    return any(isinstance(value, _JSON_TYPES[t]) for t in types if t in _JSON_TYPES)


def row_problems(row: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """What in ``row`` does not fit the top level of ``schema`` (empty: it fits)."""
    problems = []
    properties = schema.get("properties") or {}
    defs = schema.get("$defs") or schema.get("definitions") or {}
    for name in schema.get("required") or []:
        if name not in row:
            problems.append(f"missing task field {name!r}")
    for name, prop in properties.items():
        if name not in row:
            continue
        types = _types(prop, defs)
        if types and not _fits(row[name], types):
            shown = repr(row[name])
            shown = shown if len(shown) <= 60 else shown[:57] + "..."
            problems.append(f"task field {name!r} must be {' or '.join(sorted(types))} (got {shown})")
    return problems


async def check_task_fields(client: ServerClient, input_path: Path, tasks: Iterable[Task]) -> None:
    """Raise :class:`InputError` listing every row (by file:line) whose task fields do not fit the
    schema of its environment; rows of environments without ``/spec`` are not checked."""
    schemas: dict[str, tuple[str, dict[str, Any]] | None] = {}
    problems: list[str] = []
    count = 0
    seen: set[int] = set()
    for task in tasks:
        if task.line in seen:  # the repeats of a row are the same row
            continue
        seen.add(task.line)
        if task.agent not in schemas:
            server = resources_server_of(client.config, task.agent)
            schema = await task_schema(client, server) if server is not None else None
            schemas[task.agent] = (server, schema) if server is not None and schema is not None else None
        known = schemas[task.agent]
        if known is None:
            continue
        server, schema = known
        for problem in row_problems(task.row, schema):
            count += 1
            if len(problems) < MAX_LISTED:
                problems.append(f"{input_path}:{task.line}: {problem} (environment {server!r}, agent {task.agent!r})")
    if problems:
        more = f"\n... and {count - len(problems)} more" if count > len(problems) else ""
        raise InputError(
            f"bad_input: {count} row problem(s) against the task fields the environments declare (GET /spec "
            f"task_schema); nothing was sent:\n" + "\n".join(problems) + more
            + "\nFix the data rows (or point their agent_ref at the environment they were written for)."
        )
