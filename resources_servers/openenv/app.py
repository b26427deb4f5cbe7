"""openenv: an OpenEnv environment server played as an ngym environment, through OpenEnv's own
client (ngym/interop/openenv_env.py, docs/interop.md). ``openenv_url`` in the config names the server."""

from __future__ import annotations

from ngym.interop.openenv_env import OpenEnvServer


class OpenEnvResourcesServer(OpenEnvServer):
    """Served as is; rows carry OpenEnv's reset arguments (``reset: {seed: 3}``)."""


if __name__ == "__main__":
    OpenEnvResourcesServer.run_webserver()
