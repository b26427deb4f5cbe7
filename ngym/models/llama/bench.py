"""Measure a local llama-server: load time, prompt/generation speed, concurrency, prompt cache.

Usage::

    python -m ngym.models.llama.bench --model qwen2.5-coder-0.5b-instruct-q4_k_m --threads 1

Prints one JSON object per measurement.  Every figure comes from the
server's own ``timings`` block except wall-clock times, which are measured here.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
from typing import Any

from ngym.models.llama.engine import LlamaServer
from ngym.models.llama.weights import DEFAULT_MODEL


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine_summary() -> str:
    return f"{_cpu_name()}, {os.cpu_count()} logical CPUs"


def filler_text(approx_tokens: int, salt: int = 0) -> str:
    """Deterministic, varied English/code-ish text of roughly ``approx_tokens`` tokens.

    Different ``salt`` values give texts that differ from the first word on, so no prompt-cache
    prefix is shared between them."""
    words = (
        "tool schema argument returns string integer optional required description example "
        "the agent must call exactly one function per step and report the observation back "
        "def parse(value): return json.loads(value) if value else None # comment "
    ).split()
    out: list[str] = [f"Variant {salt}."]
    i = salt * 3
    # ~1.65 tokens per word for this mix (measured with the Qwen2.5 tokenizer); callers check
    # the real length with /tokenize.
    while len(out) < int(approx_tokens * 0.6):
        out.append(f"{words[(i * 7) % len(words)]}{i % 13 if i % 5 == 0 else ''}")
        if i % 17 == 16:
            out.append(f"\nRule {i // 17}:")
        i += 1
    return " ".join(out)


def _cpu_seconds(pid: int) -> float:
    """user+system CPU seconds of a process (Linux /proc), 0.0 elsewhere."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return 0.0


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except (OSError, ValueError):
        pass
    return None


def _loadavg() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return -1.0


def count_tokens(srv: LlamaServer, text: str) -> int:
    return len(srv.post_json("/tokenize", {"content": text})["tokens"])


def _chat(srv: LlamaServer, system: str, user: str, max_tokens: int, cache_prompt: bool) -> tuple[float, dict[str, Any]]:
    body = {
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "cache_prompt": cache_prompt,
    }
    t0 = time.perf_counter()
    res = srv.post_json("/v1/chat/completions", body)
    return time.perf_counter() - t0, res


def measure_generation(srv: LlamaServer, n_predict: int = 128) -> dict[str, Any]:
    body = {
        "prompt": "Write a long Python module that implements a linked list with many methods.\n",
        "n_predict": n_predict,
        "temperature": 0,
        "ignore_eos": True,
        "cache_prompt": False,
    }
    t0 = time.perf_counter()
    res = srv.post_json("/completion", body)
    wall = time.perf_counter() - t0
    t = res["timings"]
    return {
        "what": "generation",
        "predicted_n": t["predicted_n"],
        "gen_tok_s": round(t["predicted_per_second"], 1),
        "wall_s": round(wall, 2),
    }


def measure_prompt(srv: LlamaServer, approx_tokens: int = 1000) -> dict[str, Any]:
    text = filler_text(approx_tokens)
    res = srv.post_json("/completion", {"prompt": text, "n_predict": 1, "cache_prompt": False})
    t = res["timings"]
    return {
        "what": "prompt_processing",
        "prompt_n": t["prompt_n"],
        "prompt_tok_s": round(t["prompt_per_second"], 1),
        "prompt_ms": round(t["prompt_ms"], 1),
    }


def measure_concurrent(srv: LlamaServer, n: int = 4, n_predict: int = 64) -> dict[str, Any]:
    results: list[dict[str, Any]] = [{} for _ in range(n)]

    def worker(i: int) -> None:
        body = {
            "prompt": f"Request {i}: write a Python function number {i} that sorts a list.\n",
            "n_predict": n_predict,
            "temperature": 0,
            "ignore_eos": True,
            "cache_prompt": False,
        }
        results[i] = srv.post_json("/completion", body)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    total = sum(r["timings"]["predicted_n"] for r in results)
    per = [round(r["timings"]["predicted_per_second"], 1) for r in results]
    return {
        "what": f"{n}_concurrent",
        "total_tokens": total,
        "wall_s": round(wall, 2),
        "aggregate_tok_s": round(total / wall, 1),
        "per_request_tok_s": per,
    }


