"""Configuration: YAML server instances, env.yaml and command-line overrides, merged and checked.

    load_config(...)          -> DictConfig  (merged, interpolations unresolved)
    build_deployment(cfg)     -> Deployment  (server instances validated, refs checked, ports set)

Names are imported on first use: a server process needs the schema, not Hydra's override parser.
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {
    "Deployment": "deployment", "ServerSpec": "deployment", "build_deployment": "deployment",
    "ParserConfig": "loader", "load_config": "loader", "mask_secrets": "secrets",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'ngym.config' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ngym.config.{_WHERE[name]}"), name)
