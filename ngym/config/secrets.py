"""Masking of secret values (API keys, tokens, passwords) before anything is printed or served."""

from __future__ import annotations

import re
from typing import Any

_SECRET_KEY = re.compile(r"(^|_)(api_?key|key|token|secret|password|passwd)$", re.IGNORECASE)
MASK = "****"


def is_secret_key(key: object) -> bool:
    """``openai_api_key``, ``hf_token``, ``session_secret`` are secret; ``max_output_tokens`` is not."""
    return isinstance(key, str) and bool(_SECRET_KEY.search(key))


def mask_secrets(value: Any, _secret: bool = False) -> Any:
    """A copy of a plain container with every non-empty secret scalar replaced by ``****``.

    Scalars in a list under a secret key (``policy_api_key: [sk-1, sk-2]``, one per replica) are
    secret too."""
    if isinstance(value, dict):
        return {k: mask_secrets(v, _secret or is_secret_key(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, _secret) for v in value]
    return MASK if _secret and value not in (None, "") else value


def secret_values(value: Any, _secret: bool = False) -> set[str]:
    """Every non-empty scalar under a secret key of a plain container, as text (what :func:`scrub` hides)."""
    found: set[str] = set()
    if isinstance(value, dict):
        for k, v in value.items():
            found |= secret_values(v, _secret or is_secret_key(k))
    elif isinstance(value, list):
        for v in value:
            found |= secret_values(v, _secret)
    elif _secret and value not in (None, "") and not (isinstance(value, str) and value.startswith("${")):
        found.add(str(value))
    return found


def scrub(text: str, values: set[str]) -> str:
    """``text`` with every occurrence of a secret value (4 characters or more) replaced by ``****``.

    >>> scrub("401 for key sk-abc123 at http://x", {"sk-abc123"})
    '401 for key **** at http://x'
    """
    for value in sorted((v for v in values if len(v) >= 4), key=len, reverse=True):
        text = text.replace(value, MASK)
    return text
