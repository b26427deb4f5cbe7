"""The typed environment contract: ``Environment[Task, State]``.

An environment declares its task fields (``Task``, validated from each row), its per-episode state
(``State``, a fresh one per episode), its tools (``@tool`` methods) and ``verify``; ngym serves the
reference's wire format from that: ``POST /seed_session`` (validates the row, checks the tools it
carries, answers the declared tools), ``POST /<tool>``, ``POST /verify`` (the row's fields +
``reward`` + metrics), ``POST /close_session`` and ``GET /spec``. Inside ``seed``, a tool and
``verify``, ``self.task`` and ``self.state`` are those of the episode the request belongs to (found
by its session cookie), so handlers never touch the ``Request``.

See docs/writing-an-environment.md.
"""

from __future__ import annotations

import asyncio
import math
import typing
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from inspect import Parameter, Signature
from typing import Any, ClassVar, Generic, TypeVar

import orjson
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, ValidationError
from starlette.responses import Response as HTTPResponse

from ngym.env.resources import ResourcesServerBase, ResourcesServerConfig
from ngym.env.tools import RESERVED_NAMES, ToolChecker, ToolSpec, build_tool, is_tool
from ngym.errors import FailureKind, RolloutError, ToolError, VerifierError
from ngym.server.client import ServerClient
from ngym.server.sessions import SessionStore, session_id
from ngym.wire.responses import Response
from ngym.wire.rows import VerifyRequest

__all__ = ["EnvConfig", "Environment", "Episode", "NoState", "ToolError", "Verdict", "VerifierError"]

JSON = "application/json"
#: row keys a verdict's metrics may not overwrite
_ROW_KEYS = frozenset({"responses_create_params", "response"})


class EnvConfig(ResourcesServerConfig):
    """The YAML section of an environment instance (``domain``, ``entrypoint``, ... and your keys:
    subclass it and annotate ``config: MyConfig`` on the environment)."""

    #: seconds an idle episode's task and state are kept (then dropped, as at ``/close_session``)
    session_ttl_s: float = 3600.0


class NoState(BaseModel):
    """The state of an environment that keeps none between its calls."""


class _NoTask(BaseModel):
    """The task of an environment declared without one: no task fields."""


class Verdict(BaseModel):
    """What ``verify`` returns: the reward and any metrics as keyword fields
    (``Verdict(reward=1.0, parsed_answer="42")``). The reward must be finite."""

    model_config = ConfigDict(extra="allow")

    reward: float

    def __init__(self, reward: float, **metrics: Any) -> None:
        super().__init__(reward=reward, **metrics)


TaskT = TypeVar("TaskT", bound=BaseModel)
StateT = TypeVar("StateT", bound=BaseModel)


@dataclass(slots=True)
class Episode:
    """One episode's task (None until seeded) and state, kept in the session."""

    task: BaseModel | None
    state: BaseModel


#: the episode of the request being handled (each request runs in its own context)
_EPISODE: ContextVar[Episode | None] = ContextVar("ngym_env_episode", default=None)


def _bad_input(message: str) -> RolloutError:
    return RolloutError(message, kind=FailureKind.BAD_INPUT, retryable=False, status=422)


class _JSONAnswer(HTTPResponse):
    """A JSON answer of bytes already serialised (what starlette's ``Response`` would build, without
    its per-call header logic: tools and /verify answer on every step of every episode)."""

    media_type = JSON

    def __init__(self, content: bytes) -> None:
        self.status_code = 200
        self.background = None
        self.body = content
        self.raw_headers = [(b"content-length", str(len(content)).encode()), (b"content-type", b"application/json")]


def _json(content: bytes) -> HTTPResponse:
    return _JSONAnswer(content)


def _default(value: Any) -> Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json", by_alias=True)
    return jsonable_encoder(value)


def _tool_answer(result: Any) -> HTTPResponse:
    """A tool's return value as the JSON the model sees (a response object passes through)."""
    if isinstance(result, HTTPResponse):
        return result
    if isinstance(result, BaseModel):
        return _json(result.model_dump_json(by_alias=True).encode())
    return _json(orjson.dumps(result, default=_default))


