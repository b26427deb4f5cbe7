"""Tools declared once, as typed async methods: from each ``@tool`` method ngym builds its argument
model (``extra="forbid"``), the function-tool schema the model sees (signature + docstring) and the
route ``POST /<name>``; rows that carry tools are checked against the declaration.

>>> class Args:
...     async def get_hint(self, level: int, verbose: bool = False) -> str:
...         '''Get a hint about the answer.
...
...         Args:
...             level: How strong the hint is (1-3).
...             verbose: Explain the hint.
...         '''
...         return ""
>>> spec = build_tool(Args.get_hint)
>>> spec.schema["description"], spec.schema["parameters"]["required"]
('Get a hint about the answer.', ['level'])
>>> spec.schema["parameters"]["properties"]["level"]
{'type': 'integer', 'description': 'How strong the hint is (1-3).'}
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])

TOOL_MARK = "__ngym_tool__"
#: routes every environment serves: no tool may take their name
RESERVED_NAMES = frozenset({"seed_session", "verify", "close_session", "spec", "docs", "openapi.json", "run"})
_SECTION = re.compile(r"^(Args|Arguments|Parameters|Params|Returns|Return|Yields|Raises|Examples?|Notes?|See Also):\s*$")
_ARG_LINE = re.compile(r"^(\*{0,2}\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
#: JSON-schema keys that document rather than constrain: left out when comparing a row's tool
_DOC_KEYS = frozenset({"title", "description", "examples", "$comment"})


def tool(fn: F) -> F:
    """Declare an ``async def`` method of an :class:`~ngym.env.Environment` as a tool: the route
    ``POST /<method name>``, its arguments validated from the signature, its schema (for the model)
    from the signature and the docstring's summary and ``Args:`` section."""
    if not inspect.iscoroutinefunction(fn):
        raise TypeError(f"@tool {getattr(fn, '__qualname__', fn)!r} must be declared `async def` (use "
                        f"`await ngym.env.run_blocking(...)` for blocking work inside it).")
    setattr(fn, TOOL_MARK, True)
    return typing.cast(F, fn)


def is_tool(value: object) -> bool:
    return callable(value) and getattr(value, TOOL_MARK, False) is True


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """One declared tool: its name, method, argument model and function-tool schema."""

    name: str
    method: Callable[..., Awaitable[Any]]
    arguments: type[BaseModel]
    #: the argument model's validator for raw JSON bytes (the fast path's and ours)
    adapter: TypeAdapter[Any]
    #: True when every parameter has a default, so a call may send no body at all
    body_optional: bool
    schema: dict[str, Any]


class _Annotated:
    """Something with ``__annotations__`` for :func:`typing.get_type_hints`."""

    def __init__(self, annotations: dict[str, Any]) -> None:
        self.__annotations__ = annotations


def parse_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """(description, {parameter: description}) of a Google-style docstring: the description is the
    text before the first section (paragraphs kept, lines of a paragraph joined)."""
    if not doc:
        return "", {}
    lines = inspect.cleandoc(doc).splitlines()
    description: list[str] = []
    params: dict[str, str] = {}
    section: str | None = None
    current: str | None = None
    indent: int | None = None
    for line in lines:
        header = _SECTION.match(line)
        if header:
            section, current, indent = header.group(1), None, None
            continue
        if section is None:
            description.append(line)
            continue
        if section not in ("Args", "Arguments", "Parameters", "Params") or not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if indent is None:
            indent = depth
        match = _ARG_LINE.match(line.strip())
        if depth <= indent and match:
            current = match.group(1).lstrip("*")
            params[current] = match.group(2).strip()
        elif current is not None:  # a continuation line
            params[current] = f"{params[current]} {line.strip()}".strip()
    paragraphs = " ".join(line.strip() if line.strip() else "\n\n" for line in description)
    text = "\n\n".join(p.strip() for p in paragraphs.split("\n\n") if p.strip())
    return text, params


