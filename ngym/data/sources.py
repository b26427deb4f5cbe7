"""Rows from the files users already have: JSONL, Parquet, and Hugging Face datasets saved to disk.

A Parquet file (``*.parquet``) or a folder written by ``datasets``' ``save_to_disk`` (a ``Dataset``:
``dataset_info.json`` and ``state.json``; a ``DatasetDict``: ``dataset_dict.json`` and one folder per
split) is read into rows by a :class:`Columns` mapping:

* a table that has a ``responses_create_params`` column is in ngym's own row format: its rows are
  taken as they are (every column a key of the row; null values left out);
* otherwise ``prompt`` names the column holding the user's text (one user message), or
  ``messages`` the column holding the input messages (a list of ``{role, content}``);
  ``system_prompt`` adds a system message first; ``tools`` names a column of tool definitions;
* the task fields (what the environment's verifier reads) are the other columns, or only those
  ``task_fields`` lists; ``rename`` renames columns (``{answer: expected_answer}``).

Nested columns (``responses_create_params``, ``messages``, ``tools``) may hold JSON text: Parquet
stores objects as structs whose fields are the union over all rows (a tool's parameters would gain
the other tools' properties as nulls), so write nested JSON as text.

Parquet needs ``pyarrow``, saved datasets ``datasets`` (``pip install 'ngym[hf-data]'``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ngym.data.jsonl import iter_jsonl
from ngym.errors import InputError

PARAMS = "responses_create_params"


class Columns(BaseModel):
    """Which columns of a table make a row (see the module's text)."""

    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, description="the column holding the user's text (one user message)")
    messages: str | None = Field(None, description="the column holding the input messages ({role, content} each)")
    system_prompt: str | None = Field(None, description="a system message put before each row's input")
    tools: str | None = Field(None, description="the column holding each row's tools (function tool definitions)")
    task_fields: list[str] | None = Field(None, description="the columns kept as task fields (default: all the others)")
    rename: dict[str, str] = Field(default_factory=dict, description="column -> task field name")
    split: str | None = Field(None, description="the split of a saved DatasetDict (train, validation, ...)")


def parse_columns(value: Any, where: str) -> Columns:
    """A :class:`Columns` from a config value; errors name ``where`` and the allowed keys."""
    if value is None:
        return Columns()
    if isinstance(value, Columns):
        return value
    try:
        return Columns.model_validate(value)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc'])) or 'value'}: {err['msg']}" for err in e.errors())
        raise InputError(f"{where}: {problems}. Allowed keys: {', '.join(Columns.model_fields)} (docs/interop.md#datasets-users-already-have)") from None


def kind_of(path: Path) -> str:
    """``jsonl``, ``parquet``, ``hf_dataset`` or ``hf_dataset_dict``."""
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            return "hf_dataset_dict"
        if (path / "state.json").is_file() or (path / "dataset_info.json").is_file():
            return "hf_dataset"
        raise InputError(
            f"{path} is a folder but not a Hugging Face dataset saved with save_to_disk (no dataset_info.json, state.json "
            f"or dataset_dict.json in it); give a JSONL or Parquet file, or the folder save_to_disk wrote"
        )
    if path.suffix == ".parquet":
        return "parquet"
    return "jsonl"


def is_table(path: Path) -> bool:
    return path.exists() and kind_of(path) != "jsonl"


def _records(path: Path, kind: str, split: str | None) -> Iterator[dict[str, Any]]:
    if kind == "parquet":
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise InputError(f"{path}: reading Parquet needs pyarrow: pip install 'ngym[hf-data]'") from None
        try:
            table = pq.ParquetFile(path)
        except Exception as e:  # noqa: BLE001 - pyarrow raises ArrowInvalid and OSError subclasses
            raise InputError(f"{path}: not a readable Parquet file ({type(e).__name__}: {e})") from None
        for batch in table.iter_batches(batch_size=1024):
            yield from batch.to_pylist()
        return
    try:
        import datasets
    except ImportError:
        raise InputError(f"{path}: reading a saved Hugging Face dataset needs datasets: pip install 'ngym[hf-data]'") from None
    loaded = datasets.load_from_disk(str(path))
    if kind == "hf_dataset_dict":
        splits = list(loaded.keys())
        if split is None:
            if len(splits) != 1:
                raise InputError(f"{path} is a DatasetDict with splits {splits}: name one with split: <name> in the column mapping")
            split = splits[0]
        if split not in splits:
            raise InputError(f"{path} has no split {split!r}; its splits: {splits}")
        loaded = loaded[split]
    for record in loaded:
        yield dict(record)


