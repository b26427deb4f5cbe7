"""Configuration: YAML server instances, env.yaml and command-line overrides, merged and checked.

    load_config(...)          -> DictConfig  (merged, interpolations unresolved)
    build_deployment(cfg)     -> Deployment  (server instances validated, refs checked, ports set)
"""

from ngym.config.deployment import Deployment, ServerSpec, build_deployment
from ngym.config.loader import ParserConfig, load_config
from ngym.config.secrets import mask_secrets

__all__ = ["Deployment", "ParserConfig", "ServerSpec", "build_deployment", "load_config", "mask_secrets"]