def build_tool(method: Callable[..., Awaitable[Any]], owner: str = "") -> ToolSpec:
    """The :class:`ToolSpec` of one ``async def`` method (``self`` first)."""
    name = method.__name__
    where = f"{owner}.{name}" if owner else method.__qualname__
    if name in RESERVED_NAMES or name.startswith("_"):
        raise TypeError(f"@tool {where}: {name!r} cannot be a tool name (it is a route every environment has, "
                        f"or private); rename the method.")
    annotations = {k: v for k, v in getattr(method, "__annotations__", {}).items() if k != "return"}
    try:  # the arguments' annotations only: the return type may be defined later in the module
        hints = typing.get_type_hints(
            _Annotated(annotations), globalns=getattr(method, "__globals__", None), include_extras=True
        )
    except NameError as e:
        raise TypeError(f"@tool {where}: cannot resolve an annotation ({e}); define the types it uses at module "
                        f"level, where the environment's module can see them.") from None
    description, docs = parse_docstring(method.__doc__)
    fields: dict[str, Any] = {}
    params = list(inspect.signature(method).parameters.values())[1:]  # without self
    for p in params:
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"@tool {where}: *{p.name} / **{p.name} cannot be described to the model; "
                            f"declare each argument.")
        if p.name not in hints:
            raise TypeError(f"@tool {where}: annotate the argument {p.name!r} (its type is the schema the model sees).")
        default = ... if p.default is inspect.Parameter.empty else p.default
        fields[p.name] = (hints[p.name], Field(default, description=docs.get(p.name) or None))
    unknown = sorted(set(docs) - set(fields))
    if unknown:
        raise TypeError(f"@tool {where}: the docstring's Args section documents {unknown}, which are not arguments "
                        f"of the method (arguments: {sorted(fields)}).")
    model_name = "".join(part.title() for part in name.split("_")) + "Arguments"
    arguments: type[BaseModel] = create_model(
        model_name, __config__=ConfigDict(extra="forbid"), **fields
    )
    parameters = _clean(arguments.model_json_schema())
    parameters = {
        "type": "object",
        "properties": parameters.get("properties", {}),
        "required": parameters.get("required", []),
        "additionalProperties": False,
        **({"$defs": parameters["$defs"]} if "$defs" in parameters else {}),
    }
    schema = {
        "type": "function",
        "name": name,
        "description": description,
        "parameters": parameters,
        "strict": _strict_ok(parameters, parameters.get("$defs", {})),
    }
    return ToolSpec(
        name=name,
        method=method,
        arguments=arguments,
        adapter=TypeAdapter(arguments),
        body_optional=all(not f.is_required() for f in arguments.model_fields.values()),
        schema=schema,
    )


