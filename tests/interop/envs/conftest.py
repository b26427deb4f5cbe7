"""These folders are environments written in NeMo Gym's style; their own tests run the way the
reference runs them (``ng_test`` on a copy dropped into ``resources_servers/``, as
tests/interop/test_reference_envs.py does), not in ngym's suite, where ``from app import`` cannot work."""

collect_ignore_glob = ["*"]
