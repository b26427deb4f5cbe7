"""ng_dump_config: print the resolved config, secrets masked."""

from __future__ import annotations

from omegaconf import OmegaConf
from omegaconf.errors import InterpolationKeyError, OmegaConfBaseException

from ngym.cli.common import DEPLOYMENT_KEYS, entrypoint, load
from ngym.config.deployment import build_deployment
from ngym.config.secrets import mask_secrets
from ngym.errors import ConfigError

SUMMARY = """\
Merge the config files, env.yaml and overrides exactly as ng_run would (ports assigned, references
checked) and print the result as YAML, with interpolations resolved and secrets (API keys, tokens,
passwords) shown as ****."""


@entrypoint("ng_dump_config", SUMMARY, usage='"+config_paths=[a.yaml,b.yaml]" [+key=value ...]')
def main(argv: list[str]) -> int:
    cfg, pc = load(argv, command="ng_dump_config", known=DEPLOYMENT_KEYS)
    deployment = build_deployment(cfg, pc.sources)
    try:
        resolved = OmegaConf.to_container(deployment.config, resolve=True)
    except InterpolationKeyError as e:
        key = str(e).split("'")[1] if "'" in str(e) else str(e)
        raise ConfigError(
            f"The config uses ${{{key}}}, which is not set. Put `{key}: ...` in env.yaml or pass +{key}=..."
        ) from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"Cannot resolve the config: {e}") from None
    print(OmegaConf.to_yaml(OmegaConf.create(mask_secrets(resolved))), end="")
    return 0