class Environment(ResourcesServerBase, Generic[TaskT, StateT]):
    """Base of a typed environment; see the module docstring and docs/writing-an-environment.md.

    Subclass ``Environment[Task, State]`` (``State`` may be :class:`NoState`), declare tools with
    :func:`~ngym.env.tool`, implement :meth:`verify`; optionally :meth:`setup` and :meth:`seed`.
    """

    config: EnvConfig
    #: the task and state models, read from the class's type arguments
    task_type: ClassVar[type[BaseModel]] = _NoTask
    state_type: ClassVar[type[BaseModel]] = NoState

    def __init__(self, config: ResourcesServerConfig, server_client: ServerClient) -> None:
        super().__init__(config, server_client)
        #: every live episode of this server, by session id (found by /close_session)
        self.episodes: SessionStore[Episode] = SessionStore(ttl_s=float(getattr(config, "session_ttl_s", 3600.0)))
        self._ready = False
        self._setup_lock: asyncio.Lock | None = None
        self._runtime: _RuntimeTools | None = None

    @classmethod
    def config_type(cls) -> type[EnvConfig]:
        """The model of the instance's YAML section: the ``config`` annotation (an :class:`EnvConfig`)."""
        found = super().config_type()
        if not issubclass(found, EnvConfig):
            raise TypeError(f"{cls.__name__}: annotate `config` with an EnvConfig subclass (got {found.__name__}).")
        return found

    # ---- what an author overrides --------------------------------------------------------------

    async def setup(self) -> None:
        """Once, before the first request (at start-up when served): load data, build verifiers."""

    async def seed(self) -> None:
        """At ``/seed_session``, with ``self.task`` (the row's) and a fresh ``self.state`` set."""

    async def verify(self, response: Response) -> Verdict:
        """The reward of the policy's ``response`` for ``self.task`` (and ``self.state``)."""
        raise NotImplementedError(f"{type(self).__name__} must implement verify(self, response) -> Verdict")

    async def runtime_tools(self) -> list[dict[str, Any]]:
        """Tools known only once the environment runs (listed by an MCP server, by another
        framework's environment): Responses-API function tools ``{"type": "function", "name",
        "description", "parameters"}``, asked once, right after :meth:`setup`. They are offered with
        the ``@tool`` ones (``/seed_session``, ``GET /spec``) and their calls reach
        :meth:`call_runtime_tool`. Default: none."""
        return []

    async def call_runtime_tool(self, name: str, arguments: dict[str, Any]) -> Any:
        """A call of the run-time tool ``name`` (one :meth:`runtime_tools` listed) in the current
        episode (``self.task``, ``self.state``); answer like a ``@tool`` (a value or model as JSON,
        :class:`ToolError` for a call the model got wrong)."""
        raise NotImplementedError(f"{type(self).__name__} lists run-time tools; implement "
                                  f"call_runtime_tool(self, name, arguments)")

    async def teardown(self) -> None:
        """Once, when the server stops: close what :meth:`setup` opened (connections, processes)."""

    # ---- the episode of the request being handled ----------------------------------------------

    @property
    def task(self) -> TaskT:
        """The task of this episode: from the row at ``/seed_session`` (also in tools), from the
        verify body at ``/verify``."""
        episode = _EPISODE.get()
        if episode is None or episode.task is None:
            where = "outside a request" if episode is None else "in a tool of an episode that was not seeded"
            message = (f"{type(self).__name__}: self.task was read {where}; it is set in seed(), in the tools of a "
                       f"seeded episode (POST /seed_session with the row first, keeping its cookie) and in verify().")
            if episode is None:
                raise RuntimeError(message)
            # the caller's mistake, not the server's: a 409 (the route fuzzing found it answered 500)
            raise RolloutError(message, kind=FailureKind.RESOURCES_ERROR, retryable=False, status=409)
        return typing.cast(TaskT, episode.task)

    @property
    def state(self) -> StateT:
        """The state of this episode (a fresh ``State()`` when it starts; kept until
        ``/close_session`` or the TTL)."""
        episode = _EPISODE.get()
        if episode is None:
            raise RuntimeError(f"{type(self).__name__}: self.state is only set while a request is handled "
                               f"(in seed(), a tool or verify()).")
        return typing.cast(StateT, episode.state)

    @state.setter
    def state(self, value: StateT) -> None:
        episode = _EPISODE.get()
        if episode is None:
            raise RuntimeError(f"{type(self).__name__}: self.state can only be replaced while a request is handled.")
        episode.state = value

    # ---- the class's declarations ---------------------------------------------------------------

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in cls.__dict__.get("__orig_bases__", ()):
            origin = typing.get_origin(base)
            if not (isinstance(origin, type) and issubclass(origin, Environment)):
                continue
            args = typing.get_args(base)
            if origin is Environment:
                task, state = args
            else:  # a generic subclass: its type variables, substituted
                mapping: dict[object, Any] = dict(zip(getattr(origin, "__parameters__", ()), args, strict=False))
                task = mapping.get(origin.task_type, origin.task_type)
                state = mapping.get(origin.state_type, origin.state_type)
            for what, value in (("task", task), ("state", state)):
                if not isinstance(value, TypeVar) and not (isinstance(value, type) and issubclass(value, BaseModel)):
                    raise TypeError(f"{cls.__name__}: the {what} type of Environment[Task, State] must be a pydantic "
                                    f"BaseModel subclass (got {value!r}); use NoState for no state.")
            cls.task_type = task
            cls.state_type = state
        cls._ngym_cache = None

    _ngym_cache: ClassVar[_Declarations | None] = None

    @classmethod
    def _declarations(cls) -> _Declarations:
        cached = cls.__dict__.get("_ngym_cache")
        if cached is None:
            cached = _Declarations.of(cls)
            cls._ngym_cache = cached
        return cached

    @classmethod
    def tools(cls) -> dict[str, ToolSpec]:
        """The declared tools by name (in the order they are defined)."""
        return cls._declarations().tools

    @classmethod
    def tool_schemas(cls) -> list[dict[str, Any]]:
        """The tools the model is given: Responses-API function tools
        ``{"type": "function", "name", "description", "parameters", "strict"}``."""
        return typing.cast(list[dict[str, Any]], orjson.loads(cls._declarations().tools_json))  # a copy

    @classmethod
    def check_tools(cls, tools: Any) -> str | None:
        """What differs between the tools a row carries (``responses_create_params.tools``) and the
        declared ones, in words; None when they agree (or the row carries none). Cached per
        distinct tools list."""
        return cls._declarations().checker.problem(tools)

    @classmethod
    def spec(cls) -> dict[str, Any]:
        """What ``GET /spec`` answers: the tools and the task's JSON schema."""
        return typing.cast(dict[str, Any], orjson.loads(cls._declarations().spec_json))

    # ---- serving --------------------------------------------------------------------------------

    async def _ensure_setup(self) -> None:
        if self._ready:
            return
        if self._setup_lock is None:
            self._setup_lock = asyncio.Lock()
        async with self._setup_lock:
            if not self._ready:
                await self.setup()
                self._runtime = _RuntimeTools.of(self, await self.runtime_tools())
                self._ready = True

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()
        decl = self._declarations()
        app.post("/seed_session", response_model=None)(self._seed_endpoint(decl))
        app.post("/verify", response_model=None)(self._verify_endpoint(decl))
        for declared in decl.tools.values():
            app.post(f"/{declared.name}", response_model=None, name=declared.name)(self._tool_endpoint(declared))
        if type(self).runtime_tools is not Environment.runtime_tools:
            app.post("/{tool_name}", response_model=None, name="runtime_tool")(self._runtime_tool_endpoint())

        @app.get("/spec", response_model=None)
        async def spec() -> HTTPResponse:
            if not self._ready:
                await self._ensure_setup()
            return _json(self._runtime.spec_json if self._runtime is not None else decl.spec_json)

        inner = app.router.lifespan_context

        @asynccontextmanager
        async def lifespan(asgi: Any) -> AsyncIterator[Any]:
            await self._ensure_setup()  # a failing setup() fails the start, not the first rollout
            try:
                async with inner(asgi) as state:
                    yield state
            finally:
                await self.teardown()

        app.router.lifespan_context = lifespan
        return app

    def _task_of(self, row: dict[str, Any], route: str, decl: _Declarations) -> BaseModel:
        try:
            if decl.task_keys is None:
                return decl.task_type.model_validate(row)
            return decl.task_type.model_validate({k: row[k] for k in decl.task_keys if k in row})
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or '(row)'}: {err['msg']}"
                + (f" (got {_short(err['input'])})" if err["type"] != "missing" else "")
                for err in e.errors()
            )
            raise _bad_input(
                f"{route} on {self.config.name!r}: the row does not fit {type(self).__name__}'s task "
                f"{decl.task_type.__name__}: {problems}. Fix the data row."
            ) from None

    def _seed_endpoint(self, decl: _Declarations) -> Callable[..., Awaitable[HTTPResponse]]:
        async def seed_session(request: Request, body: dict[str, Any] | None = None) -> HTTPResponse:
            if not self._ready:
                await self._ensure_setup()
            runtime = self._runtime
            answer, checker = (runtime.seed_json, runtime.checker) if runtime is not None else (decl.seed_json, decl.checker)
            row = body or {}
            task = self._task_of(row, "/seed_session", decl)
            params = row.get("responses_create_params")
            if isinstance(params, dict) and params.get("tools"):
                problem = checker.problem(params["tools"])
                if problem is not None:
                    raise _bad_input(f"/seed_session on {self.config.name!r}: {problem}.")
            episode = Episode(task, decl.state_type())
            self.episodes[session_id(request)] = episode
            token = _EPISODE.set(episode)
            try:
                await self.seed()
            finally:
                _EPISODE.reset(token)
            return _json(answer)

        return seed_session

    def _verify_endpoint(self, decl: _Declarations) -> Callable[..., Awaitable[HTTPResponse]]:
        name = type(self).__name__

        async def verify(body: VerifyRequest, request: Request) -> HTTPResponse:
            if not self._ready:
                await self._ensure_setup()
            task = self._task_of(dict(body), "/verify", decl)
            seeded = self.episodes.get(session_id(request))
            episode = Episode(task, seeded.state if seeded is not None else decl.state_type())
            token = _EPISODE.set(episode)
            try:
                verdict = await self.verify(body.response)
            finally:
                _EPISODE.reset(token)
            if not isinstance(verdict, Verdict):
                raise VerifierError(f"{name}.verify returned {type(verdict).__name__}, not a Verdict; "
                                    f"return Verdict(reward=..., <metrics>=...).")
            if not math.isfinite(verdict.reward):
                raise VerifierError(f"{name}.verify gave the reward {verdict.reward!r}: a reward must be finite "
                                    f"(a rollout that cannot be scored raises VerifierError).")
            metrics = verdict.model_dump(mode="json", exclude_none=True)
            clash = _ROW_KEYS & metrics.keys()
            if clash:
                raise VerifierError(f"{name}.verify returned the metric(s) {sorted(clash)}, which would overwrite "
                                    f"the row; rename them.")
            payload = body.model_dump(mode="json", exclude_none=True)
            payload.update(metrics)
            try:
                return _json(orjson.dumps(payload))
            except TypeError as e:  # an integer beyond 64 bits: JSON between ngym servers cannot carry it
                raise _bad_input(f"/verify on {self.config.name!r}: the row holds a value the answer cannot "
                                 f"carry ({e}; integers are at most 64 bits). Fix the data row.") from None

        return verify

    def _tool_endpoint(self, spec: ToolSpec) -> Callable[..., Awaitable[HTTPResponse]]:
        method = spec.method
        names = tuple(spec.arguments.model_fields)
        arguments = spec.arguments
        store = self.episodes
        state_type = self._declarations().state_type

        async def endpoint(request: Request, body: BaseModel | None = None) -> HTTPResponse:
            if not self._ready:
                await self._ensure_setup()
            args = body if body is not None else arguments()
            sid = session_id(request)
            try:
                episode = store[sid]
            except KeyError:  # a call outside a seeded episode: a fresh state, kept for the next call
                episode = store[sid] = Episode(None, state_type())
            token = _EPISODE.set(episode)
            try:
                result = await method(self, **{n: getattr(args, n) for n in names})
            except ToolError as e:
                return _json(orjson.dumps({"error": str(e)}))
            finally:
                _EPISODE.reset(token)
            return _tool_answer(result)

        # the signature FastAPI (and the fast path) read: the argument model as the JSON body
        body = Parameter(
            "body",
            Parameter.POSITIONAL_OR_KEYWORD,
            annotation=arguments | None if spec.body_optional else arguments,
            default=None if spec.body_optional else Parameter.empty,
        )
        request = Parameter("request", Parameter.POSITIONAL_OR_KEYWORD, annotation=Request)
        params = [request, body] if spec.body_optional else [body, request]
        setattr(endpoint, "__signature__", Signature(params, return_annotation=HTTPResponse))  # noqa: B010 (a function attribute mypy does not know)
        endpoint.__name__ = endpoint.__qualname__ = spec.name
        endpoint.__doc__ = spec.schema["description"] or None
        return endpoint


    def _runtime_tool_endpoint(self) -> Callable[..., Awaitable[HTTPResponse]]:
        store = self.episodes
        state_type = self._declarations().state_type

        async def runtime_tool(tool_name: str, request: Request, body: dict[str, Any] | None = None) -> HTTPResponse:
            if not self._ready:
                await self._ensure_setup()
            runtime = self._runtime
            if runtime is None or tool_name not in runtime.names:
                known = sorted([*self._declarations().tools, *(runtime.names if runtime else ())])
                raise RolloutError(f"{self.config.name!r} has no tool {tool_name!r}; its tools: {known}.",
                                   kind=FailureKind.BAD_INPUT, retryable=False, status=404)
            sid = session_id(request)
            try:
                episode = store[sid]
            except KeyError:
                episode = store[sid] = Episode(None, state_type())
            token = _EPISODE.set(episode)
            try:
                result = await self.call_runtime_tool(tool_name, dict(body or {}))
            except ToolError as e:
                return _json(orjson.dumps({"error": str(e)}))
            finally:
                _EPISODE.reset(token)
            return _tool_answer(result)

        return runtime_tool


