"""``from nemo_gym.cli import GlobalConfigDictParserConfig, RunHelper`` (NeMo RL's import)."""

from ngym.training.compat import GlobalConfigDictParserConfig, RunHelper

__all__ = ["GlobalConfigDictParserConfig", "RunHelper"]
