"""Import-compatibility shim: the module paths NeMo Gym v0.2.1's trainer integrations import
(``nemo_gym.cli``, ``nemo_gym.global_config``, ``nemo_gym.rollout_collection``,
``nemo_gym.server_utils``), backed by :mod:`ngym.training`. Only the trainer-facing names exist.
Do not install this next to the real ``nemo-gym`` package: both provide ``nemo_gym``."""
