"""What every command shares: ``+help=true``/``--help``, argument models, and errors without tracebacks."""

from __future__ import annotations

import functools
import inspect
import signal
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ValidationError

from ngym.config.loader import ParserConfig, load_config
from ngym.errors import ArgumentError, NgymError

M = TypeVar("M", bound=BaseModel)

HELP_FLAGS = {"--help", "-h", "+help=true", "+h=true", "++help=true", "++h=true", "help=true"}

OVERRIDE_HELP = """\
Arguments are Hydra-style overrides: +key=value adds a key, ++key=value sets it either way,
key=value changes a key a config file defines, ~key deletes one. Dotted keys nest
(+responses_create_params.temperature=0.2); lists are [a,b] (quote the whole argument:
"+config_paths=[a.yaml,b.yaml]"); null is None. Precedence: command line > env.yaml > later
config files > earlier ones."""


def wants_help(argv: Sequence[str]) -> bool:
    return any(a.lower() in HELP_FLAGS for a in argv)


def format_help(command: str, summary: str, model: type[BaseModel] | None = None, usage: str = "") -> str:
    lines = [f"usage: {command} {usage}".rstrip(), "", summary.strip(), ""]
    if model is not None:
        doc = inspect.cleandoc(model.__doc__ or "")
        if doc and doc not in summary:
            lines += [doc, ""]
        rows = [("argument", "type", "default", "description")]
        for name, field in model.model_fields.items():
            annotation = getattr(field.annotation, "__name__", None) or str(field.annotation).replace("typing.", "")
            default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
            rows.append((f"+{name}", annotation, default, field.description or ""))
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r[:3], widths, strict=True)) + "  " + r[3] for r in rows]
        lines.append("")
    lines.append(OVERRIDE_HELP)
    return "\n".join(lines)


def command_args(cfg: DictConfig, model: type[M], command: str) -> M:
    """Validate a command's own arguments (top-level keys of the merged config)."""
    values: dict[str, Any] = {}
    for name in model.model_fields:
        if name in cfg:
            values[name] = OmegaConf.to_container(cfg[name], resolve=True) if isinstance(
                cfg._get_node(name), DictConfig | type(OmegaConf.create([]))
            ) else cfg[name]
    try:
        return model.model_validate(values)
    except ValidationError as e:
        problems = []
        for err in e.errors():
            key = ".".join(str(p) for p in err["loc"])
            if err["type"] == "missing":
                problems.append(f"+{key}=... is required ({model.model_fields[key].description or key})")
            else:
                problems.append(f"+{key}={err.get('input')!r}: {err['msg']}")
        raise ArgumentError(f"{command}: " + "; ".join(problems) + f". See `{command} +help=true`.") from None


def load(argv: Sequence[str], **kwargs: Any) -> tuple[DictConfig, ParserConfig]:
    pc = ParserConfig(cli_args=list(argv), **kwargs)
    return load_config(pc), pc


def _raise_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def ignore_signals() -> None:
    """During shutdown a second Ctrl-C must not interrupt the cleanup."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def entrypoint(command: str, summary: str, model: type[BaseModel] | None = None, usage: str = "[+key=value ...]") -> Callable[
    [Callable[[list[str]], int | None]], Callable[[], None]
]:
    """Wrap a command: help flags, SIGTERM as Ctrl-C, readable errors, exit codes."""

    def wrap(fn: Callable[[list[str]], int | None]) -> Callable[[], None]:
        @functools.wraps(fn)
        def main() -> None:
            argv = sys.argv[1:]
            if wants_help(argv):
                print(format_help(command, summary, model, usage))
                sys.exit(0)
            signal.signal(signal.SIGTERM, _raise_interrupt)
            # a job started in the background by a script inherits SIGINT as ignored; `kill -INT`
            # (what Ctrl-C sends) must still stop the command and everything it started
            signal.signal(signal.SIGINT, signal.default_int_handler)
            try:
                code = fn(argv)
            except NgymError as e:
                print(f"error: {e}", file=sys.stderr)
                sys.exit(2)
            except KeyboardInterrupt:
                print(f"\n{command}: interrupted", file=sys.stderr)
                sys.exit(130)
            sys.exit(code or 0)

        main.summary = summary  # type: ignore[attr-defined]
        return main

    return wrap
