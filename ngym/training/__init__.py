"""Trainer integration: start a deployment from Python, collect rollouts, turn them into token
sequences for training (:mod:`ngym.training.view`), and a TRL GRPO adapter
(:mod:`ngym.training.trl`, needs ``pip install -e '.[train]'``)."""

from ngym.training.api import RolloutFailed, RolloutResult, RunningDeployment, check_rows, deploy, start_deployment
from ngym.training.compat import (
    HEAD_SERVER_KEY_NAME,
    BaseServerConfig,
    GlobalConfigDictParserConfig,
    RolloutCollectionHelper,
    RunHelper,
)
from ngym.training.view import EpisodeView, TokenFaithfulnessError, Turn, episode_view

__all__ = [
    "EpisodeView",
    "TokenFaithfulnessError",
    "Turn",
    "episode_view",
    "HEAD_SERVER_KEY_NAME",
    "BaseServerConfig",
    "GlobalConfigDictParserConfig",
    "RolloutCollectionHelper",
    "RolloutFailed",
    "RolloutResult",
    "RunHelper",
    "RunningDeployment",
    "check_rows",
    "deploy",
    "start_deployment",
]
