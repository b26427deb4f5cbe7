"""Where ngym looks for files: the current directory first, then the ngym checkout."""

from __future__ import annotations

from pathlib import Path

#: The directory holding the ``ngym`` package: the repository root in a source checkout.
PARENT_DIR = Path(__file__).resolve().parents[2]


def resolve_path(path: str | Path, cwd: Path | None = None) -> Path:
    """Absolute paths as given; relative ones from ``cwd`` if the file exists there, else from
    the ngym checkout (so configs and data named as in the docs work from any directory)."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return p
    here = (cwd or Path.cwd()) / p
    if here.exists():
        return here
    installed = PARENT_DIR / p
    return installed if installed.exists() else here
