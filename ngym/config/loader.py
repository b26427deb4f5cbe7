"""Parse command-line overrides (Hydra's grammar), env.yaml and ``config_paths``, and merge them.

Precedence: command line > env.yaml > later config files > earlier config files (OmegaConf merge:
dicts merge key by key, lists and scalars are replaced). ``config_paths`` may itself appear in a
loaded file; new paths are appended and loaded breadth-first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ngym.config.paths import PARENT_DIR, resolve_path
from ngym.config.secrets import MASK, is_secret_key
from ngym.errors import ConfigFileError, OverrideError

_PARSER: OverridesParser | None = None

#: key under which the loader records which file defined each top-level key (removed before use)
SOURCES_KEY = "_ngym_sources"


@dataclass(slots=True)
class ParserConfig:
    """How to build the global config (compatible with the reference's ``GlobalConfigDictParserConfig``)."""

    dotenv_path: Path | str | None = None
    initial_global_config_dict: dict[str, Any] | None = None
    skip_load_from_cli: bool = False
    skip_load_from_dotenv: bool = False
    hide_secrets: bool = False
    cli_args: Sequence[str] | None = None
    cwd: Path | None = None
    sources: dict[str, str] = field(default_factory=dict)


def parse_overrides(args: Sequence[str]) -> tuple[DictConfig, list[str], list[str]]:
    """Hydra-style overrides -> (dict to merge on top, keys that must already exist, keys to delete).

    ``+k=v`` and ``++k=v`` set a key; ``k=v`` sets a key that must exist after merging;
    ``~k`` deletes one. Dotted keys nest, ``[a,b]`` is a list, ``null`` is None.
    """
    global _PARSER
    if _PARSER is None:
        _PARSER = OverridesParser.create()
    cli = OmegaConf.create({})
    must_exist: list[str] = []
    deletes: list[str] = []
    for arg in args:
        try:
            (override,) = _PARSER.parse_overrides([arg])
        except OverrideParseException as e:
            first = str(e).splitlines()[0]
            name = arg.lstrip("+~").split("=", 1)[0]
            if is_secret_key(name.rsplit(".", 1)[-1]):  # the parser's message quotes the value
                arg, first = f"{arg.split('=', 1)[0]}={MASK}", "the value is not valid override syntax"
            raise OverrideError(
                f"Cannot parse the command-line override {arg!r}: {first}.\n"
                f"Write overrides as +key=value (lists: \"+config_paths=[a.yaml,b.yaml]\"; quote the whole "
                f"argument in the shell)."
            ) from None
        key = override.key_or_group
        if override.package:
            key = f"{override.package}.{key}"
        if override.is_delete():
            deletes.append(key)
            continue
        if not (override.is_add() or override.is_force_add()):
            must_exist.append(key)
        try:
            OmegaConf.update(cli, key, override.value(), merge=False, force_add=True)
        except OmegaConfBaseException as e:
            raise OverrideError(f"Cannot apply the override {key}=...: {e}") from None
    return cli, must_exist, deletes


def _merge(*configs: DictConfig | ListConfig) -> DictConfig:
    """OmegaConf.merge of mappings, typed as the mapping it is."""
    merged = OmegaConf.merge(*configs)
    assert isinstance(merged, DictConfig)
    return merged


def _read_yaml(path: Path, what: str) -> DictConfig:
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigFileError(
            f"{what} {str(path)!r} does not exist. Check the path (relative paths are looked up in the "
            f"current directory {os.getcwd()!r}, then in the ngym checkout {str(PARENT_DIR)!r})."
        ) from None
    except OSError as e:
        raise ConfigFileError(f"{what} {str(path)!r} cannot be read: {e}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigFileError(f"{what} {str(path)}{where} is not valid YAML: {problem}. Fix the file.") from None
    if data is None:
        return OmegaConf.create({})
    if not isinstance(data, dict):
        raise ConfigFileError(
            f"{what} {str(path)!r} must hold a mapping of keys to values at the top, not a {type(data).__name__}."
        )
    try:
        return OmegaConf.create(data)
    except OmegaConfBaseException as e:
        raise ConfigFileError(f"{what} {str(path)!r} cannot be loaded: {e}") from None


def _as_path_list(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, ListConfig | list) and all(isinstance(v, str) for v in value):
        return list(value)
    raise ConfigFileError(
        f"config_paths in {where} must be a list of YAML paths, e.g. \"+config_paths=[a.yaml,b.yaml]\"; "
        f"got {OmegaConf.to_container(value) if isinstance(value, DictConfig | ListConfig) else value!r}."
    )


def _find_dotenv(pc: ParserConfig, cwd: Path) -> Path | None:
    if pc.dotenv_path is not None:
        return Path(pc.dotenv_path)
    for candidate in (cwd / "env.yaml", PARENT_DIR / "env.yaml"):
        if candidate.is_file():
            return candidate
    return None


def load_config(pc: ParserConfig | None = None) -> DictConfig:
    """Merge every source into one (unresolved) config; see the module docstring for precedence."""
    pc = pc or ParserConfig()
    cwd = pc.cwd or Path.cwd()
    args = list(pc.cli_args if pc.cli_args is not None else sys.argv[1:])
    cli, must_exist, deletes = parse_overrides([] if pc.skip_load_from_cli else args)
    if pc.initial_global_config_dict:
        cli = _merge(OmegaConf.create(pc.initial_global_config_dict), cli)

    env = OmegaConf.create({})
    dotenv = None if pc.skip_load_from_dotenv else _find_dotenv(pc, cwd)
    if dotenv is not None:
        env = _read_yaml(dotenv, "env.yaml")

    top = _merge(env, cli)
    paths = _as_path_list(top.get("config_paths"), "the command line / env.yaml")
    files: list[DictConfig] = []
    sources: dict[str, str] = {}
    servers_from: dict[str, str] = {}
    i = 0
    while i < len(paths):
        path = paths[i]
        loaded = _read_yaml(resolve_path(path, cwd), "Config file")
        for nested in _as_path_list(loaded.get("config_paths"), path):
            if nested not in paths:
                paths.append(nested)
        for key in loaded:
            if key == "config_paths":
                continue
            if _defines_server(loaded, str(key)) and str(key) in servers_from and servers_from[str(key)] != path:
                raise ConfigFileError(
                    f"Server instance {key!r} is defined in both {servers_from[str(key)]} and {path}. Instance names "
                    f"must be unique: rename one (and the refs to it), or drop one file from config_paths."
                )
            if _defines_server(loaded, str(key)):
                servers_from[str(key)] = path
            sources[str(key)] = path
        files.append(loaded)
        i += 1

    base = _merge(*files, env)
    for key in must_exist:
        if not _has_key(base, key):
            raise OverrideError(
                f"The override {key}=... changes a key that no config file defines. "
                f"To add it, write +{key}=... (or ++{key}=... to set it either way)."
            )
    merged = OmegaConf.merge(base, cli)
    assert isinstance(merged, DictConfig)
    if paths:
        merged.config_paths = paths
    for key in deletes:
        parent, _, leaf = key.rpartition(".")
        node = OmegaConf.select(merged, parent) if parent else merged
        if isinstance(node, DictConfig) and leaf in node:
            del node[leaf]
    if dotenv is not None:  # keys env.yaml defines (a config file's definition is named first)
        for key in env:
            sources.setdefault(str(key), str(dotenv))
    pc.sources.update(sources)
    return merged


def _defines_server(cfg: DictConfig, key: str) -> bool:
    """Whether ``cfg[key]`` is a whole server instance (``{type: {impl: {entrypoint: ...}}}``)."""
    node = cfg._get_node(key)
    if not isinstance(node, DictConfig) or len(node) != 1:
        return False
    (inner,) = node.values()
    return isinstance(inner, DictConfig) and any(isinstance(v, DictConfig) and "entrypoint" in v for v in inner.values())


def _has_key(cfg: DictConfig, dotted: str) -> bool:
    node: Any = cfg
    for part in dotted.split("."):
        if not isinstance(node, DictConfig) or part not in node:
            return False
        node = node._get_node(part)
    return True
