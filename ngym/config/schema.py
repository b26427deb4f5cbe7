"""Pydantic models of the YAML a user writes: server instances and their datasets."""

from __future__ import annotations

from enum import Enum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SERVER_TYPES = ("resources_servers", "responses_api_agents", "responses_api_models")
ServerType = Literal["resources_servers", "responses_api_agents", "responses_api_models"]

#: top-level keys that are never server instances
RESERVED_KEYS = frozenset(
    {
        "config_paths", "entrypoint", "default_host", "head_server", "disallowed_ports", "head_server_deps",
        "python_version", "pip_install_verbose", "use_absolute_ip", "uv_pip_set_python", "skip_venv_if_present",
        "hf_token", "ray_head_node_address", "port_range_low", "port_range_high", "dry_run", "uv_cache_dir",
        "uv_venv_dir", "error_on_almost_servers", "policy_base_url", "policy_api_key", "policy_model_name",
        "colocate", "ray",
    }
)


class Domain(str, Enum):
    math = "math"
    coding = "coding"
    agent = "agent"
    knowledge = "knowledge"
    instruction_following = "instruction_following"
    long_context = "long_context"
    safety = "safety"
    games = "games"
    translation = "translation"
    e2e = "e2e"
    rlhf = "rlhf"
    other = "other"


License = Literal[
    "Apache 2.0",
    "MIT",
    "Creative Commons Attribution 4.0 International",
    "Creative Commons Attribution-ShareAlike 4.0 International",
    "NVIDIA Internal Use Only, Do Not Distribute",
    "TBD",
    "GNU General Public License v3.0",
]


class DatasetConfig(BaseModel):
    """One dataset attached to an agent instance."""

    model_config = ConfigDict(extra="forbid")

    name: str
    type: Literal["train", "validation", "example"]
    jsonl_fpath: str
    num_repeats: int = Field(default=1, ge=1)
    gitlab_identifier: dict[str, Any] | None = None
    huggingface_identifier: dict[str, Any] | None = None
    license: License | None = None
    #: a seeded generator that writes ``jsonl_fpath`` when it is missing (``ng_prepare_data``): a Python
    #: file defining ``generate(split, num_rows, seed, **generator_args)`` that yields rows
    generator: str | None = None
    num_rows: int | None = Field(default=None, ge=1)
    seed: int = 0
    generator_args: dict[str, Any] = Field(default_factory=dict)
    #: ``jsonl_fpath`` is a Parquet file or a saved Hugging Face dataset: which columns make a row
    #: (``ngym.data.sources.Columns``: prompt or messages, system_prompt, tools, task_fields, rename, split)
    columns: dict[str, Any] | None = None
    #: a key NeMo Gym's current version (after v0.2.1) adds to dataset entries (where the dataset comes
    #: from): accepted so its configs load, not used — ngym reads the rows from ``jsonl_fpath``
    source: str | dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            unknown = sorted(str(k) for k in data if k not in cls.model_fields)
            if unknown:
                raise ValueError(
                    f"unknown key(s) {', '.join(unknown)} in dataset entry {data.get('name', '?')!r}. A dataset entry takes "
                    f"{', '.join(cls.model_fields)} (NeMo Gym v0.2.1's keys, its later `source`, and ngym's). Remove or rename "
                    f"them; to keep notes about a dataset, put them in its data rows or a comment"
                )
        return data

    @model_validator(mode="after")
    def _license_for_training_data(self) -> DatasetConfig:
        if self.type in ("train", "validation") and self.license is None:
            raise ValueError(f"dataset {self.name!r} of type {self.type!r} needs a license (e.g. license: Apache 2.0)")
        if self.generator is not None and self.num_rows is None:
            raise ValueError(f"dataset {self.name!r} names a generator ({self.generator}) but no num_rows")
        return self


class RayPlacementConfig(BaseModel):
    """Where and with what a server instance (each of its replicas) runs on a Ray cluster
    (``ray: true`` / ``ray_head_node_address``; docs/scale-out.md). Ignored without Ray."""

    model_config = ConfigDict(extra="forbid")

    #: CPUs reserved on the node for each replica (0: reserves none; the server may still use any)
    num_cpus: float = Field(0.0, ge=0)
    #: GPUs reserved for each replica (Ray sets CUDA_VISIBLE_DEVICES in the server's environment)
    num_gpus: float = Field(0.0, ge=0)
    #: custom resources a node must offer (``ray start --resources='{"sandbox": 4}'``), per replica
    resources: dict[str, float] = Field(default_factory=dict)
    #: labels a node must carry (``ray start --labels=zone=a``); Ray's label selector syntax
    node_labels: dict[str, str] = Field(default_factory=dict)
    #: SPREAD: replicas and servers over as many nodes as fit; DEFAULT: Ray's default (packs first)
    scheduling_strategy: Literal["SPREAD", "DEFAULT"] = "SPREAD"


class RayClusterConfig(BaseModel):
    """The top-level Ray keys: ``ray: true`` places every server on a Ray cluster (a local one
    ng_run starts and stops, unless ``ray_head_node_address`` names one to join: ``auto`` for the
    one running on this machine, or ``<host>:<port>`` of its head)."""

    model_config = ConfigDict(extra="forbid")

    ray: bool | None = None
    ray_head_node_address: str | None = None

    @property
    def wanted(self) -> bool:
        """Whether servers are placed on Ray (``ray``, else whether an address is given)."""
        return self.ray if self.ray is not None else bool(self.ray_head_node_address)


class ServerConfig(BaseModel):
    """Settings every server instance has; implementations subclass this with their own keys.

    ``name`` is the instance name (the top-level YAML key). Unknown keys are kept.
    """

    model_config = ConfigDict(extra="allow")

    name: str = ""
    entrypoint: str
    host: str | None = None
    port: int | None = None
    num_workers: int | None = None
    #: processes serving this instance behind its one name (clients balance, episodes stay on one)
    num_replicas: int = Field(1, ge=1)
    #: every replica's port, [0] being ``port`` (filled in by ng_run)
    replica_ports: list[int] | None = None
    #: every replica's host when they run on different machines (Ray placement; filled in by ng_run)
    replica_hosts: list[str] | None = None
    #: resources and node constraints of each replica on a Ray cluster
    placement: RayPlacementConfig | None = None
    domain: Domain | None = None
    datasets: list[DatasetConfig] | None = None


class ServerRef(BaseModel):
    """A reference from one instance to another: ``{type: <server type>, name: <instance>}``."""

    model_config = ConfigDict(extra="forbid")

    type: ServerType
    name: str


class HeadServerConfig(BaseModel):
    """Where the head server listens (the reference's ``BaseServerConfig``)."""

    model_config = ConfigDict(extra="allow")

    host: str = "127.0.0.1"
    port: int = 11000

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"
