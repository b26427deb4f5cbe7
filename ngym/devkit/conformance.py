"""Conformance check of an environment (``resources_servers/<name>``): what ``ng_test`` runs after
the environment's own tests, and what CI runs over every environment.

    check_server("resources_servers/my_env")            -> Conformance (a list of named checks)
    check_server("resources_servers/my_env", should_validate_data=True)

Checks, in order (a failed step skips the ones that depend on it):

* ``config``: ``configs/<name>.yaml`` (else every ``configs/*.yaml``) parses; one resources-server
  instance of this implementation, with a ``domain``; an agent instance refers to it; its
  datasets are valid entries, one of them of type example.
* ``app``: ``app.py`` defines an :class:`~ngym.env.Environment` (or reference-style
  :class:`~ngym.env.resources.ResourcesServer`) subclass whose config type accepts the instance's
  settings (and, for an ``Environment``, whose tool and type declarations are valid).
* ``example data``: ``data/example.jsonl`` holds exactly 5 valid rows.
* ``tools``: for an ``Environment``, the tools a row carries agree with the declared ones (rows may
  leave ``tools`` out); for a reference-style server, every tool the example rows declare is a POST
  route whose request body accepts what the tool's parameters promise (same required keys,
  compatible JSON types, no argument the route would reject).
* ``verify``: ``/seed_session`` then ``/verify`` with a scripted response (an empty output, and a
  single assistant message) give HTTP 200 and a finite float ``reward`` for every example row; an
  environment whose settings refer to a model server (an LLM judge) may answer a typed failure
  (``verifier_error``) instead, as no model server runs here.
* with ``should_validate_data``: ``data/example_metrics.json`` exists, counts 5 examples and agrees
  with the data (as ``ng_prepare_data`` would compute it); no ``data/*conflict*`` file; an
  ``example_rollouts.jsonl``, if present, holds 5 rollouts with a reward.

Servers run in-process (ASGI), so no port is opened and no model is needed.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from omegaconf import DictConfig

from ngym.config.loader import ParserConfig, load_config
from ngym.config.paths import resolve_path
from ngym.data.dataset_metrics import differences
from ngym.errors import FailureKind, NgymError
from ngym.data.prepare import POLICY_PLACEHOLDERS, agent_datasets, check_row, metrics_document, read_dataset
from ngym.env.environment import Environment
from ngym.env.resources import ResourcesServerBase
from ngym.config.instance import parse_instance
from ngym.server.loader import load_app
from ngym.server.client import ServerClient, response_cookies
from ngym.devkit.testing.asgi import in_process_client
from ngym.wire.responses import Message, OutputText, Response

EXAMPLE_ROWS = 5
RESERVED_ROUTES = frozenset({"verify", "seed_session", "close_session"})
#: JSON-schema types a value of the tool's declared type may arrive as, per route type
ACCEPTS = {"number": {"number", "integer"}}


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class Conformance:
    """The outcome of :func:`check_server`: one :class:`Check` per step."""

    env_dir: Path
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def problems(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]

    def add(self, name: str, problems: list[str], ok_detail: str = "") -> bool:
        self.checks.append(Check(name, not problems, "; ".join(problems) if problems else ok_detail))
        return not problems

    def format(self) -> str:
        lines = [f"conformance of {self.env_dir}:"]
        for c in self.checks:
            lines.append(f"  {'ok  ' if c.ok else 'FAIL'}  {c.name}" + (f": {c.detail}" if c.detail else ""))
        return "\n".join(lines)


@dataclass(slots=True)
class _Env:
    """What the config step found."""

    cfg: DictConfig
    instance: str
    agents: list[str]
    example_path: Path | None


def project_root(env_dir: Path) -> Path:
    """The directory holding ``resources_servers/`` (where relative dataset paths start)."""
    return env_dir.parent.parent if env_dir.parent.name == "resources_servers" else env_dir


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    import os

    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _refs(body: Any) -> list[tuple[str, str]]:
    if not isinstance(body, DictConfig):
        return []
    out = []
    for key in body:
        value = body._get_node(str(key))
        if isinstance(value, DictConfig) and set(map(str, value.keys())) == {"type", "name"}:
            out.append((str(value.type), str(value.name)))
    return out


def _check_config(env_dir: Path, report: Conformance) -> _Env | None:
    name = env_dir.name
    main = env_dir / "configs" / f"{name}.yaml"
    paths = [main] if main.is_file() else sorted((env_dir / "configs").glob("*.yaml"))
    if not paths:
        report.add("config", [f"no configs/*.yaml in {env_dir}; `ng_init_resources_server` shows the layout"])
        return None
    problems: list[str] = []
    try:
        pc = ParserConfig(
            cli_args=[f"+config_paths=[{','.join(str(p) for p in paths)}]"],
            initial_global_config_dict=dict(POLICY_PLACEHOLDERS),
            skip_load_from_dotenv=True,
            cwd=project_root(env_dir),
        )
        cfg = load_config(pc)
        found = agent_datasets(cfg, pc.sources)
    except NgymError as e:
        report.add("config", [str(e)])
        return None
    instances = [
        str(k) for k in cfg
        if isinstance(cfg._get_node(str(k)), DictConfig)
        and "resources_servers" in cfg[str(k)]
        and isinstance(cfg[str(k)].resources_servers, DictConfig)
        and name in cfg[str(k)].resources_servers
    ]
    if len(instances) != 1:
        report.add("config", [f"expected one resources_servers instance of implementation {name!r}, found {instances}"])
        return None
    instance = instances[0]
    if not cfg[instance].resources_servers[name].get("domain"):
        problems.append(f"{instance} -> resources_servers -> {name}: no `domain` (e.g. domain: other)")
    agents = [
        str(k) for k in cfg
        if isinstance(cfg._get_node(str(k)), DictConfig) and "responses_api_agents" in cfg[str(k)]
        and any(("resources_servers", instance) in _refs(b) for b in cfg[str(k)].responses_api_agents.values())
    ]
    if not agents:
        problems.append(f"no responses_api_agents instance refers to {{type: resources_servers, name: {instance}}}")
    examples = [d for agent, ds in found if agent in agents for d in ds if d.type == "example"]
    example_path = None
    if not examples:
        problems.append(f"the agent(s) {agents} declare no dataset of type example")
    else:
        example_path = resolve_path(examples[0].jsonl_fpath, project_root(env_dir))
        if not example_path.is_file():
            where = project_root(env_dir)
            problems.append(f"example dataset {examples[0].jsonl_fpath!r} does not exist (relative to {where})")
            example_path = None
    ok = report.add("config", problems, f"{instance} with agent(s) {', '.join(agents)}")
    return _Env(cfg, instance, agents, example_path) if ok else None


def _import_app(env_dir: Path) -> ModuleType:
    """``app.py`` imported as a library module (its ``__main__`` block does not run)."""
    return load_app(env_dir / "app.py", as_main=False, extra_paths=(project_root(env_dir),)).module


def _server_class(module: ModuleType) -> type[ResourcesServerBase] | None:
    classes = [
        c for c in vars(module).values()
        if inspect.isclass(c) and issubclass(c, ResourcesServerBase) and c.__module__ == module.__name__
    ]
    leaves = [c for c in classes if not any(o is not c and issubclass(o, c) for o in classes)]
    return leaves[0] if len(leaves) == 1 else None


def _check_app(env_dir: Path, env: _Env, report: Conformance) -> ResourcesServerBase | None:
    try:
        module = _import_app(env_dir)
    except Exception as e:  # noqa: BLE001 - any import failure is the finding
        report.add("app", [f"importing app.py failed: {type(e).__name__}: {e}"])
        return None
    cls = _server_class(module)
    if cls is None:
        report.add("app", ["app.py must define exactly one Environment (or ResourcesServer) subclass (the most derived "
                           "one is served)"])
        return None
    if issubclass(cls, Environment):
        try:
            cls.tool_schemas()  # the declarations: tools, task and state types
        except TypeError as e:
            report.add("app", [str(e)])
            return None
    try:
        settings = parse_instance(env.cfg, env.instance).settings
        # the class's own config type, known at run time: validated here, not by the type checker
        config: Any = cls.config_type().model_validate({**settings, "name": env.instance})
    except NgymError as e:
        report.add("app", [str(e)])
        return None
    except Exception as e:  # noqa: BLE001 - pydantic errors name the bad setting
        report.add("app", [f"{cls.__name__} rejects the settings of {env.instance}: {e}"])
        return None
    report.add("app", [], cls.__name__)
    return cls(config=config, server_client=ServerClient({}))  # keywords: pydantic-model servers too


def _example_rows(path: Path | None, report: Conformance) -> list[dict[str, Any]]:
    if path is None:
        report.add("example data", ["no example dataset (see the config check)"])
        return []
    rows: list[dict[str, Any]] = []
    problems = []
    for lineno, raw in enumerate(path.read_bytes().splitlines(), start=1):
        if not raw.strip():
            continue
        checked = check_row(raw)
        if isinstance(checked, str):
            problems.append(f"{path.name}:{lineno}: {checked}")
        else:
            rows.append(checked[0])
    if len(rows) + len(problems) != EXAMPLE_ROWS:
        problems.append(f"{path.name} has {len(rows) + len(problems)} rows; example data holds exactly {EXAMPLE_ROWS}")
    report.add("example data", problems, f"{len(rows)} rows")
    return rows


# ---- tool schemas ----------------------------------------------------------------------------


def _resolve(schema: Any, components: dict[str, Any]) -> dict[str, Any]:
    while isinstance(schema, dict) and "$ref" in schema:
        schema = components.get(schema["$ref"].rsplit("/", 1)[-1], {})
    return schema if isinstance(schema, dict) else {}


def _types(schema: dict[str, Any], components: dict[str, Any]) -> set[str] | None:
    """JSON types a schema allows; ``None`` means anything."""
    schema = _resolve(schema, components)
    if "anyOf" in schema or "oneOf" in schema:
        found: set[str] = set()
        for option in schema.get("anyOf", []) + schema.get("oneOf", []):
            sub = _types(option, components)
            if sub is None:
                return None
            found |= sub
        return found
    kind = schema.get("type")
    if kind is None:
        return None
    kinds = set(kind) if isinstance(kind, list) else {kind}
    return kinds | (ACCEPTS["number"] if "number" in kinds else set())


def compare_schemas(
    tool: str, declared: dict[str, Any], body: dict[str, Any] | None, components: dict[str, Any]
) -> list[str]:
    """Problems when a call that follows the tool's ``parameters`` would not fit the route's body."""
    props = declared.get("properties") or {}
    required = set(declared.get("required") or [])
    if body is None:
        return [f"/{tool} reads no JSON body, but the tool declares arguments {sorted(props)}"] if props else []
    route = _resolve(body, components)
    route_props = route.get("properties") or {}
    if not route_props and route.get("additionalProperties", True) is not False:
        return []  # an untyped body (dict[str, Any]) takes anything
    route_required = set(route.get("required") or [])
    problems = []
    for key in sorted(route_required - required):
        problems.append(f"/{tool} requires {key!r}, which the tool does not declare as required")
    for key, spec in props.items():
        if key not in route_props:
            verb = "rejects" if route.get("additionalProperties") is False else "ignores"
            problems.append(f"the tool declares {key!r}, which the body of /{tool} does not define (it {verb} it)")
            continue
        want = _types(spec if isinstance(spec, dict) else {}, components)
        have = _types(route_props[key], components)
        if want is not None and have is not None and not want - {"null"} <= have:
            problems.append(f"{key!r}: the tool says {sorted(want)}, /{tool} takes {sorted(have)}")
    return problems


def _body_schema(openapi: dict[str, Any], path: str) -> tuple[bool, dict[str, Any] | None]:
    """(route exists as POST, its JSON body schema or None)."""
    post = (openapi.get("paths", {}).get(path) or {}).get("post")
    if post is None:
        return False, None
    content = (post.get("requestBody") or {}).get("content") or {}
    return True, (content.get("application/json") or {}).get("schema")


def _check_tools(server: ResourcesServerBase, rows: list[dict[str, Any]], report: Conformance) -> None:
    if isinstance(server, Environment):  # declared tools: the rows' must agree (or be left out)
        declared = type(server).tools()
        problems = []
        for i, row in enumerate(rows, start=1):
            problem = type(server).check_tools(row["responses_create_params"].get("tools"))
            if problem:
                problems.append(f"row {i}: {problem}")
        report.add("tools", problems, ", ".join(declared) + " (declared)" if declared else "no tools")
        return
    openapi = server.setup_webserver().openapi()
    components = openapi.get("components", {}).get("schemas", {})
    tools: dict[str, dict[str, Any]] = {}
    for row in rows:
        for tool in row["responses_create_params"].get("tools") or []:
            if tool.get("type", "function") == "function":
                tools.setdefault(str(tool.get("name")), tool.get("parameters") or {})
    problems = []
    for name, parameters in tools.items():
        if name in RESERVED_ROUTES:
            problems.append(f"tool {name!r} has the name of a route every resources server has")
            continue
        exists, body = _body_schema(openapi, f"/{name}")
        if not exists:
            problems.append(f"tool {name!r} has no POST /{name} route (add app.post('/{name}') in setup_webserver)")
            continue
        problems += compare_schemas(name, parameters, body, components)
    report.add("tools", problems, ", ".join(tools) or "no tools")


# ---- verify ----------------------------------------------------------------------------------


SCRIPTED = {
    "empty output": Response(model="conformance", output=[]),
    "one message": Response(
        model="conformance",
        output=[Message(role="assistant", status="completed", content=[OutputText(text="I don't know.")])],
    ),
}


async def _check_verify(
    server: ResourcesServerBase, instance: str, rows: list[dict[str, Any]], report: Conformance
) -> None:
    client = in_process_client({instance: server.build_app()})
    server.server_client = client
    problems: list[str] = []
    judges = model_refs(server.config.model_dump())
    typed_failures = 0
    try:
        for i, row in enumerate(rows, start=1):
            for label, response in SCRIPTED.items():
                cookies: dict[str, str] = {}
                seeded = await client.post(instance, "/seed_session", json=row, cookies=cookies)
                if seeded.status_code != 200:
                    problems.append(f"row {i}: /seed_session answered {seeded.status_code}: {seeded.text[:300]}")
                    continue
                cookies.update(response_cookies(seeded))
                body = {**row, "response": response.model_dump(mode="json", exclude_none=True)}
                answer = await client.post(instance, "/verify", json=body, cookies=cookies)
                if answer.status_code == 500 and judges and FailureKind.VERIFIER_ERROR in answer.text:
                    typed_failures += 1  # its judge model is not part of this check: a typed failure is right
                    continue
                if answer.status_code != 200:
                    problems.append(f"row {i} ({label}): /verify answered {answer.status_code}: {answer.text[:300]}")
                    continue
                reward = answer.json().get("reward") if isinstance(answer.json(), dict) else None
                if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
                    problems.append(f"row {i} ({label}): /verify gave reward {reward!r}, not a finite float")
    finally:
        await client.aclose()
    note = (f"; {typed_failures} typed failure(s) (verifier_error: its model server(s) {judges} are not started "
            f"by this check)" if typed_failures else "")
    report.add("verify", problems, f"{len(rows)} rows x {len(SCRIPTED)} scripted responses{note}")


def model_refs(settings: Any) -> list[str]:
    """Model servers an environment's settings refer to (an LLM judge, say): ``{type: responses_api_models, name}``."""
    if isinstance(settings, dict):
        if settings.get("type") == "responses_api_models" and isinstance(settings.get("name"), str):
            return [settings["name"]]
        return [name for value in settings.values() for name in model_refs(value)]
    if isinstance(settings, list):
        return [name for value in settings for name in model_refs(value)]
    return []


