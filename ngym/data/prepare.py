"""Data preparation (``ng_prepare_data``, spec §11): read every agent's datasets, check every row,
write each dataset's metrics next to it (with conflict detection against a committed file), and
collate the rows of each type into one file with ``agent_ref`` stamped, optionally mixed so every
batch holds each environment in proportion (:mod:`ngym.data.mix`).

Rows are never all held in memory: the first pass validates each line and keeps its byte offset;
collation reads the valid lines again by offset.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException
from pydantic import BaseModel, Field, ValidationError

from ngym.config.paths import resolve_path
from ngym.config.schema import RESERVED_KEYS, DatasetConfig
from ngym.data.rows import check_row as check_row_data
from ngym.data.dataset_metrics import DatasetMetrics, differences
from ngym.data.generators import run_generator
from ngym.data.sources import is_table, iter_rows, parse_columns, write_jsonl
from ngym.errors import ArgumentError, ConfigError, InputError
from ngym.data.mix import Fill, MixPlan, balanced_plan
from ngym.wire.responses import ResponseCreateParams

AGENT_TYPE = "responses_api_agents"
MAX_REPORTED = 20
EXAMPLE_ROWS = 5
GENERATOR_KEYS = {"generator", "num_rows", "seed", "generator_args"}
POLICY_PLACEHOLDERS = {"policy_base_url": "", "policy_api_key": "", "policy_model_name": ""}
Mode = Literal["train_preparation", "example_validation"]
DatasetType = Literal["train", "validation", "example"]
TYPES_OF_MODE: dict[str, tuple[DatasetType, ...]] = {
    "train_preparation": ("train", "validation"),
    "example_validation": ("example",),
}


def _train_only() -> list[DatasetType]:
    return ["train"]


class PrepareArgs(BaseModel):
    """Prepare data: validate every row of every agent's datasets, write metrics, collate by type.

    `train_preparation` handles train and validation datasets, `example_validation` the example
    datasets (which must hold exactly 5 rows). Balanced mixing (`mix=balanced`) interleaves the
    environments of the train file (`mix_types`) so every contiguous batch of `batch_size` rows
    holds each in proportion to `mix_weights`.
    """

    config_paths: list[str] = Field(description="config files whose agents' datasets are prepared")
    output_dirpath: str = Field(description="directory for <type>.jsonl and <type>_metrics.json")
    mode: Mode = Field(description="train_preparation (train + validation) or example_validation (example)")
    should_download: bool = Field(False, description="download missing datasets (not supported)")
    data_source: Literal["huggingface", "gitlab"] = Field("huggingface", description="registry to download from")
    overwrite_metrics_conflicts: bool = Field(False, description="overwrite metrics files that disagree with the data")
    skip_invalid_rows: bool = Field(False, description="leave invalid rows out (reported) instead of failing")
    mix: Literal["none", "balanced"] = Field("none", description="balanced: interleave environments per batch")
    batch_size: int | None = Field(None, ge=1, description="rows per batch for mix=balanced")
    mix_weights: dict[str, float] | Literal["proportional", "equal"] = Field(
        "proportional", description="proportional (to rows), equal, or {agent_name: weight}"
    )
    mix_fill: Fill = Field("repeat", description="repeat: reuse rows of environments that run out; drop: stop then")
    mix_types: list[DatasetType] = Field(
        default_factory=_train_only, description="dataset types that are mixed (the others are concatenated)"
    )
    seed: int = Field(0, description="seed of the shuffles of mix=balanced")
    regenerate: bool = Field(False, description="run the datasets' generators even where their files exist")


@dataclass(slots=True)
class Dataset:
    """One dataset of one agent, after the validating pass."""

    agent: str
    config: DatasetConfig
    path: Path
    offsets: list[tuple[int, int]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    metrics: DatasetMetrics = field(default_factory=DatasetMetrics)
    #: the Parquet file or saved dataset ``path`` (JSONL) was converted from
    source: Path | None = None

    @property
    def rows(self) -> int:
        """Rows this dataset contributes: valid lines times ``num_repeats``."""
        return len(self.offsets) * self.config.num_repeats

    @property
    def metrics_path(self) -> Path:
        """``<stem>_metrics.json`` beside the dataset's file (the Parquet file or saved dataset it came from)."""
        origin = self.source or self.path
        return origin.with_name(f"{origin.stem if origin.is_file() else origin.name}_metrics.json")


