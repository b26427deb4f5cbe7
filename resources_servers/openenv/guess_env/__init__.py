"""guess_env: a small OpenEnv environment written in OpenEnv's own style (models, server, client)."""
