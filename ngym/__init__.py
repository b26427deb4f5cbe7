"""ngym: reinforcement-learning environments for LLM agents as HTTP servers composed from YAML.

The names below are the trainer-facing API (imported lazily: ``import ngym`` stays cheap)::

    with ngym.deploy({"config_paths": [...]}, policy_base_url=url) as d:
        results = d.run(rows)

and the reference's names (``RunHelper``, ``GlobalConfigDictParserConfig``,
``RolloutCollectionHelper``, ``BaseServerConfig``, ``HEAD_SERVER_KEY_NAME``).
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "HEAD_SERVER_KEY_NAME",
    "BaseServerConfig",
    "GlobalConfigDictParserConfig",
    "RolloutCollectionHelper",
    "RolloutFailed",
    "RolloutResult",
    "RunHelper",
    "RunningDeployment",
    "EpisodeView",
    "TokenFaithfulnessError",
    "deploy",
    "episode_view",
]

_WHERE: dict[str, str] = {}


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module(_WHERE.get(name, "ngym.training")), name)
    raise AttributeError(f"module 'ngym' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