@dataclass(slots=True)
class MetricsWrite:
    path: Path
    status: Literal["written", "unchanged", "overwritten", "conflict"]
    differences: list[str] = field(default_factory=list)


@dataclass(slots=True)
class PrepareReport:
    datasets: list[Dataset] = field(default_factory=list)
    metrics: list[MetricsWrite] = field(default_factory=list)
    outputs: dict[str, Path] = field(default_factory=dict)
    mixes: dict[str, MixPlan] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)
    generated: list[tuple[str, Path, int]] = field(default_factory=list)

    @property
    def conflicts(self) -> list[MetricsWrite]:
        return [m for m in self.metrics if m.status == "conflict"]


# ---- which datasets --------------------------------------------------------------------------


def agent_datasets(cfg: DictConfig, sources: dict[str, str] | None = None) -> list[tuple[str, list[DatasetConfig]]]:
    """``(agent instance, datasets)`` for every agent instance of the config that declares datasets."""
    sources = sources or {}
    found: list[tuple[str, list[DatasetConfig]]] = []
    problems: list[str] = []
    for key in cfg:
        name = str(key)
        if name in RESERVED_KEYS or name.startswith("_"):
            continue
        node = cfg._get_node(name)
        if not isinstance(node, DictConfig) or set(map(str, node.keys())) != {AGENT_TYPE}:
            continue
        impls = node[AGENT_TYPE]
        if not isinstance(impls, DictConfig) or len(impls) != 1:
            continue
        ((impl, body),) = impls.items()
        if not isinstance(body, DictConfig) or "entrypoint" not in body or body.get("datasets") is None:
            continue
        where = f"{name} -> {AGENT_TYPE} -> {impl!s} -> datasets"
        origin = f" (in {sources[name]})" if name in sources else ""
        try:
            raw = OmegaConf.to_container(body.datasets, resolve=True)
        except OmegaConfBaseException as e:
            raise ConfigError(f"{where}{origin}: cannot resolve: {e}") from None
        if not isinstance(raw, list):
            problems.append(f"{where}{origin}: must be a list of datasets, got {type(raw).__name__}")
            continue
        datasets = []
        for i, entry in enumerate(raw):
            try:
                datasets.append(DatasetConfig.model_validate(entry))
            except ValidationError as e:
                for err in e.errors():
                    loc = " -> ".join(str(p) for p in err["loc"])
                    problems.append(f"{where} -> {i}{' -> ' + loc if loc else ''}{origin}: {err['msg']}")
        found.append((name, datasets))
    if problems:
        raise ConfigError("Invalid dataset entries:\n  - " + "\n  - ".join(problems) + "\nFix the config file(s).")
    return found


def select(found: list[tuple[str, list[DatasetConfig]]], mode: str) -> list[tuple[str, DatasetConfig]]:
    types = TYPES_OF_MODE[mode]
    chosen = [(agent, d) for agent, datasets in found for d in datasets if d.type in types]
    if not chosen:
        have = {agent: sorted({d.type for d in datasets}) for agent, datasets in found} or "no agent declares datasets"
        raise ConfigError(
            f"+mode={mode} prepares {'/'.join(types)} datasets, and the agents of config_paths have none "
            f"(datasets by agent: {have}). Add them to an agent's `datasets:` or choose the other mode."
        )
    return chosen


# ---- reading and checking rows ---------------------------------------------------------------


def check_row(raw: bytes) -> tuple[dict[str, Any], ResponseCreateParams] | str:
    """A valid row and its parsed request, or the reason it is not valid (:func:`ngym.data.rows.check_row`)."""
    try:
        row = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        return f"not valid JSON ({e}). Each line must be one JSON object."
    checked = check_row_data(row)
    if isinstance(checked, str):
        return checked
    return row, checked.params


