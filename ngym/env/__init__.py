"""Environment authoring: what an environment author writes against.

    from ngym.env import Environment, EnvConfig, NoState, ToolError, VerifierError, Verdict, tool

``Environment[Task, State]`` is the typed contract (docs/writing-an-environment.md); the
reference-style names (``ResourcesServer``, ``VerifyRequest``, ...) serve environments written for
the reference system unchanged. ``tests/test_env_contract.py`` guards this list. (This file imports
only its own submodules, so importing any ngym module never cycles back through it.)
"""

from __future__ import annotations

from ngym.env.blocking import run_blocking, run_in_process
from ngym.env.environment import EnvConfig, Environment, NoState, ToolError, Verdict, VerifierError
from ngym.env.resources import (
    ResourcesServer,
    ResourcesServerConfig,
    RunRequest,
    SeedSessionRequest,
    SeedSessionResponse,
    VerifyRequest,
    VerifyResponse,
)
from ngym.env.tools import tool

__all__ = [
    "EnvConfig",
    "Environment",
    "NoState",
    "ResourcesServer",
    "ResourcesServerConfig",
    "RunRequest",
    "SeedSessionRequest",
    "SeedSessionResponse",
    "ToolError",
    "Verdict",
    "VerifierError",
    "VerifyRequest",
    "VerifyResponse",
    "run_blocking",
    "run_in_process",
    "tool",
]
