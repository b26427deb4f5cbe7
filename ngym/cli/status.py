"""ng_status: which servers of the running deployment answer."""

from __future__ import annotations

import time

import httpx

from ngym.cli.common import entrypoint, load
from ngym.config.deployment import head_server_config

SUMMARY = """\
Ask the head server (default 127.0.0.1:11000; +head_server.port=... for another) for its servers
and check that each one answers."""


def _uptime(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    h, m = divmod(int(m), 60)
    d, h = divmod(h, 24)
    return f"{d}d {h}h {m}m {s:.1f}s"


@entrypoint("ng_status", SUMMARY)
def main(argv: list[str]) -> int:
    cfg, _ = load(argv, command="ng_status", known={"head_server"})
    head = head_server_config(cfg)
    with httpx.Client(timeout=5.0, trust_env=False) as http:
        try:
            instances = http.get(f"{head.url}/server_instances").json()
        except httpx.HTTPError:
            print(f"No ngym deployment answers at {head.url}. Start one with ng_run \"+config_paths=[...]\".")
            return 1
        healthy = 0
        for i, inst in enumerate(instances, start=1):
            try:
                http.get(inst["url"] + "/", timeout=2.0)
                ok, status = True, "ok"
            except httpx.TimeoutException:
                ok, status = False, "timeout"
            except httpx.HTTPError:
                ok, status = False, "connection_error"
            healthy += ok
            name = inst["name"] + (f"#{inst['replica']}" if inst.get("replica") else "")
            print(
                f"{i:>2} {'✓' if ok else '✗'} {name:<45} {inst['kind']:<9} {inst['url']:<24} "
                f"pid {inst['pid']:<7} up {_uptime(inst['uptime_seconds'])} {'' if ok else status}"
            )
            last = inst.get("last_exit")
            if last:  # a server that died and was restarted: when, where, and its last lines
                where = f" on node {last['node']}" if last.get("node") else ""
                print(f"     restarted {inst.get('restarts', 0)} time(s); the last exit: code {last['code']}{where} "
                      f"(pid {last['pid']}), {_uptime(time.time() - last['at'])} ago. Its last log lines:")
                for line in last.get("log_tail", [])[-5:]:
                    print(f"       {line}")
    print(f"{healthy} healthy, {len(instances) - healthy} unhealthy")
    return 0 if healthy == len(instances) else 1