def read_dataset(agent: str, config: DatasetConfig, path: Path) -> Dataset:
    """Check every line of ``path``; record the offsets of the valid ones and their metrics."""
    dataset = Dataset(agent, config, path)
    offset = 0
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            start, offset = offset, offset + len(raw)
            text = raw.strip()
            if not text:
                continue
            checked = check_row(text)
            if isinstance(checked, str):
                dataset.problems.append(f"{path}:{lineno}: {checked}")
                continue
            row, params = checked
            dataset.offsets.append((start, len(raw)))
            for _ in range(config.num_repeats):
                dataset.metrics.add(row, params)
    return dataset


def _missing_files(chosen: list[tuple[str, DatasetConfig]]) -> list[str]:
    return [
        f"{agent} -> datasets -> {d.name} ({d.type}): jsonl_fpath {d.jsonl_fpath!r} does not exist"
        + (f" (its source {d.source!r} is not downloaded by ngym: fetch the data yourself and point jsonl_fpath at it)" if d.source else "")
        for agent, d in chosen
        if not resolve_path(d.jsonl_fpath).exists()
    ]


def convert_table(agent: str, config: DatasetConfig, path: Path, out_dir: Path) -> Path:
    """A Parquet file or saved dataset as the JSONL rows its column mapping makes (written under
    ``<output_dirpath>/converted/``); a JSONL file as it is."""
    where = f"{agent} -> datasets -> {config.name} -> columns"
    columns = parse_columns(config.columns, where)
    if not is_table(path):
        if config.columns is not None:
            raise InputError(f"{where}: {path} is JSONL (its lines are rows as they are); a column mapping is for Parquet files and saved datasets")
        return path
    target = out_dir / "converted" / f"{agent}__{config.name}.jsonl"
    write_jsonl(target, iter_rows(path, "dataset", columns=columns, setting=f"{agent} -> datasets -> {config.name} -> jsonl_fpath"))
    return target


# ---- metrics files ---------------------------------------------------------------------------


def metrics_document(config: DatasetConfig, metrics: DatasetMetrics) -> dict[str, Any]:
    """The ``<stem>_metrics.json`` content: the dataset's config (less how it is generated), then its metrics."""
    ngym_only = GENERATOR_KEYS | {k for k in ("columns", "source") if getattr(config, k) is None}
    return {**config.model_dump(mode="json", exclude=ngym_only), **metrics.to_json()}


def write_metrics(path: Path, document: dict[str, Any], overwrite: bool) -> MetricsWrite:
    """Write ``document`` unless an existing file disagrees (then ``<stem>_conflict.json``)."""
    conflict_path = path.with_name(f"{path.stem}_conflict.json")
    if path.is_file():
        try:
            existing = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            diffs = [f"the existing file is not valid JSON ({e})"]
        else:
            diffs = differences(existing, document)
        if not diffs:
            conflict_path.unlink(missing_ok=True)
            return MetricsWrite(path, "unchanged")
        if not overwrite:
            conflict_path.write_text(json.dumps(document, indent=4) + "\n")
            return MetricsWrite(conflict_path, "conflict", diffs)
        path.write_text(json.dumps(document, indent=4) + "\n")
        conflict_path.unlink(missing_ok=True)
        return MetricsWrite(path, "overwritten", diffs)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=4) + "\n")
    conflict_path.unlink(missing_ok=True)
    return MetricsWrite(path, "written")


# ---- collation -------------------------------------------------------------------------------


def _stamp(dataset: Dataset, raw: bytes) -> bytes:
    row = orjson.loads(raw)
    row["agent_ref"] = {"type": AGENT_TYPE, "name": dataset.agent}
    return orjson.dumps(row) + b"\n"


def collate(datasets: list[Dataset], output: Path) -> int:
    """Concatenate the datasets (each line ``num_repeats`` times in a row), ``agent_ref`` stamped."""
    written = 0
    with output.open("wb") as out:
        for dataset in datasets:
            with dataset.path.open("rb") as f:
                for start, length in dataset.offsets:
                    f.seek(start)
                    line = _stamp(dataset, f.read(length).strip())
                    for _ in range(dataset.config.num_repeats):
                        out.write(line)
                        written += 1
    return written