@dataclass(frozen=True, slots=True)
class _RuntimeTools:
    """The run-time tools of a running environment, with the answers that include them."""

    names: frozenset[str]
    checker: ToolChecker
    seed_json: bytes
    spec_json: bytes

    @staticmethod
    def of(env: Environment[Any, Any], listed: list[dict[str, Any]]) -> _RuntimeTools | None:
        if not listed:
            return None
        decl = env._declarations()
        owner = f"{type(env).__name__}.runtime_tools()"
        names: list[str] = []
        for i, schema in enumerate(listed):
            name = schema.get("name") if isinstance(schema, dict) else None
            if not isinstance(name, str) or not name or schema.get("type", "function") != "function":
                raise VerifierError(f"{owner}[{i}] is not a function tool with a name ({_short(schema)}); list "
                                    f'{{"type": "function", "name": ..., "description": ..., "parameters": ...}}.')
            if name in decl.tools or name in RESERVED_NAMES or name in names:
                why = "a @tool" if name in decl.tools else "a route of every environment" if name in RESERVED_NAMES else "listed twice"
                raise VerifierError(f"{owner}: the tool name {name!r} is {why}; rename it.")
            names.append(name)
        schemas = [*(spec.schema for spec in decl.tools.values()), *listed]
        spec = orjson.loads(decl.spec_json)
        spec["tools"] = schemas
        return _RuntimeTools(
            names=frozenset(names),
            checker=ToolChecker(type(env).__name__, decl.tools, runtime=listed),
            seed_json=orjson.dumps({"tools": schemas}),
            spec_json=orjson.dumps(spec),
        )


