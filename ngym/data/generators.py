"""Seeded dataset generators run by ``ng_prepare_data``.

A dataset entry may name a generator instead of (or besides) a committed file::

    datasets:
    - name: train
      type: train
      jsonl_fpath: resources_servers/code_gen/data/train.jsonl
      generator: resources_servers/code_gen/generate.py    # or just generate.py: see below
      num_rows: 5000
      seed: 1
      generator_args: {}                                    # extra keyword arguments
      license: Apache 2.0

The generator is a Python file that defines ``generate(split, num_rows, seed, **generator_args)``
yielding rows (dicts); ``split`` is the dataset's ``type``. When ``jsonl_fpath`` does not exist (or
``+regenerate=true``), the rows are written there (atomically) before the data is checked, so large
files are made where they are used instead of being committed. The path is relative to the current
directory (or the ngym checkout), or, for a bare file name, to the environment folder: the parent
of the folder that holds ``jsonl_fpath`` (``resources_servers/<env>/data/train.jsonl`` ->
``resources_servers/<env>/generate.py``).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson

from ngym.config.paths import PARENT_DIR, resolve_path
from ngym.config.schema import DatasetConfig
from ngym.errors import ConfigError, InputError


def generator_path(config: DatasetConfig) -> Path:
    """Where ``config.generator`` is (see the module docstring); ConfigError if nowhere."""
    assert config.generator is not None
    tried = [resolve_path(config.generator)]
    if os.sep not in config.generator and "/" not in config.generator:
        tried.append(resolve_path(config.jsonl_fpath).parent.parent / config.generator)
    for path in tried:
        if path.is_file():
            return path
    raise ConfigError(
        f"dataset {config.name!r}: generator {config.generator!r} not found (looked at "
        f"{', '.join(str(p) for p in tried)}). Give its path from the project root, e.g. "
        f"resources_servers/<env>/generate.py."
    )


def _load(path: Path) -> Any:
    name = f"_ngym_generator_{abs(hash(str(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"cannot import the generator {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pydantic resolve the module's names through it
    roots = [str(p) for p in (Path.cwd(), PARENT_DIR) if str(p) not in sys.path]
    sys.path[:0] = roots  # a generator imports its environment's modules from the project root
    try:
        spec.loader.exec_module(module)
    finally:
        for p in roots:
            sys.path.remove(p)
    fn = getattr(module, "generate", None)
    if not callable(fn):
        raise ConfigError(f"the generator {path} defines no generate(split, num_rows, seed, **kwargs) function")
    return fn


def run_generator(config: DatasetConfig, output: Path | None = None) -> tuple[Path, int]:
    """Write the generator's rows to ``output`` (default: the dataset's ``jsonl_fpath``); the path and
    the number of rows."""
    assert config.generator is not None and config.num_rows is not None
    path = generator_path(config)
    fn = _load(path)
    output = output or Path(config.jsonl_fpath)
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(output.name + ".partial")
    written = 0
    try:
        rows: Iterable[Any] = fn(config.type, config.num_rows, config.seed, **config.generator_args)
        with partial.open("wb") as f:
            for row in rows:
                if not isinstance(row, dict):
                    raise InputError(f"the generator {path} yielded a {type(row).__name__}, not a row (dict), "
                                     f"as row {written + 1} of dataset {config.name!r}")
                f.write(orjson.dumps(row) + b"\n")
                written += 1
        if written != config.num_rows:
            raise InputError(f"the generator {path} wrote {written} rows for dataset {config.name!r}, "
                             f"not the num_rows {config.num_rows} asked for")
        partial.replace(output)
    finally:
        partial.unlink(missing_ok=True)
    return output, written


def generator_cli(
    generate: Any, doc: str | None, default_rows: int, argv: list[str] | None = None
) -> int:
    """The command line every ``generate.py`` offers besides ``ng_prepare_data``:
    ``python generate.py --split validation --num-rows 500 --seed 2 --out rows.jsonl``."""
    import argparse

    parser = argparse.ArgumentParser(description=(doc or "").split("\n\n")[0])
    parser.add_argument("--split", default="train", choices=["train", "validation", "example"])
    parser.add_argument("--num-rows", type=int, default=default_rows)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with args.out.open("wb") as f:
        for row in generate(args.split, args.num_rows, args.seed):
            f.write(orjson.dumps(row) + b"\n")
            count += 1
    print(f"wrote {count} {args.split} rows to {args.out}", file=sys.stderr)
    return 0
