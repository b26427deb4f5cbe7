"""Import-compatibility shim for NeMo Gym v0.2.1.

* Environments: ``nemo_gym.base_resources_server``, ``nemo_gym.openai_utils``,
  ``nemo_gym.config_types``, ``nemo_gym.server_utils`` (backed by :mod:`ngym.interop.nemo`), so a
  reference resources server folder runs unchanged (docs/compatibility.md has the measured table).
* Trainer integrations: ``nemo_gym.cli``, ``nemo_gym.global_config``, ``nemo_gym.rollout_collection``
  (backed by :mod:`ngym.training`).

Do not install this next to the real ``nemo-gym`` package: both provide ``nemo_gym``."""
