"""The text of a message's raw ``content`` (as stored in JSON, not parsed into models)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def content_text(content: Any, sep: str = "") -> str:
    """The text of ``content``: a string as is; of a list of parts, each part's ``text`` (a
    refusal part's ``refusal``; a bare string as is), joined with ``sep``. Anything else: ``""``."""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        return ""
    parts: list[str] = []
    for part in content:
        if isinstance(part, Mapping):
            text = part.get("text")
            if isinstance(text, str):
                parts.append(text)
            elif isinstance(part.get("refusal"), str):
                parts.append(part["refusal"])
        elif isinstance(part, str):
            parts.append(part)
    return sep.join(parts)