# ---- committed data --------------------------------------------------------------------------


def _check_data_files(env_dir: Path, env: _Env, report: Conformance) -> None:
    data = env_dir / "data"
    conflicts = sorted(data.glob("*conflict*"))
    problems = [f"{p.name} exists (a metrics conflict to resolve, then delete)" for p in conflicts]
    metrics_path = data / "example_metrics.json"
    if not metrics_path.is_file():
        problems.append(f"no {metrics_path.name}: run ng_prepare_data +mode=example_validation on this config")
    else:
        try:
            existing = json.loads(metrics_path.read_text())
        except json.JSONDecodeError as e:
            existing = None
            problems.append(f"{metrics_path.name} is not valid JSON: {e}")
        if isinstance(existing, dict):
            if existing.get("Number of examples") != EXAMPLE_ROWS:
                count = existing.get("Number of examples")
                problems.append(f'{metrics_path.name}: "Number of examples" is {count!r}, not {EXAMPLE_ROWS}')
            found = [d for a, ds in agent_datasets(env.cfg) if a in env.agents for d in ds if d.type == "example"]
            if found and env.example_path is not None:
                fresh = metrics_document(found[0], read_dataset(env.agents[0], found[0], env.example_path).metrics)
                diffs = differences(existing, fresh)
                if diffs:
                    problems.append(f"{metrics_path.name} disagrees with the data ({'; '.join(diffs[:3])}); "
                                    f"re-run ng_prepare_data +mode=example_validation")
    rollouts = data / "example_rollouts.jsonl"
    if rollouts.is_file():
        lines = [line for line in rollouts.read_text().splitlines() if line.strip()]
        if len(lines) != EXAMPLE_ROWS:
            problems.append(f"{rollouts.name} has {len(lines)} rollouts, not {EXAMPLE_ROWS}")
        try:
            if not all(isinstance(json.loads(line).get("reward"), int | float) for line in lines):
                problems.append(f"{rollouts.name}: every rollout needs a numeric reward")
        except (json.JSONDecodeError, AttributeError) as e:
            problems.append(f"{rollouts.name}: not one JSON object per line ({e})")
    report.add("data files", problems, "example_metrics.json matches the data")


async def check_server_async(entrypoint: str | Path, *, should_validate_data: bool = False) -> Conformance:
    """:func:`check_server` for callers already inside an event loop."""
    env_dir = resolve_path(entrypoint)
    report = Conformance(env_dir)
    if not (env_dir / "app.py").is_file():
        report.add("layout", [f"{env_dir} has no app.py; expected resources_servers/<name>/app.py"])
        return report
    with _cwd(env_dir):
        env = _check_config(env_dir, report)
        if env is None:
            return report
        server = _check_app(env_dir, env, report)
        rows = _example_rows(env.example_path, report)
        if server is not None and rows:
            _check_tools(server, rows, report)
            await _check_verify(server, env.instance, rows, report)
        if should_validate_data:
            _check_data_files(env_dir, env, report)
    return report


def check_server(entrypoint: str | Path, *, should_validate_data: bool = False) -> Conformance:
    """Check one environment directory (see the module docstring); ``.ok`` and ``.format()`` tell the result."""
    return asyncio.run(check_server_async(entrypoint, should_validate_data=should_validate_data))
