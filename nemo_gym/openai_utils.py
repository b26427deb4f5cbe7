"""``from nemo_gym.openai_utils import NeMoGymResponse, ...`` — the reference's names for the
OpenAI Responses shapes, mapped onto :mod:`ngym.wire.responses` (one set of types underneath, so
``isinstance`` checks hold on what ngym parses). ``NeMoGymResponse.output_text`` reads as the
openai SDK's property and as ngym's method."""

from __future__ import annotations

from ngym.interop.nemo import NeMoGymResponse, NeMoGymResponseOutputMessage
from ngym.wire.responses import (
    FunctionCall,
    FunctionCallOutput,
    FunctionTool,
    InputText,
    Item,
    Message,
    OutputText,
    Reasoning,
    Refusal,
    ResponseCreateParams,
    SummaryText,
    Usage,
)

NeMoGymResponseCreateParamsNonStreaming = ResponseCreateParams
NeMoGymEasyInputMessage = Message
NeMoGymMessage = Message
NeMoGymResponseInputText = InputText
NeMoGymResponseOutputText = OutputText
NeMoGymResponseOutputRefusal = Refusal
NeMoGymResponseFunctionToolCall = FunctionCall
NeMoGymFunctionCallOutput = FunctionCallOutput
NeMoGymResponseReasoningItem = Reasoning
NeMoGymSummary = SummaryText
NeMoGymResponseUsage = Usage
NeMoGymFunctionToolParam = FunctionTool
NeMoGymResponseOutputItem = Item
NeMoGymResponseInputItem = Item

__all__ = [
    "NeMoGymEasyInputMessage",
    "NeMoGymFunctionCallOutput",
    "NeMoGymFunctionToolParam",
    "NeMoGymMessage",
    "NeMoGymResponse",
    "NeMoGymResponseCreateParamsNonStreaming",
    "NeMoGymResponseFunctionToolCall",
    "NeMoGymResponseInputItem",
    "NeMoGymResponseInputText",
    "NeMoGymResponseOutputItem",
    "NeMoGymResponseOutputMessage",
    "NeMoGymResponseOutputRefusal",
    "NeMoGymResponseOutputText",
    "NeMoGymResponseReasoningItem",
    "NeMoGymResponseUsage",
    "NeMoGymSummary",
]