def _json(value: Any, column: str, where: str) -> Any:
    """A nested column's value; JSON text is parsed (Parquet structs give every object the union of the
    keys of all rows, so nested JSON such as tool definitions is best stored as text)."""
    if not isinstance(value, str):
        return value
    try:
        return orjson.loads(value)
    except orjson.JSONDecodeError as e:
        raise InputError(f"{where}: column {column!r} holds text that is not JSON ({e}): {value[:120]!r}") from None


def to_row(record: dict[str, Any], columns: Columns, where: str) -> dict[str, Any]:
    """One table record as an ngym row (see the module's text)."""
    if PARAMS in record and columns.prompt is None and columns.messages is None:
        own = {columns.rename.get(k, k): v for k, v in record.items() if v is not None or k == PARAMS}
        own[PARAMS] = _json(record[PARAMS], PARAMS, where)
        return own
    if columns.prompt is None and columns.messages is None:
        raise InputError(
            f"{where}: the table has no {PARAMS} column, and the column mapping names neither prompt nor messages "
            f"(its columns: {', '.join(record)}). Say which column is the prompt, e.g. columns: {{prompt: question}}"
        )
    used = {c for c in (columns.prompt, columns.messages, columns.tools) if c}
    missing = [c for c in used | set(columns.task_fields or []) if c not in record]
    if missing:
        raise InputError(f"{where}: no column {', '.join(map(repr, missing))} (its columns: {', '.join(record)})")
    input_: list[dict[str, Any]] = []
    if columns.system_prompt:
        input_.append({"role": "system", "content": columns.system_prompt})
    if columns.messages:
        messages = _json(record[columns.messages], columns.messages, where)
        if not isinstance(messages, list) or not all(isinstance(m, dict) and "role" in m for m in messages):
            raise InputError(f"{where}: column {columns.messages!r} must hold a list of {{role, content}} messages, not {str(messages)[:120]}")
        input_ += [{"role": m["role"], "content": m.get("content") or ""} for m in messages]
    else:
        assert columns.prompt is not None
        input_.append({"role": "user", "content": str(record[columns.prompt])})
    params: dict[str, Any] = {"input": input_}
    if columns.tools and record.get(columns.tools):
        params["tools"] = _json(record[columns.tools], columns.tools, where)
    keep = columns.task_fields if columns.task_fields is not None else [c for c in record if c not in used]
    row: dict[str, Any] = {PARAMS: params}
    for column in keep:
        if record[column] is not None:
            row[columns.rename.get(column, column)] = record[column]
    return row


def iter_rows(
    path: Path,
    what: str,
    *,
    columns: Columns | None = None,
    setting: str = "+input_jsonl_fpath",
    problems: list[str] | None = None,
    limit: int | None = None,
) -> Iterator[tuple[int, bytes, dict[str, Any]]]:
    """``(row number, JSON bytes, row)`` for each row of a JSONL file (as :func:`iter_jsonl`), a Parquet
    file or a saved Hugging Face dataset (mapped by ``columns``). Row numbers count from 1."""
    if not path.exists():
        raise InputError(f"Cannot read the {what} {str(path)!r}: no such file or folder. Check {setting}.")
    kind = kind_of(path)
    if kind == "jsonl":
        if columns is not None and columns != Columns():
            raise InputError(f"{path} is JSONL: its lines are rows as they are; a column mapping is for Parquet files and saved datasets")
        yield from iter_jsonl(path, what, setting=setting, problems=problems, limit=limit)
        return
    columns = columns or Columns()
    for number, record in enumerate(_records(path, kind, columns.split), start=1):
        if limit and number > limit:
            break
        row = to_row(record, columns, f"{path} (row {number})")
        try:
            text = orjson.dumps(row)
        except TypeError as e:
            raise InputError(f"{path} (row {number}): a value cannot be written as JSON ({e})") from None
        yield number, text, row


def read_rows(path: str | Path, columns: Columns | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a JSONL file, a Parquet file or a saved dataset."""
    for _, _, row in iter_rows(Path(path), "data file", columns=columns, setting="the data path"):
        yield row


def write_jsonl(path: Path, rows: Iterator[tuple[int, bytes, dict[str, Any]]]) -> int:
    """Write the rows' JSON bytes one per line; returns the count."""
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("wb") as out:
        for _, text, _ in rows:
            out.write(text + b"\n")
            count += 1
    return count
