"""ngym: reinforcement-learning environments for LLM agents as HTTP servers composed from YAML.

The names below are the trainer-facing API (imported lazily: ``import ngym`` stays cheap)::

    with ngym.deploy({"config_paths": [...]}, policy_base_url=url) as d:
        results = d.run(rows)

and the reference's names (``RunHelper``, ``GlobalConfigDictParserConfig``,
``RolloutCollectionHelper``, ``BaseServerConfig``, ``HEAD_SERVER_KEY_NAME``).
"""

from __future__ import annotations

from ngym.lazy import lazy_exports

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

__getattr__ = lazy_exports("ngym", dict.fromkeys(__all__, "ngym.training"))


def __dir__() -> list[str]:
    return sorted(__all__)