def collate_mixed(datasets: list[Dataset], output: Path, args: PrepareArgs) -> MixPlan:
    """Write the rows in a balanced order: environments are the agents of ``datasets``."""
    assert args.batch_size is not None
    pools: dict[str, list[tuple[Dataset, int]]] = {}
    for dataset in datasets:
        pool = pools.setdefault(dataset.agent, [])
        for i in range(len(dataset.offsets)):
            pool.extend([(dataset, i)] * dataset.config.num_repeats)
    weights = args.mix_weights
    if isinstance(weights, dict):  # weights of agents without data of this type do not apply
        weights = {agent: w for agent, w in weights.items() if agent in pools}
    plan = balanced_plan(
        {agent: len(pool) for agent, pool in pools.items()},
        batch_size=args.batch_size,
        weights=weights,
        fill=args.mix_fill,
        seed=args.seed,
    )
    if not plan.rows:
        raise ArgumentError(
            f"+batch_size={args.batch_size} with +mix_fill=drop leaves no complete batch: an environment has fewer "
            f"rows than its share of one batch ({ {a: len(p) for a, p in pools.items()} }). Use a smaller batch or "
            f"+mix_fill=repeat."
        )
    handles = {d.path: d.path.open("rb") for d in datasets}
    try:
        with output.open("wb") as out:
            for agent, index in plan.rows:
                dataset, i = pools[agent][index]
                start, length = dataset.offsets[i]
                f = handles[dataset.path]
                f.seek(start)
                out.write(_stamp(dataset, f.read(length).strip()))
    finally:
        for f in handles.values():
            f.close()
    return plan


# ---- the command -----------------------------------------------------------------------------


def _check_mix_args(args: PrepareArgs, agents: set[str]) -> None:
    if isinstance(args.mix_weights, dict) and set(args.mix_weights) - agents:
        raise ArgumentError(
            f"+mix_weights names unknown {sorted(set(args.mix_weights) - agents)}: the agents with datasets to prepare "
            f"are {sorted(agents)}. Example: +mix_weights={{{','.join(f'{a}:1' for a in sorted(agents))}}}"
        )
    if args.mix == "balanced" and args.batch_size is None:
        raise ArgumentError("+mix=balanced needs +batch_size=B (rows per training batch), e.g. +batch_size=64.")
    if args.mix == "none" and (args.batch_size is not None or args.mix_weights != "proportional"):
        raise ArgumentError("+batch_size and +mix_weights only apply to balanced mixing: add +mix=balanced.")
    if args.should_download:
        raise ArgumentError(
            "+should_download=true is not supported: the reference downloads from NVIDIA-internal registries. "
            "Download the file yourself and point the dataset's jsonl_fpath at it."
        )


def _listing(problems: list[str]) -> str:
    shown = "\n  ".join(problems[:MAX_REPORTED])
    more = f"\n  ... and {len(problems) - MAX_REPORTED} more" if len(problems) > MAX_REPORTED else ""
    return f"\n  {shown}{more}"


