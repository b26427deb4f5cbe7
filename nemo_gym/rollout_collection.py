"""``from nemo_gym.rollout_collection import RolloutCollectionHelper`` (NeMo RL's import)."""

from ngym.training.compat import RolloutCollectionHelper

__all__ = ["RolloutCollectionHelper"]