def _clean(schema: Any) -> Any:
    """A pydantic JSON schema without the ``title`` keys it adds (property names are kept)."""
    if isinstance(schema, list):
        return [_clean(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "title" and isinstance(value, str):
            continue
        if key in ("properties", "$defs", "patternProperties") and isinstance(value, dict):
            out[key] = {k: _clean(v) for k, v in value.items()}
        else:
            out[key] = _clean(value)
    return out


def _strict_ok(schema: Any, defs: dict[str, Any]) -> bool:
    """Whether the schema is valid for OpenAI's strict mode: every object closed and all its
    properties required, no defaults."""
    if isinstance(schema, list):
        return all(_strict_ok(s, defs) for s in schema)
    if not isinstance(schema, dict):
        return True
    if "default" in schema:
        return False
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False or set(schema.get("required") or []) != set(props):
            return False
    for key, value in schema.items():
        if key == "properties" and isinstance(value, dict):
            if not all(_strict_ok(v, defs) for v in value.values()):
                return False
        elif key in ("items", "anyOf", "oneOf", "allOf", "prefixItems", "$defs"):
            inner = list(value.values()) if key == "$defs" and isinstance(value, dict) else value
            if not _strict_ok(inner, defs):
                return False
    return True


# ---- rows that carry tools -------------------------------------------------------------------


def normalize_parameters(schema: Any) -> Any:
    """A parameters schema as compared with a row's: documentation keys (``title``,
    ``description``, ``examples``) left out, ``required`` as a sorted list (absent when empty),
    ``additionalProperties: false`` left out (the route rejects extra arguments anyway)."""
    if isinstance(schema, list):
        return [normalize_parameters(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DOC_KEYS and not isinstance(value, dict):
            continue
        if key == "required" and isinstance(value, list):
            if value:
                out[key] = sorted(str(v) for v in value)
            continue
        if key == "additionalProperties" and value is False:
            continue
        if key in ("properties", "$defs", "patternProperties") and isinstance(value, dict):
            out[key] = {k: normalize_parameters(v) for k, v in value.items()}
        else:
            out[key] = normalize_parameters(value)
    return out


def first_difference(row: Any, declared: Any, path: str = "parameters") -> str | None:
    """Where two normalized schemas first differ, in words (None when equal)."""
    if isinstance(row, dict) and isinstance(declared, dict):
        for key in sorted(set(row) | set(declared), key=str):
            where = f"{path}.{key}"
            if key not in declared:
                return f"{where}: the row has {_short(row[key])}, the environment declares nothing there"
            if key not in row:
                return f"{where}: the environment declares {_short(declared[key])}, the row has nothing there"
            found = first_difference(row[key], declared[key], where)
            if found:
                return found
        return None
    if isinstance(row, list) and isinstance(declared, list) and len(row) == len(declared):
        for i, (a, b) in enumerate(zip(row, declared, strict=True)):
            found = first_difference(a, b, f"{path}[{i}]")
            if found:
                return found
        return None
    if row != declared:
        return f"{path}: the row has {_short(row)}, the environment declares {_short(declared)}"
    return None


def _short(value: Any) -> str:
    text = orjson.dumps(value).decode()
    return text if len(text) <= 120 else text[:117] + "..."


class ToolChecker:
    """Checks the tools a row offers against the declared ones; one answer per distinct tools list
    (rows of a dataset share a handful of lists, so the comparison runs a handful of times)."""

    def __init__(self, owner: str, declared: dict[str, ToolSpec], max_cached: int = 1024,
                 runtime: list[dict[str, Any]] | None = None) -> None:
        self.owner = owner
        self.declared = {name: normalize_parameters(spec.schema["parameters"]) for name, spec in declared.items()}
        for schema in runtime or ():  # tools the running environment listed (Environment.runtime_tools)
            params = schema.get("parameters")
            self.declared[schema["name"]] = normalize_parameters(
                {"type": "object", "properties": {}} if params is None else params)
        self.max_cached = max_cached
        self._cache: dict[bytes, str | None] = {}

    def problem(self, tools: Any) -> str | None:
        """None when every function tool of the row is declared with the same parameters; else what
        differs (the first tool that does, and how)."""
        if not tools:
            return None
        key = orjson.dumps(tools)
        if key in self._cache:
            return self._cache[key]
        found = self._compare(tools)
        if len(self._cache) >= self.max_cached:
            self._cache.clear()
        self._cache[key] = found
        return found

    def _compare(self, tools: Any) -> str | None:
        if not isinstance(tools, list):
            return f"responses_create_params.tools is {type(tools).__name__}, not a list of tools"
        for tool_ in tools:
            if not isinstance(tool_, dict) or tool_.get("type", "function") != "function":
                continue  # built-in tools (web search, ...) are the model provider's business
            name = tool_.get("name")
            if name not in self.declared:
                return (f"the row offers the tool {name!r}, which {self.owner} does not declare (declared: "
                        f"{sorted(self.declared)}); remove it from the row or add a @tool {name} method")
            params = tool_.get("parameters")
            params = {"type": "object", "properties": {}} if params is None else params
            difference = first_difference(normalize_parameters(params), self.declared[name])
            if difference:
                return (f"the row's tool {name!r} differs from {self.owner}'s declaration at {difference}; remove "
                        f"`tools` from the row (the environment supplies them) or make them agree")
        return None
