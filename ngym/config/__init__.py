"""Configuration: YAML server instances, env.yaml and command-line overrides, merged and checked.

    load_config(...)          -> DictConfig  (merged, interpolations unresolved)
    build_deployment(cfg)     -> Deployment  (server instances validated, refs checked, ports set)

Names are imported on first use: a server process needs the schema, not Hydra's override parser.
"""

from __future__ import annotations

from ngym.lazy import lazy_exports

_WHERE = {
    "Deployment": "deployment", "ServerSpec": "deployment", "build_deployment": "deployment",
    "ParserConfig": "loader", "load_config": "loader", "mask_secrets": "secrets",
}
__all__ = sorted(_WHERE)
__getattr__ = lazy_exports("ngym.config", {name: f"ngym.config.{module}" for name, module in _WHERE.items()})