def measure_prompt_cache(srv: LlamaServer, approx_tokens: int = 2500) -> dict[str, Any]:
    """Time to first token for a chat request with a long system prompt.

    * ``no_cache``: ``cache_prompt: false`` -> the whole prompt is evaluated;
    * ``cold``: ``cache_prompt: true`` with a system prompt no slot has seen;
    * ``hit``: same system prompt again with a different user turn -> only the suffix is
      evaluated;
    * ``hit_after_other``: another long prompt was processed in between (tests that the slot /
      host-memory prompt cache keeps the first one).
    """
    sys_a = "You are a coding agent. Follow these rules.\n" + filler_text(approx_tokens, salt=11)
    sys_b = "You are a reviewing agent. Follow these rules.\n" + filler_text(approx_tokens, salt=29)
    out: dict[str, Any] = {"what": "prompt_cache", "system_prompt_tokens": count_tokens(srv, sys_a)}

    def rec(key: str, system: str, user: str, cache: bool) -> None:
        wall, res = _chat(srv, system, user, 1, cache_prompt=cache)
        out[key] = {
            "ttft_s": round(wall, 3),
            "cache_n": res["timings"]["cache_n"],
            "prompt_n": res["timings"]["prompt_n"],
            "prompt_tok_s": round(res["timings"]["prompt_per_second"], 1),
            "usage_cached_tokens": (res.get("usage") or {}).get("prompt_tokens_details", {}).get("cached_tokens"),
        }
        print(json.dumps({key: out[key]}), flush=True)

    rec("no_cache", sys_a, "Question A: what is 2+2?", False)
    rec("cold", sys_b, "Question B: what is 3+3?", True)
    rec("hit", sys_b, "Question C: what is 4+4?", True)
    rec("hit_after_other", sys_a, "Question D: what is 5+5?", True)
    return out


def run(
    model: str, threads: int, parallel: int, ctx_size: int, sections: list[str], threads_batch: int | None = None
) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with LlamaServer(model, threads=threads, threads_batch=threads_batch, parallel=parallel, ctx_size=ctx_size) as srv:
        rows.append(
            {
                "what": "load",
                "load_s": round(srv.load_seconds or 0.0, 2),
                "rss_mb": _rss_mb(srv.pid or 0),
                "threads": threads,
                "threads_batch": srv.threads_batch,
                "parallel": parallel,
                "ctx_size": ctx_size,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        # warm-up (first decode allocates buffers)
        srv.post_json("/completion", {"prompt": "hi", "n_predict": 4, "cache_prompt": False})
        for name in sections:
            fn = {
                "generation": measure_generation,
                "prompt": measure_prompt,
                "concurrent": measure_concurrent,
                "cache": measure_prompt_cache,
            }[name]
            pid = srv.pid or 0
            cpu0, t0, load0 = _cpu_seconds(pid), time.perf_counter(), _loadavg()
            row = fn(srv)
            wall = time.perf_counter() - t0
            row["threads"] = threads
            # CPU cores the server actually got during the section, and the 1-min load average
            # (includes the server itself) before/after: context for contended machines.
            row["server_cpu_cores_used"] = round((_cpu_seconds(pid) - cpu0) / wall, 2) if wall else None
            row["loadavg_1m"] = [round(load0, 2), round(_loadavg(), 2)]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--model", default=DEFAULT_MODEL, help="registry name or GGUF path")
    ap.add_argument("--threads", type=int, nargs="+", default=[1])
    ap.add_argument("--threads-batch", type=int, default=None, help="prompt threads (default: = threads)")
    ap.add_argument("--parallel", type=int, default=4)
    ap.add_argument("--ctx-size", type=int, default=8192)
    ap.add_argument("--sections", nargs="+", default=["generation", "prompt", "concurrent", "cache"])
    args = ap.parse_args(argv)
    print(json.dumps({"machine": machine_summary(), "model": args.model}), flush=True)
    for t in args.threads:
        run(args.model, t, args.parallel, args.ctx_size, args.sections, args.threads_batch)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