def prepare(args: PrepareArgs, cfg: DictConfig, sources: dict[str, str] | None = None) -> PrepareReport:
    """Everything ``ng_prepare_data`` does; raises :class:`InputError` on bad rows or metrics conflicts."""
    chosen = select(agent_datasets(cfg, sources), args.mode)
    _check_mix_args(args, {agent for agent, _ in chosen})
    report = PrepareReport()
    for agent, config in chosen:
        if config.generator is not None and (args.regenerate or not resolve_path(config.jsonl_fpath).is_file()):
            path, rows = run_generator(config)
            report.generated.append((f"{agent} -> {config.name} ({config.type})", path, rows))
    missing = _missing_files(chosen)
    if missing:
        raise InputError("Dataset file(s) not found (paths are relative to the current directory):" + _listing(missing))
    out_dir = Path(args.output_dirpath)
    for agent, config in chosen:
        origin = resolve_path(config.jsonl_fpath)
        path = convert_table(agent, config, origin, out_dir)
        dataset = read_dataset(agent, config, path)
        dataset.source = origin if path != origin else None
        report.datasets.append(dataset)
    problems = [p for d in report.datasets for p in d.problems]
    if problems and not args.skip_invalid_rows:
        raise InputError(
            f"{len(problems)} invalid row(s); nothing was written:" + _listing(problems)
            + "\nFix them, or pass +skip_invalid_rows=true to leave them out."
        )
    report.skipped = problems
    if args.mode == "example_validation":
        wrong = [f"{d.path}: {d.rows} valid row(s)" for d in report.datasets if d.rows != EXAMPLE_ROWS]
        if wrong:
            raise InputError(f"Example datasets must hold exactly {EXAMPLE_ROWS} rows:" + _listing(wrong))

    out_dir.mkdir(parents=True, exist_ok=True)
    for dataset in report.datasets:
        document = metrics_document(dataset.config, dataset.metrics)
        report.metrics.append(write_metrics(dataset.metrics_path, document, args.overwrite_metrics_conflicts))
    for type_ in TYPES_OF_MODE[args.mode]:
        group = [d for d in report.datasets if d.config.type == type_]
        if not group:
            continue
        merged = DatasetMetrics()
        for d in group:
            merged = merged.merge(d.metrics)
        document = metrics_document(group[0].config, merged)
        type_metrics = out_dir / f"{type_}_metrics.json"
        report.metrics.append(write_metrics(type_metrics, document, args.overwrite_metrics_conflicts))
        output = out_dir / f"{type_}.jsonl"
        if args.mix == "balanced" and type_ in args.mix_types:
            plan = collate_mixed(group, output, args)
            report.mixes[type_] = plan
            (out_dir / f"{type_}_mix_metrics.json").write_text(json.dumps(plan.report(), indent=4) + "\n")
        else:
            collate(group, output)
        report.outputs[type_] = output
    if problems:
        (out_dir / "invalid_rows.txt").write_text("\n".join(problems) + "\n")
    return report


def format_report(report: PrepareReport) -> str:
    """One line per dataset and per collated file."""
    rows = [("agent", "dataset", "type", "rows", "invalid", "metrics")]
    status = {m.path.with_name(m.path.name.replace("_conflict.json", ".json")): m for m in report.metrics}
    for d in report.datasets:
        m = status.get(d.metrics_path)
        rows.append((d.agent, d.config.name, d.config.type, str(d.rows), str(len(d.problems)),
                     f"{m.status}: {m.path}" if m else "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    generated = [f"generated {path} ({n} rows) for {what}" for what, path, n in report.generated]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r[:5], widths, strict=True)) + "  " + r[5] for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths) + "  " + "-" * 7)
    lines[:0] = generated
    for type_, output in report.outputs.items():
        total = sum(d.rows for d in report.datasets if d.config.type == type_)
        plan = report.mixes.get(type_)
        if plan is not None:
            lines.append(
                f"\n{type_}: {len(plan.rows)} rows in {plan.num_batches} balanced batches of {plan.batch_size} "
                f"-> {output}"
            )
            for env, share in plan.weights.items():
                s = plan.stats[env]
                per_batch = f"{min(s.per_batch, default=0)}-{max(s.per_batch, default=0)}"
                lines.append(
                    f"  {env}: weight {share:.3f}, {per_batch} rows per batch, {s.written} written "
                    f"({s.repeated} repeated, {s.available - len(s.used)} unused of {s.available})"
                )
        else:
            lines.append(f"\n{type_}: {total} rows -> {output}")
    if report.skipped:
        lines.append(f"\n{len(report.skipped)} invalid row(s) left out:" + _listing(report.skipped))
    for m in report.metrics:
        if m.status == "overwritten":
            lines.append(f"\nOverwrote {m.path}, which disagreed with the data:" + _listing(m.differences))
    return "\n".join(lines)


def conflict_error(report: PrepareReport) -> InputError:
    parts = [f"{m.path} ({len(m.differences)} difference(s)):" + _listing(m.differences) for m in report.conflicts]
    return InputError(
        f"{len(report.conflicts)} metrics file(s) disagree with the data; the new metrics were written next to them "
        f"as *_metrics_conflict.json:\n" + "\n".join(parts)
        + "\nIf the data changed on purpose, re-run with +overwrite_metrics_conflicts=true."
    )

