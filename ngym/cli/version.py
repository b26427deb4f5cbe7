"""ng_version: versions of ngym, Python, key dependencies and the machine."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata

from ngym.cli.common import entrypoint, load
from ngym.config.paths import PARENT_DIR

SUMMARY = "Print ngym's version, Python, key dependency versions and the machine. +json=true for one JSON object."
DEPENDENCIES = ("fastapi", "uvicorn", "httpx", "pydantic", "omegaconf", "hydra-core", "openai")


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def info() -> dict[str, object]:
    mem_gb = None
    try:
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError):
        pass
    return {
        "ngym": _version("ngym"),
        "python": platform.python_version(),
        "python_path": sys.executable,
        "installation_path": str(PARENT_DIR),
        "dependencies": {name: _version(name) for name in DEPENDENCIES},
        "system": {
            "os": platform.system(),
            "platform": platform.platform(),
            "architecture": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "memory_gb": mem_gb,
        },
    }


@entrypoint("ng_version", SUMMARY, usage="[+json=true]")
def main(argv: list[str]) -> int:
    cfg, _ = load(argv, command="ng_version", known={"json"}, skip_load_from_dotenv=True)
    data = info()
    if cfg.get("json", False):
        print(json.dumps(data))
        return 0
    print(f"ngym {data['ngym']}  (installed at {data['installation_path']})")
    print(f"Python {data['python']}  ({data['python_path']})")
    dependencies = data["dependencies"]
    assert isinstance(dependencies, dict)
    for name, version in dependencies.items():
        print(f"  {name:<11} {version or 'not installed'}")
    system = data["system"]
    assert isinstance(system, dict)
    print(f"{system['platform']}, {system['cpu_count']} CPUs, {system['memory_gb']} GB")
    return 0