@dataclass(frozen=True, slots=True)
class _Declarations:
    """What a class declares, computed once per class: tools, task/state types, answers."""

    tools: dict[str, ToolSpec]
    task_type: type[BaseModel]
    state_type: type[BaseModel]
    #: the row keys the task reads (None: the whole row, for a task that keeps extra keys)
    task_keys: frozenset[str] | None
    checker: ToolChecker
    tools_json: bytes
    seed_json: bytes
    spec_json: bytes

    @staticmethod
    def of(env: type[Environment[Any, Any]]) -> _Declarations:
        task_type, state_type = env.task_type, env.state_type
        for what, value in (("task", task_type), ("state", state_type)):
            if not (isinstance(value, type) and issubclass(value, BaseModel)):
                raise TypeError(f"{env.__name__} is generic in its {what} type ({value!r}); subclass "
                                f"{env.__name__}[Task, State] with concrete models to serve it.")
        try:
            state_type()
        except ValidationError:
            raise TypeError(f"{env.__name__}: its State {state_type.__name__} needs a default for every field "
                            f"(a fresh State() starts each episode; set fields in seed()).") from None
        names: list[str] = []
        for klass in reversed(env.__mro__):
            for name, value in vars(klass).items():
                if is_tool(value) and name not in names:
                    names.append(name)
        taken = sorted(name for name in names if hasattr(Environment, name))
        if taken:
            raise TypeError(f"{env.__name__}: @tool {taken} would replace what every Environment has "
                            f"(self.task, self.state, seed(), verify(), ...); rename the method.")
        tools = {}
        for name in names:
            method = getattr(env, name)
            if is_tool(method):  # (an override without @tool is no tool)
                tools[name] = build_tool(method, env.__name__)
        schemas = [spec.schema for spec in tools.values()]
        task_keys: frozenset[str] | None = None
        if task_type.model_config.get("extra") != "allow":
            keys = set()
            for field_name, info in task_type.model_fields.items():
                keys.add(field_name)
                if isinstance(info.alias, str):
                    keys.add(info.alias)
                if isinstance(info.validation_alias, str):
                    keys.add(info.validation_alias)
            task_keys = frozenset(keys)
        return _Declarations(
            tools=tools,
            task_type=task_type,
            state_type=state_type,
            task_keys=task_keys,
            checker=ToolChecker(env.__name__, tools),
            tools_json=orjson.dumps(schemas),
            seed_json=orjson.dumps({"tools": schemas}),
            spec_json=orjson.dumps({"tools": schemas, "task_schema": task_type.model_json_schema()}),
        )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
