"""One server instance of a config: ``name: {server type: {implementation: {settings}}}``.

The one parser of that shape: :func:`read_instance` checks it (used by
:func:`~ngym.config.deployment.build_deployment` for every top-level key) and :func:`parse_instance`
returns the instance with its settings resolved (what a server process validates its config
against).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import InterpolationKeyError, OmegaConfBaseException

from ngym.config.schema import SERVER_TYPES
from ngym.errors import ConfigError


@dataclass(frozen=True, slots=True)
class ServerInstance:
    """A server instance: its name, server type (``resources_servers``...), implementation (the
    folder under the type) and settings (the YAML section under the implementation)."""

    name: str
    server_type: str
    impl: str
    settings: dict[str, Any]

    @property
    def path(self) -> str:
        """``name -> type -> impl``, how messages point into the config."""
        return f"{self.name} -> {self.server_type} -> {self.impl}"

    @property
    def entrypoint(self) -> str:
        return str(self.settings.get("entrypoint", ""))


class InstanceShapeError(ConfigError):
    """A top-level key has a server type but not the shape of an instance."""


def read_instance(name: str, value: dict[str, Any], where: str = "") -> ServerInstance | None:
    """The instance ``value`` (a plain dict) describes; None when it names no server type; raises
    :class:`InstanceShapeError` when it names one but is not shaped as an instance. ``where`` is
    added after the name in messages (" (defined in file.yaml)")."""
    types = [t for t in value if t in SERVER_TYPES]
    if not types:
        return None
    if len(value) != 1:
        raise InstanceShapeError(f"{name}: an instance holds exactly one server type, found {sorted(map(str, value))}")
    server_type = types[0]
    impls = value[server_type]
    if not isinstance(impls, dict) or len(impls) != 1:
        found_impls = sorted(impls) if isinstance(impls, dict) else impls
        raise InstanceShapeError(
            f"{name}{where} -> {server_type}: exactly one implementation expected, found {found_impls!r}"
        )
    ((impl, body),) = impls.items()
    if not isinstance(body, dict) or "entrypoint" not in body:
        raise InstanceShapeError(
            f"{name}{where} -> {server_type} -> {impl}: no 'entrypoint'. If this comes from an "
            f"override, check the instance name; instances need entrypoint: app.py"
        )
    return ServerInstance(name, str(server_type), str(impl), {str(k): v for k, v in body.items()})


def parse_instance(global_config: DictConfig, name: str) -> ServerInstance:
    """Instance ``name`` of a deployment config, its settings resolved (``${...}`` filled in).
    Raises :class:`~ngym.errors.ConfigError` naming the instance and the fix."""
    if name not in global_config:
        raise ConfigError(f"Instance {name!r} is not in the deployment config.")
    raw = OmegaConf.to_container(global_config[name], resolve=False)
    instance = read_instance(name, {str(k): v for k, v in raw.items()} if isinstance(raw, dict) else {})
    if instance is None:
        raise ConfigError(f"{name!r} in the deployment config is not a server instance (no server type under it).")
    try:
        settings = OmegaConf.to_container(global_config[name][instance.server_type][instance.impl], resolve=True)
    except InterpolationKeyError as e:
        missing = str(e).split("'")[1] if "'" in str(e) else str(e)
        raise ConfigError(
            f"{instance.path} uses ${{{missing}}}, which is not set. Put `{missing}: ...` in "
            f"env.yaml or pass +{missing}=... on the command line."
        ) from None
    except OmegaConfBaseException as e:
        raise ConfigError(f"{instance.path}: cannot resolve the config: {e}") from None
    assert isinstance(settings, dict)
    return ServerInstance(name, instance.server_type, instance.impl, {str(k): v for k, v in settings.items()})
