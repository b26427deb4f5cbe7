"""ng_init_resources_server: create a new, working environment from the template."""

from __future__ import annotations

from pydantic import BaseModel, Field

from ngym.cli.common import command_args, entrypoint, load
from ngym.devkit.scaffold import init_resources_server

SUMMARY = """\
Create resources_servers/<name>/ with a working environment: app.py (a tool and a verify), its
config with a simple_agent (configs/<name>.yaml), 5 example rows and their metrics, a README and
tests that pass. Refuses if the directory exists.

  ng_init_resources_server +entrypoint=resources_servers/my_env
  ng_test +entrypoint=resources_servers/my_env +should_validate_data=true"""


class InitArgs(BaseModel):
    """Scaffold a resources server."""

    entrypoint: str = Field(description="resources_servers/<name>: where the environment is created")


@entrypoint("ng_init_resources_server", SUMMARY, InitArgs)
def main(argv: list[str]) -> int:
    cfg, _ = load(argv, command="ng_init_resources_server", model=InitArgs)
    args = command_args(cfg, InitArgs, "ng_init_resources_server")
    written = init_resources_server(args.entrypoint)
    print(f"Created {args.entrypoint}:")
    for path in written:
        print(f"  {path}")
    print(
        f"\nNext: edit app.py and data/example.jsonl, then\n"
        f"  ng_test +entrypoint={args.entrypoint} +should_validate_data=true"
    )
    return 0
