"""Reading JSONL input files: one JSON object per line, every problem named by file:line."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson

from ngym.errors import InputError


def iter_jsonl(
    path: Path,
    what: str,
    *,
    setting: str = "+input_jsonl_fpath",
    problems: list[str] | None = None,
    limit: int | None = None,
) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
    """Yield ``(line number, stripped line, object)`` for each non-blank line of ``path``, the
    ``what`` (e.g. ``"rollouts file"``) that ``setting`` names.

    A line that is not a JSON object raises :class:`InputError` (``path:line: what is wrong``), or,
    given ``problems``, is appended there and skipped. ``limit``: read only the first lines."""
    try:
        handle = path.open("rb")
    except OSError as e:
        raise InputError(f"Cannot read the {what} {str(path)!r}: {e.strerror}. Check {setting}.") from None
    with handle:
        for lineno, raw in enumerate(handle, start=1):
            if limit and lineno > limit:
                break
            text = raw.strip()
            if not text:
                continue
            problem = None
            try:
                row = orjson.loads(text)
            except orjson.JSONDecodeError as e:
                problem = f"not valid JSON ({e})"
            else:
                if not isinstance(row, dict):
                    problem = f"a {type(row).__name__}, not a JSON object"
            if problem is None:
                yield lineno, text, row
                continue
            message = f"{path}:{lineno}: {problem}. Each line of the {what} must be one JSON object."
            if problems is None:
                raise InputError(message)
            problems.append(message)
