"""ng_run: start every server of the configured environments and keep them running."""

from __future__ import annotations

import sys

from pydantic import BaseModel, Field

from ngym.cli.common import DEPLOYMENT_KEYS, command_args, entrypoint, ignore_signals, load
from ngym.config.deployment import build_deployment
from ngym.launch.launcher import Launcher

SUMMARY = """\
Start the head server and one process per server instance found in the config files, wait until
every server answers, print where each one listens, and keep them running until Ctrl-C (or
SIGTERM), which stops them all. Example:

  ng_run "+config_paths=[responses_api_models/openai_model/configs/openai_model.yaml,\\
resources_servers/example_single_tool_call/configs/example_single_tool_call.yaml]"

Put policy_base_url, policy_api_key and policy_model_name in env.yaml (or pass them as +key=value).
Optional: +head_server.port=11000, +default_host=127.0.0.1, +startup_timeout_s=180. A server that
dies is restarted (+max_restarts=3 times, waiting +restart_backoff_s=1 × 2^n seconds first) while
the others keep serving; +max_restarts=0 stops everything instead. On a Ray cluster: +ray=true
(a local one, stopped on exit) or +ray_head_node_address=auto|<host:port> (docs/scale-out.md)."""


class RunArgs(BaseModel):
    """How ng_run starts and watches the deployment."""

    startup_timeout_s: float = Field(180.0, gt=0, description="seconds every server has to answer after starting")
    max_restarts: int = Field(3, ge=0, description="restarts of a server that dies (0: a death stops the deployment)")
    restart_backoff_s: float = Field(1.0, ge=0, description="wait before the first restart; doubled at each one")


@entrypoint("ng_run", SUMMARY, RunArgs, usage='"+config_paths=[a.yaml,b.yaml]" [+key=value ...]')
def main(argv: list[str]) -> int:
    cfg, pc = load(argv, command="ng_run", model=RunArgs, known=DEPLOYMENT_KEYS)
    args = command_args(cfg, RunArgs, "ng_run")
    deployment = build_deployment(cfg, pc.sources)
    if not deployment.servers:
        print("error: no server instances in the config. Pass \"+config_paths=[...]\" with at least one server.", file=sys.stderr)
        return 2
    placement = None
    if deployment.ray is not None:  # Ray is imported only then
        from ngym.launch.ray_placement import RayPlacement

        placement = RayPlacement(deployment)
    launcher = Launcher(
        deployment,
        placement=placement,
        startup_timeout_s=args.startup_timeout_s,
        max_restarts=args.max_restarts,
        restart_backoff_s=args.restart_backoff_s,
    )
    try:
        launcher.start()
        print(launcher.table(), flush=True)
        print(
            f"All {len(deployment.servers)} servers ready in {launcher.ready_after_s:.2f} s. "
            f"Head server: {deployment.head.url}. Ctrl-C stops everything.",
            flush=True,
        )
        if launcher.token_path is not None:
            print(f"Servers accept other machines' calls only with the deployment token, in {launcher.token_path}.", flush=True)
        launcher.run_forever()
    finally:
        ignore_signals()
        launcher.stop()
        print("ngym: all servers stopped.", file=sys.stderr, flush=True)
    return 0
