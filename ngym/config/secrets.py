"""Masking of secret values (API keys, tokens, passwords) before anything is printed or served."""

from __future__ import annotations

import re
from typing import Any

_SECRET_KEY = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd)$", re.IGNORECASE)
MASK = "****"


def is_secret_key(key: object) -> bool:
    """``openai_api_key``, ``hf_token``, ``session_secret`` are secret; ``max_output_tokens`` is not."""
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def mask_secrets(value: Any) -> Any:
    """A copy of a plain container with every non-empty secret scalar replaced by ``****``."""
    if isinstance(value, dict):
        return {
            k: (MASK if is_secret_key(k) and v not in (None, "") and not isinstance(v, dict | list) else mask_secrets(v))
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    return value
