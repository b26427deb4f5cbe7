"""What a valid data row is: the one check that ``ng_prepare_data``, the collector and the
training API (:func:`ngym.training.check_rows`) share.

A row is a JSON object with

* ``responses_create_params``: the model request that starts the task, a valid
  :class:`~ngym.wire.responses.ResponseCreateParams` (a dict with ``input``);
* ``agent_ref``: ``{"name": "<agent>"}`` (``type`` optional), where a caller routes rows to agents:
  the name must be one of the agents running, when the caller knows them;
* any other keys: task fields for the environment's verifier.

:func:`check_row` returns the problem as a message that names the key and the fix; each caller
adds where the row is (``file:line``, ``row N``).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ngym.wire.responses import ResponseCreateParams
from ngym.wire.rows import AgentRef

#: how to add an agent_ref, the end of the message for a row without one
ADD_AGENT_REF = 'Add {"agent_ref": {"name": "<agent>"}} to the row'


@dataclass(frozen=True, slots=True)
class ValidRow:
    """A row that passed :func:`check_row`: its parsed model request and its agent (``""`` where
    the agent was not asked for)."""

    row: Mapping[str, Any]
    params: ResponseCreateParams
    agent: str = ""


def check_row(
    row: object,
    *,
    need_agent: bool = False,
    agents: Collection[str] | None = None,
    add_agent: str = ADD_AGENT_REF,
) -> ValidRow | str:
    """The valid row, or what is wrong with it (a message without its place).

    ``need_agent``: the row must name its agent (``agent_ref.name``); ``agents``: the agents running
    (a row naming another is wrong); ``add_agent``: the fix a row without an agent_ref is told.
    """
    if not isinstance(row, Mapping):
        return f"a row must be a JSON object, not {type(row).__name__}."
    if "responses_create_params" not in row:
        return "no 'responses_create_params' (the model request that starts the task)."
    try:
        params = ResponseCreateParams.model_validate(row["responses_create_params"])
    except ValidationError as e:
        first = e.errors()[0]
        loc = ".".join(str(p) for p in first["loc"])
        return f"responses_create_params{'.' + loc if loc else ''}: {first['msg']} ({e.error_count()} error(s))."
    if not need_agent and agents is None:
        return ValidRow(row, params)
    if "agent_ref" not in row:
        return f"no agent_ref.name. {add_agent}."
    try:
        ref = AgentRef.model_validate(row["agent_ref"])
    except ValidationError as e:
        return f"bad agent_ref {row['agent_ref']!r}: {e.errors()[0]['msg']}. {add_agent}."
    if agents is not None and ref.name not in agents:
        return f"agent_ref names {ref.name!r}, which is not in this deployment (not running). Agents: {sorted(agents)}."
    return ValidRow(row, params, ref.name)
