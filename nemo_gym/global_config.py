"""``from nemo_gym.global_config import GlobalConfigDictParserConfig, HEAD_SERVER_KEY_NAME``."""

from ngym.training.compat import HEAD_SERVER_KEY_NAME, GlobalConfigDictParserConfig

__all__ = ["HEAD_SERVER_KEY_NAME", "GlobalConfigDictParserConfig"]
