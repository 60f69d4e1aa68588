"""Define the records that flow through the pipeline and into the run directory."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

Stage = Literal["instructions", "classify", "instances", "judge"]
FinishReason = str  # "stop", "length", or whatever the server sends; kept verbatim
# OpenAI's rule of thumb for English text: one token is about four characters ("What are
# tokens and how to count them?", OpenAI Help Center). Used only where nothing was counted:
# dry-run estimates, and usage a teacher did not report (or reported impossibly).
CHARS_PER_TOKEN = 4


class Instance(BaseModel):
    """One input/output example of a task; an empty input means the task needs none."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input: str = Field(description="Material the instruction works on; empty when none.")
    output: str = Field(description="The expected response.")


class Judgement(BaseModel):
    """A judge's rating of one complete task (the optional judge stage)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    score: int | None = Field(
        ge=1, le=5, description="1 (unusable) to 5 (excellent); None when no verdict parsed."
    )
    reason: str = Field(description="The judge's one-sentence reason, or why none parsed.")
    model: str = Field(description="The model that judged.")


class Task(BaseModel):
    """A task in the Self-Instruct seed schema, plus provenance for machine tasks."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Unique id within the pool.")
    name: str = Field(default="", description="Short snake_case name; may be empty.")
    instruction: str = Field(description="What the model is asked to do.")
    instances: list[Instance] = Field(description="Input/output examples, at least one.")
    is_classification: bool | None = Field(
        description="Whether outputs come from a small label set; None when not asked."
    )
    round: int | None = Field(default=None, description="Round that produced it; None for seeds.")
    seq: int | None = Field(
        default=None, description="Order in which its instruction joined the novelty index."
    )
    judge: Judgement | None = Field(
        default=None, description="The judge's rating; None (and not written) when not judged."
    )

    @model_serializer(mode="wrap")
    def _omit_unjudged(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        # A run without the judge writes the same pool lines as before the field existed.
        data: dict[str, Any] = handler(self)
        if data.get("judge") is None:
            data.pop("judge", None)
        return data


@dataclass(frozen=True)
class SamplingParams:
    """Sampling settings of one teacher request."""

    temperature: float
    top_p: float
    max_tokens: int
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stop: tuple[str, ...] = ()
    seed: int | None = None


@dataclass(frozen=True)
class Request:
    """One prompt for the teacher; `key` identifies it in the response log."""

    key: str
    stage: Stage
    prompt: str
    params: SamplingParams


@dataclass(frozen=True)
class Usage:
    """Token counts reported by the teacher for one or more requests."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    # Of the completion tokens, those a reasoning model spent thinking (its answer's text
    # holds none of them: backends remove the reasoning). Servers count them inside
    # completion_tokens, as OpenAI does, so prices need nothing more.
    reasoning_tokens: int = 0
    # Whether reasoning_tokens was estimated from the removed text (the server gave no count).
    reasoning_estimated: bool = False

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.reasoning_tokens + other.reasoning_tokens,
            self.reasoning_estimated or other.reasoning_estimated,
        )


@dataclass(frozen=True)
class Completion:
    """The teacher's answer to one request."""

    text: str
    finish_reason: FinishReason
    usage: Usage = field(default_factory=Usage)
    # Set when the teacher refused the request persistently (RequestRefused): its reason.
    # The text is then empty; the engine records a `teacher_refused` rejection.
    refusal: str | None = None


@dataclass(frozen=True)
class Candidate:
    """A task proposed by the teacher, before filtering."""

    instruction: str
    input: str = ""
    output: str | None = None
