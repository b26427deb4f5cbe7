"""ng_help: list the ng_* commands."""

from __future__ import annotations

import importlib

from ngym.cli.common import entrypoint, load

COMMANDS = {
    "ng_run": "ngym.cli.run",
    "ng_collect_rollouts": "ngym.cli.collect",
    "ng_e2e_collect_rollouts": "ngym.cli.e2e_collect",
    "ng_status": "ngym.cli.status",
    "ng_dump_config": "ngym.cli.dump_config",
    "ng_version": "ngym.cli.version",
    "ng_viewer": "ngym.cli.viewer",
    "ng_help": "ngym.cli.help",
    "ng_prepare_data": "ngym.cli.prepare_data",
    "ng_reward_profile": "ngym.cli.reward_profile",
    "ng_init_resources_server": "ngym.cli.init_resources_server",
    "ng_test": "ngym.cli.test",
    "ng_test_all": "ngym.cli.test_all",
    "ng_export": "ngym.cli.export",
    "ng_eval": "ngym.cli.eval",
}


@entrypoint("ng_help", "List the ngym commands. Each one prints its own help with +help=true or --help.")
def main(argv: list[str]) -> int:
    load(argv, command="ng_help", skip_load_from_dotenv=True)  # refuses any +key
    print("ngym commands (each takes +help=true):\n")
    for command, module in COMMANDS.items():
        if command == "ng_help":
            summary = "list these commands"
        else:
            text = " ".join(getattr(importlib.import_module(module), "SUMMARY", "").split("\n\n")[0].split())
            summary = text.split(". ")[0].rstrip(".:")
        print(f"  {command:<22} {summary}")
    return 0
