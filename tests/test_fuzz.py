"""Property-based fuzzing (hypothesis) of what the collector parses: input rows, agent replies and
results files. The property is always the same: whatever the bytes, the answer is a typed one (a
task, a typed failure, a line set aside, or an :class:`InputError` naming file:line), never a crash,
and nothing is lost.

Run longer with ``NGYM_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import orjson
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from ngym.errors import InputError  # noqa: E402
from ngym.rollout.collect import load_tasks, rollout_of  # noqa: E402
from ngym.rollout.output import ROLLOUT_INDEX, TASK_INDEX, scan_results  # noqa: E402

EXAMPLES = int(os.environ.get("NGYM_FUZZ_EXAMPLES", "200"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=20)
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                           max_leaves=12)
#: rows that look like task rows often enough to get past the first checks
rows = st.fixed_dictionaries(
    {"responses_create_params": st.one_of(json_values, st.fixed_dictionaries({"input": json_values}, optional={
        "temperature": json_values, "tools": json_values, "max_output_tokens": json_values}))},
    optional={"agent_ref": json_values | st.fixed_dictionaries({"name": st.text(max_size=6)}), "extra": json_values},
)


def encode(value: Any) -> bytes:
    """JSON as a sloppy writer would produce it: NaN/Infinity and huge integers included."""
    return json.dumps(value, allow_nan=True).encode()


lines = st.one_of(rows.map(encode), json_values.map(encode), st.binary(max_size=40))


@FUZZ
@given(body=st.one_of(st.binary(max_size=60), json_values.map(encode), st.builds(lambda r: encode({"reward": r}), json_values)))
def test_any_agent_reply_is_a_rollout_with_a_finite_reward_or_a_reason(body: bytes) -> None:
    result, problem = rollout_of(body)
    if result is None:
        assert problem
    else:
        reward = result["reward"]
        assert isinstance(reward, int | float) and not isinstance(reward, bool) and math.isfinite(reward)


@FUZZ
@given(content=st.lists(lines, max_size=8))
def test_any_input_file_gives_tasks_or_an_input_error_naming_its_lines(tmp_path: Path, content: list[bytes]) -> None:
    path = tmp_path / "in.jsonl"
    path.write_bytes(b"\n".join(line.replace(b"\n", b" ") for line in content) + b"\n")
    try:
        tasks = load_tasks(path, agent_name="a", agents=["a"], num_repeats=2)
    except InputError as e:
        assert f"{path}:" in str(e)
        return
    for task in tasks:
        orjson.dumps(task.row)  # what is sent can be sent
        assert task.agent == "a" and len(task.fp) == 16


results = st.one_of(
    st.builds(lambda t, r, extra: encode({TASK_INDEX: t, ROLLOUT_INDEX: r, "reward": 1.0, **extra}),
              st.integers(0, 3) | st.text(max_size=2), st.integers(0, 2), st.dictionaries(st.text(max_size=5), json_values, max_size=2)),
    lines,
)


@FUZZ
@given(content=st.lists(results, max_size=10), cut=st.booleans())
def test_any_results_file_is_kept_or_set_aside_line_by_line(tmp_path: Path, content: list[bytes], cut: bool) -> None:
    out = tmp_path / "fuzz_out.jsonl"
    aside = tmp_path / "fuzz_out_set_aside.jsonl"
    aside.unlink(missing_ok=True)
    body = b"\n".join(line.replace(b"\n", b" ") for line in content)
    out.write_bytes(body + (b"" if cut else b"\n"))
    scan = scan_results(out)
    kept = [orjson.loads(line) for line in out.read_bytes().splitlines() if line.strip()]  # all parse now
    assert len(kept) == scan.kept and len({(int(r[TASK_INDEX]), int(r[ROLLOUT_INDEX])) for r in kept}) == len(kept)
    set_aside = [json.loads(line) for line in aside.read_text().splitlines()] if aside.exists() else []
    complete = body.split(b"\n") if not cut else body.split(b"\n")[:-1]
    # nothing is lost: every complete non-blank line is kept or set aside, with its line number
    assert scan.kept + len(set_aside) == sum(1 for line in complete if line.strip())
    assert all(complete[a["line"] - 1].strip() for a in set_aside)


# ---- the servers' HTTP routes ---------------------------------------------------------------------
# Every POST route of every example environment, the simple agent and the model server, in process
# (the whole app: fast path and full stack), with arbitrary bytes, arbitrary JSON and JSON objects
# made of the keys the routes read. The property: never a 5xx from a bad body (a server error is a
# bug); every answer is JSON, an error answer an object saying what was wrong.

import asyncio  # noqa: E402
import importlib  # noqa: E402
import inspect  # noqa: E402

import httpx  # noqa: E402
from fastapi.routing import APIRoute  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from ngym.env.resources import ResourcesServerBase  # noqa: E402
from ngym.server import local  # noqa: E402
from ngym.server.client import ServerClient  # noqa: E402
from ngym.server.fastpath import FastPathApp  # noqa: E402
from responses_api_agents.simple_agent.app import SimpleAgent  # noqa: E402
from responses_api_models.scripted_model.app import ScriptedModel  # noqa: E402
from tests.fakes import REPO, make, ref  # noqa: E402

ENVIRONMENTS = sorted(p.parent.parent.name for p in REPO.glob("resources_servers/*/configs/*.yaml"))


def _environment(env: str) -> Any:
    """The environment of ``resources_servers/<env>``, configured by its own YAML."""
    try:
        module = importlib.import_module(f"resources_servers.{env}.app")
    except ImportError as e:  # an optional extra (text_games needs textarena)
        pytest.skip(f"{env}: {e}")
    klass = next(v for v in vars(module).values() if inspect.isclass(v) and issubclass(v, ResourcesServerBase)
                 and v.__module__ == module.__name__)
    for path in sorted(REPO.glob(f"resources_servers/{env}/configs/*.yaml")):
        sections = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
        assert isinstance(sections, dict)
        for section in sections.values():
            settings = (section or {}).get("resources_servers", {}).get(env)
            if settings is not None:
                return make(klass, env, **{k: v for k, v in settings.items() if k != "entrypoint"})
    raise AssertionError(f"{env}: no resources_servers section in its configs")


@pytest.fixture(scope="module")
def deployment() -> Any:
    """Every example environment, the simple agent (on example_multi_step) and the scripted model,
    registered in process under the names their configs use."""
    servers: dict[str, Any] = {"policy_model": make(ScriptedModel, "policy_model")}
    for env in ENVIRONMENTS:
        try:
            servers[env] = _environment(env)
        except pytest.skip.Exception:
            continue
    servers["agent"] = make(SimpleAgent, "agent", resources_server=ref("resources_servers", "example_multi_step"),
                            model_server=ref("responses_api_models", "policy_model"))
    urls = {name: f"http://127.0.0.1:{41001 + i}" for i, name in enumerate(servers)}
    client = ServerClient(urls)
    apps: dict[str, FastPathApp] = {}
    for name, server in servers.items():
        server.server_client = client
        apps[name] = server.build_app()
        local.register(urls[name], apps[name])
    yield apps
    for url in urls.values():
        local.unregister(url)


def _post_routes(app: FastPathApp) -> list[str]:
    return sorted({r.path for r in app.app.routes if isinstance(r, APIRoute) and "POST" in (r.methods or ()) and "{" not in r.path})


def _keys(app: FastPathApp) -> list[str]:
    """Every property name the app's OpenAPI schema mentions: the keys its routes read."""
    found: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "properties" and isinstance(value, dict):
                    found.update(value)
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(app.app.openapi())
    return sorted(found) or ["x"]


