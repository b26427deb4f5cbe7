"""What every command shares: ``+help=true``/``--help``, argument models, and errors without tracebacks."""

from __future__ import annotations

import difflib
import functools
import inspect
import os
import re
import signal
import sys
import traceback
from collections.abc import Callable, Collection, Iterator, Sequence
from typing import Any, TypeVar

from omegaconf import DictConfig, OmegaConf
from pydantic import BaseModel, ValidationError

from ngym.config.loader import ParserConfig, load_config, parse_overrides
from ngym.config.schema import RESERVED_KEYS, SERVER_TYPES
from ngym.config.secrets import MASK, is_secret_key, mask_secrets, scrub, secret_values
from ngym.errors import ArgumentError, NgymError

M = TypeVar("M", bound=BaseModel)

#: top-level keys a deployment reads (ng_run, one-shot ng_collect_rollouts, ng_dump_config, ng_prepare_data)
DEPLOYMENT_KEYS = RESERVED_KEYS | {"startup_timeout_s", "max_restarts", "restart_backoff_s"}

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
                shown = MASK if any(is_secret_key(str(p)) for p in err["loc"]) else repr(mask_secrets(err.get("input")))
                problems.append(f"+{key}={shown}: {err['msg']}")
        raise ArgumentError(f"{command}: " + "; ".join(problems) + f". See `{command} +help=true`.") from None


def load(
    argv: Sequence[str],
    *,
    command: str,
    model: type[BaseModel] | None = None,
    known: Collection[str] = (),
    **kwargs: Any,
) -> tuple[DictConfig, ParserConfig]:
    """Merge the config (see :func:`ngym.config.loader.load_config`) and refuse any ``+key`` of the
    command line that nothing reads: the command's ``model`` fields, the ``known`` keys, keys the
    config files or env.yaml define or interpolate, and whole server instances are read."""
    pc = ParserConfig(cli_args=list(argv), **kwargs)
    cfg = load_config(pc)
    _SECRETS.update(secret_values(OmegaConf.to_container(cfg, resolve=False)))
    allowed = set(known) | (set(model.model_fields) if model is not None else set())
    check_keys(argv, cfg, pc, allowed, command)
    return cfg, pc


#: secret values this process knows of (command line, config, environment): hidden in every error it prints
_SECRETS: set[str] = set()
_ARG = re.compile(r"^[+~]*([\w.-]+)=(.*)$", re.DOTALL)


def _remember_secrets(argv: Sequence[str]) -> None:
    for arg in argv:
        match = _ARG.match(arg)
        if match and is_secret_key(match.group(1).rsplit(".", 1)[-1]):
            _SECRETS.add(match.group(2).strip("'\""))
    _SECRETS.update(v for k, v in os.environ.items() if is_secret_key(k.lower()) and v)


def _print_error(message: str) -> None:
    print(scrub(message, _SECRETS), file=sys.stderr)


_INTERPOLATED = re.compile(r"\$\{([A-Za-z_][\w-]*)")


def _interpolated(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for value in node.values():
            yield from _interpolated(value)
    elif isinstance(node, list):
        for value in node:
            yield from _interpolated(value)
    elif isinstance(node, str):
        yield from _INTERPOLATED.findall(node)


def _defines_server(value: Any) -> bool:
    return isinstance(value, DictConfig) and any(t in value for t in SERVER_TYPES)


def check_keys(argv: Sequence[str], cfg: DictConfig, pc: ParserConfig, allowed: set[str], command: str) -> None:
    """Raise :class:`ArgumentError` for a command-line key nothing reads, with a "did you mean"."""
    cli, _, deletes = parse_overrides(argv)
    given = [str(k) for k in cli] + [d.split(".")[0] for d in deletes]
    if not given:
        return
    known = allowed | set(pc.sources)
    known |= set(_interpolated(OmegaConf.to_container(cfg, resolve=False)))
    unknown = [k for k in dict.fromkeys(given) if k not in known and not _defines_server(cfg.get(k))]
    if not unknown:
        return
    candidates = sorted(allowed | set(pc.sources))
    problems = []
    for key in unknown:
        close = difflib.get_close_matches(key, candidates, n=1, cutoff=0.6)
        problems.append(f"+{key}" + (f" (did you mean +{close[0]}?)" if close else ""))
    own = sorted(allowed - DEPLOYMENT_KEYS)
    listing = f" Its arguments: {', '.join('+' + k for k in own)}." if own else ""
    raise ArgumentError(
        f"{command}: unknown argument{'s' if len(problems) > 1 else ''} {', '.join(problems)}; nothing was done."
        f"{listing} See `{command} +help=true`."
    )


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
            _remember_secrets(argv)
            try:
                code = fn(argv)
            except NgymError as e:
                _print_error(f"error: {e}")
                sys.exit(2)
            except KeyboardInterrupt:
                print(f"\n{command}: interrupted", file=sys.stderr)
                sys.exit(130)
            except Exception:  # a bug: still no secret in what is printed
                _print_error(traceback.format_exc().rstrip())
                sys.exit(1)
            sys.exit(code or 0)

        main.summary = summary  # type: ignore[attr-defined]
        return main

    return wrap