ROUTE_EXAMPLES = max(10, EXAMPLES // 4)


def _bodies(keys: list[str]) -> Any:
    objects = st.dictionaries(st.sampled_from(keys), json_values, max_size=6)
    episode = st.fixed_dictionaries(
        {"responses_create_params": st.fixed_dictionaries({"input": json_values | st.text(max_size=10)}),
         "response": st.fixed_dictionaries({"id": st.text(max_size=4), "created_at": st.floats(), "output": json_values})},
        optional={k: json_values for k in keys[:12]})
    return st.one_of(st.binary(max_size=60), json_values.map(encode), objects.map(encode), episode.map(encode))


@pytest.mark.parametrize("server", [*ENVIRONMENTS, "agent", "policy_model"])
def test_no_post_body_makes_a_server_answer_5xx(deployment: dict[str, FastPathApp], server: str) -> None:
    if server not in deployment:
        pytest.skip(f"{server} is not importable here")
    app = deployment[server]
    first = asyncio.run(_post(app, "/seed_session", b"{}")) if server in ENVIRONMENTS else None
    if first is not None and first.status_code == 500 and "ModuleNotFoundError" in first.text:
        pytest.skip(f"{server} needs an optional extra: {first.json()['error']}")  # e.g. math_verify
    routes = _post_routes(app)
    assert routes, f"{server} has no POST route"
    seen: dict[str, int] = {}

    @settings(max_examples=ROUTE_EXAMPLES * len(routes), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(path=st.sampled_from(routes), body=_bodies(_keys(app)))
    def check(path: str, body: bytes) -> None:
        answer = asyncio.run(_post(app, path, body))
        seen[path] = seen.get(path, 0) + 1
        assert answer.status_code < 500, f"POST {server}{path} {body[:300]!r} -> {answer.status_code} {answer.text[:500]}"
        payload = answer.json()  # every answer is JSON
        if answer.status_code >= 400:
            assert isinstance(payload, dict) and ({"detail", "error"} & set(payload)), answer.text[:300]

    check()
    assert set(seen) == set(routes) or ROUTE_EXAMPLES < 20  # every route was tried


async def _post(app: FastPathApp, path: str, body: bytes) -> httpx.Response:
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://fuzz") as http:
        return await http.post(path, content=body, headers={"content-type": "application/json"})


# what the route fuzzing found, pinned (each answered 500 before its fix)
FOUND = [
    # the 422 handler itself failed on a >64-bit integer (orjson): fixed in ngym/server/middleware.py
    ("example_multi_step", "/seed_session", b"-9223372036854775809", 422),
    ("agent", "/run", b'{"responses_create_params": 18446744073709551616}', 422),
    # /verify echoed a >64-bit integer of the row and its answer could not be written: now bad_input
    ("example_single_tool_call", "/verify", b'{"responses_create_params": {"input": ""}, "response": {"id": "", '
     b'"created_at": 0.0, "output": []}, "annotations": -9223372036854775809}', 422),
    # /run of the agent failed sending such a row on to /seed_session (found by the 2,000-example run)
    ("agent", "/run", b'{"responses_create_params": {"input": ""}, "annotations": -9223372036854775809}', 422),
    # a tool reading self.task without a seeded episode (no session cookie): the caller's mistake, a 409
    ("text_to_sql", "/list_tables", b"", 409),
    # a model server without chat completions (the scripted model) raised NotImplementedError: a 404
    ("policy_model", "/v1/chat/completions", b'{"messages":[]}', 404),
]


@pytest.mark.parametrize(("server", "path", "body", "status"), FOUND)
def test_what_route_fuzzing_found(deployment: dict[str, FastPathApp], server: str, path: str, body: bytes, status: int) -> None:
    answer = asyncio.run(_post(deployment[server], path, body))
    assert answer.status_code == status, answer.text
    payload = orjson.loads(answer.content)
    assert "detail" in payload or payload.get("kind") in ("bad_input", "resources_error")
