"""The OpenAI wire format, shared by every OpenAI-shaped backend (direct and Batch API).

One request body, one completion parser, one error description and one transient-fault
rule: the direct backend (openai_compat) and the Batch API backend (batch_api) send the
same bodies and read answers the same way, so a run may switch between them on resume.
"""

from __future__ import annotations

import logging
import math
import re
from typing import Any
from urllib.parse import urlsplit

import openai

from selfinstruct.config import TeacherConfig
from selfinstruct.errors import AuthError
from selfinstruct.parse import reasoning_only, without_reasoning
from selfinstruct.records import CHARS_PER_TOKEN, Completion, Request, Usage
from selfinstruct.secrets import redact, redact_values

# The OpenAI SDK's own default endpoint (openai._client.OpenAI base_url).
DEFAULT_BASE_URL = "https://api.openai.com/v1"

MAX_MESSAGE = 300  # characters of a server's error message worth a terminal line
# Completion tokens a server may count beyond the request's max_tokens before its usage is
# called absurd (some count the stop sequence or a special token; none counts hundreds).
USAGE_MARGIN = 64
# Statuses that say the endpoint, key or model is wrong, not this one request: they stop
# the run at once. Other 4xx (400 from a content filter, 413, 422) refuse one request.
STOP_STATUSES = (401, 403, 404)

log = logging.getLogger(__name__)
_estimated_once = False
_reasoning_estimated_once = False


class BadResponse(Exception):
    """A 200 answer without a usable choice: worth retrying like a 5xx."""


class TransportFault(Exception):
    """A malformed HTTP answer (bad status line, chunk size, header): retried like a drop."""


class AttemptTimeout(Exception):
    """An answer that did not arrive whole within --timeout (a trickling server)."""


def api_path(api: str) -> str:
    """Return the path, under the base URL, of the teacher API ("completions" or "chat")."""
    return "/chat/completions" if api == "chat" else "/completions"


# The sampling fields a server may refuse, by their body key, that a request can do
# without (the server then uses its default). max_tokens is never dropped: it becomes
# max_completion_tokens, the one limit OpenAI's reasoning models take.
DROPPABLE = ("temperature", "top_p", "presence_penalty", "frequency_penalty", "stop", "seed")
# The error codes of OpenAI's HTTP 400 for a field a model does not take at all
# (unsupported_parameter: max_tokens, which it says to replace with max_completion_tokens,
# the penalties, stop) or takes only at its default (unsupported_value: temperature, top_p);
# the error's `param` names the field.
UNSUPPORTED_CODES = ("unsupported_parameter", "unsupported_value")
# OpenAI's reasoning models, which answer max_tokens and the fields in DROPPABLE with such a
# 400: o1, o3 and o4-mini with their dated and sized variants, and the gpt-5 family but its
# chat variants (gpt-5-chat-latest), which do not reason. A provider prefix ("openai/o3")
# is ignored. Other models' refusals are learned from their 400s.
_REASONING_MODEL = re.compile(r"^(?:o1|o3|o4-mini|gpt-5(?!.*-chat))(?:$|[-.])", re.I)


def is_reasoning_model(model: str) -> bool:
    """Say whether a model is one of OpenAI's reasoning families (see _REASONING_MODEL)."""
    return _REASONING_MODEL.match(model.rsplit("/", 1)[-1]) is not None


class RefusedFields:
    """The request fields this run's model refuses, known or learned, for the rest of the run.

    OpenAI's reasoning families start with theirs (is_reasoning_model); any other model's
    are learned from the server's HTTP 400s (learn). Only the body changes: request keys
    (engine.request_digest) hash the sampling settings, never the body, so a run whose
    model refuses nothing sends what it always sent, and a resumed run finds every logged
    answer whatever was learned.
    """

    def __init__(self, config: TeacherConfig) -> None:
        self.model = config.model
        self.fields: set[str] = set()
        if config.api == "chat" and is_reasoning_model(config.model):
            self.fields = {"max_tokens", *DROPPABLE}
            log.warning(
                "%s is a reasoning model: sending max_completion_tokens, and no temperature, "
                "top_p, penalties, stop or seed (it refuses them; stop sequences are applied "
                "to its answers here instead)",
                config.model,
            )

    def learn(self, error: object, sent: dict[str, Any]) -> bool:
        """Take in an HTTP 400's error object; say whether resending without a field may help.

        True when the error names, with an unsupported code, a field that `sent` held and
        that can go (DROPPABLE, or max_tokens, which becomes max_completion_tokens). The
        first time a field is learned it is said once on stderr.
        """
        param = refused_field(error)
        if param is None or param not in sent:
            return False
        if param not in self.fields:
            self.fields.add(param)
            instead = (
                "sending max_completion_tokens instead"
                if param == "max_tokens"
                else "leaving it out (the server's default applies)"
            )
            if param == "stop":
                instead += "; stop sequences are applied to its answers here instead"
            log.warning(
                "the teacher (%s) refuses '%s' (HTTP 400); %s for the rest of the run",
                self.model,
                param,
                instead,
            )
        return True

    def stopped_in_reasoning(self, completion: Completion, sent: dict[str, Any]) -> bool:
        """Say whether a stop sequence ended the answer inside its reasoning; if so, learn it.

        Servers match stop sequences against the thinking too (the classify stage stops at
        a newline, and thinking has many), so such an answer is only reasoning although
        its limit was not spent. From then on stop sequences are not sent but applied here,
        after the reasoning; the caller sends the request again.
        """
        if "stop" not in sent or completion.finish_reason != "stop":
            return False
        if not reasoning_only(completion):
            return False
        if "stop" not in self.fields:
            self.fields.add("stop")
            log.warning(
                "the teacher (%s) reasons before answering, and a stop sequence ended its "
                "reasoning; stop sequences are applied here, after the reasoning, for the "
                "rest of the run",
                self.model,
            )
        return True

    def finish(self, completion: Completion, request: Request) -> Completion:
        """Apply the request's stop sequences to an answer when the server was not sent them."""
        if "stop" not in self.fields or not request.params.stop:
            return completion
        return apply_stop(completion, request.params.stop)


def refused_field(error: object) -> str | None:
    """Return the field an OpenAI error object says the model does not take, if droppable.

    `error` is the ``error`` object of a 400 body (``{"code": "unsupported_parameter",
    "param": "max_tokens", ...}``), or an openai.APIStatusError carrying one.
    """
    if isinstance(error, openai.APIStatusError):
        if error.status_code != 400:
            return None
        error = error.body
    if isinstance(error, dict) and isinstance(error.get("error"), dict):
        error = error["error"]  # a whole body rather than its error object
    if not isinstance(error, dict) or error.get("code") not in UNSUPPORTED_CODES:
        return None
    param = error.get("param")
    return param if param in DROPPABLE or param == "max_tokens" else None


def apply_stop(completion: Completion, stops: tuple[str, ...]) -> Completion:
    """Cut an answer at its first stop sequence, as the server would have (finish "stop")."""
    cuts = [i for s in stops if s and (i := completion.text.find(s)) >= 0]
    if not cuts:
        return completion
    return Completion(completion.text[: min(cuts)], "stop", completion.usage, completion.refusal)


def request_body(
    config: TeacherConfig, request: Request, refused: set[str] | frozenset[str] = frozenset()
) -> dict[str, Any]:
    """Return the JSON body of one (chat) completion request, without the `refused` fields.

    A refused max_tokens is sent as max_completion_tokens (see RefusedFields).
    """
    p = request.params
    body: dict[str, Any] = {
        "model": config.model,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "max_tokens": p.max_tokens,
        "presence_penalty": p.presence_penalty,
        "frequency_penalty": p.frequency_penalty,
    }
    if config.api == "chat":
        body["messages"] = [{"role": "user", "content": request.prompt}]
    else:
        body["prompt"] = request.prompt
    if p.stop:
        body["stop"] = list(p.stop)
    if p.seed is not None:
        body["seed"] = p.seed
    for name in refused:
        if name in body:
            value = body.pop(name)
            if name == "max_tokens":
                body["max_completion_tokens"] = value
    return body


def estimate_tokens(text: str) -> int:
    """Return a token count estimated from text, at CHARS_PER_TOKEN characters per token."""
    return math.ceil(len(text) / CHARS_PER_TOKEN)


def _utf8_len(text: str) -> int:
    """Return the UTF-8 length of text, counting a lone surrogate (teacher text may hold one)."""
    return len(text.encode("utf-8", "surrogatepass"))


def _count(value: object, most: int | None) -> int | None:
    """Return a token count as the server gave it; None when it is not a plausible count."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        if most is None or value <= most:
            return value
    return None


def checked_usage(usage: object, request: Request | None, text: str) -> Usage:
    """Return the usage a server reported, estimating each count missing or implausible.

    A missing, negative, non-integer or absurd count (more completion tokens than the
    request allowed, more prompt tokens than the prompt has bytes) would let --max-tokens
    and --max-cost spend without limit; it is replaced by an estimate from the text (said
    once on stderr). Without the request only the shape is checked, and gaps read as 0.
    """
    global _estimated_once
    fields = usage if isinstance(usage, dict) else {}
    if request is None:
        return Usage(
            _count(fields.get("prompt_tokens"), None) or 0,
            _count(fields.get("completion_tokens"), None) or 0,
        )
    prompt = _count(fields.get("prompt_tokens"), _utf8_len(request.prompt) + USAGE_MARGIN)
    completion = _count(
        fields.get("completion_tokens"),
        max(request.params.max_tokens, _utf8_len(text)) + USAGE_MARGIN,
    )
    if prompt is not None and completion is not None:
        return Usage(prompt, completion)
    if not _estimated_once:
        _estimated_once = True
        log.warning(
            "the teacher's answer has a missing or implausible token count (usage: %s); "
            "counting %d characters per token instead, for --max-tokens and --max-cost",
            redact(str(usage))[:200],
            CHARS_PER_TOKEN,
        )
    return Usage(
        prompt if prompt is not None else estimate_tokens(request.prompt),
        completion if completion is not None else estimate_tokens(text),
    )


def _reasoning_field(holder: object) -> str:
    """Return the reasoning a server sent beside the answer: reasoning_content or reasoning."""
    if not isinstance(holder, dict):
        return ""
    for name in ("reasoning_content", "reasoning"):
        value = holder.get(name)
        if isinstance(value, str) and value:
            return value
    return ""


def _reasoning_count(usage: object) -> int | None:
    """Return usage.completion_tokens_details.reasoning_tokens, when the server sent it."""
    details = usage.get("completion_tokens_details") if isinstance(usage, dict) else None
    return _count(details.get("reasoning_tokens"), None) if isinstance(details, dict) else None


def completion_from_json(data: object, *, chat: bool, request: Request | None = None) -> Completion:
    """Read text, finish reason and usage from a (chat) completion's JSON answer.

    Raise BadResponse when there is no choice or its text is not a string. The exact
    secret values this process holds are taken out of the text: a server that echoes the
    request's headers must not put the key into the logs. Reasoning is removed, whether in
    a field beside the text or in ``<think>`` tags, and its tokens counted
    (parse.without_reasoning). With `request`, usage that cannot be right is estimated
    (see checked_usage).
    """
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadResponse("the answer had no choices")
    choice = choices[0]
    holder = choice.get("message") if chat else choice
    text = holder.get("content" if chat else "text") if isinstance(holder, dict) else None
    if text is not None and not isinstance(text, str):
        raise BadResponse("the answer's text was not a string")
    usage = data.get("usage") if isinstance(data, dict) else None
    text = redact_values(text or "")
    reasoning = redact_values(_reasoning_field(holder))
    whole = f"{reasoning}{text}"  # what the model generated: the bound and estimate of usage
    completion = without_reasoning(
        text,
        str(choice.get("finish_reason") or ""),  # missing: not "stop"
        checked_usage(usage, request, whole),
        reasoning=reasoning,
        reasoning_tokens=_reasoning_count(usage),
    )
    global _reasoning_estimated_once
    if completion.usage.reasoning_estimated and not _reasoning_estimated_once:
        _reasoning_estimated_once = True
        log.warning(
            "the teacher sends reasoning but no count of its tokens "
            "(usage.completion_tokens_details.reasoning_tokens); reasoning tokens are "
            "estimated from the removed text, at %d characters per token",
            CHARS_PER_TOKEN,
        )
    return completion


def describe_status(status: int, message: str) -> str:
    """Summarise an HTTP error status and its message in one redacted, bounded line."""
    first = message.splitlines()[0] if message else ""
    first = re.sub(r"^Error code: \d+ - ", "", first)  # the SDK's prefix repeats the code
    if len(first) > MAX_MESSAGE:
        first = first[:MAX_MESSAGE] + "..."
    return redact(f"HTTP {status}: {first}".strip())


def describe_error(exc: BaseException) -> str:
    """Summarise an API error in one line without echoing request headers or keys."""
    if isinstance(exc, openai.APIStatusError):
        return describe_status(exc.status_code, exc.message if isinstance(exc.message, str) else "")
    if isinstance(exc, openai.APIConnectionError):
        # The SDK's aiohttp transport reports every connection error as a timeout; the
        # first cause that is not the SDK's own says what really happened.
        cause = exc.__cause__
        while cause is not None and cause.__cause__ is not None:
            cause = cause.__cause__
        name = type(cause).__name__ if cause is not None else ""
        if isinstance(exc, openai.APITimeoutError) and (not name or "Timeout" in name):
            return "request timed out"
        return f"connection failed ({name or 'no answer'})"
    if isinstance(exc, (BadResponse, TransportFault, AttemptTimeout)):
        return redact(str(exc))
    text = f"{type(exc).__name__}: {exc}"
    return redact(text[:MAX_MESSAGE] + "..." if len(text) > MAX_MESSAGE else text)


def is_transient_status(status: int) -> bool:
    """Say whether an HTTP status is worth retrying: timeouts, conflicts, 429 and 5xx."""
    return status in (408, 409, 429) or status >= 500


def is_transient(exc: BaseException) -> bool:
    """Say whether an error is worth retrying: a transient status, a lost or garbled answer."""
    if isinstance(exc, openai.APIStatusError):
        return is_transient_status(exc.status_code)
    # Connection errors include timeouts; a garbled 200 is usually a proxy hiccup.
    return isinstance(
        exc,
        (
            openai.APIConnectionError,
            openai.APIResponseValidationError,
            BadResponse,
            TransportFault,
            AttemptTimeout,
        ),
    )


def is_refusal(exc: BaseException) -> bool:
    """Say whether an error refuses this one request rather than every request.

    A 4xx other than the auth, not-found, timeout, conflict and rate statuses (a content
    filter's 400, 413, 422), or a 200 without a usable answer after the retries: sending
    it again gets the same answer, so the run records it and goes on.
    """
    if isinstance(exc, openai.APIStatusError):
        status = exc.status_code
        return 400 <= status < 500 and status not in STOP_STATUSES and not is_transient(exc)
    return isinstance(exc, (BadResponse, openai.APIResponseValidationError))


def redirect_error(exc: BaseException, endpoint: str) -> str | None:
    """Describe a redirect answer, which is never followed: the prompts stay with `endpoint`.

    Return None when `exc` is not a redirect.
    """
    if not isinstance(exc, openai.APIStatusError) or not 300 <= exc.status_code < 400:
        return None
    location = exc.response.headers.get("location", "")
    parts = urlsplit(location)
    target = f"{parts.scheme}://{parts.netloc}" if parts.netloc else (location or "nowhere")
    return (
        f"{endpoint} answered HTTP {exc.status_code}, a redirect to {redact(target)[:200]}; "
        "redirects are not followed (the prompts would go to another server): pass the "
        "final URL as --base-url"
    )


def require_key(config: TeacherConfig, api_key: str | None) -> None:
    """Refuse to send to api.openai.com without a key (other servers may need none)."""
    if api_key is None and not config.base_urls:
        raise AuthError(
            "OPENAI_API_KEY is not set: export it to use api.openai.com, or pass "
            "--base-url URL for an OpenAI-compatible server (vllm serve, llama.cpp)"
        )


def served_model(models: list[Any], wanted: str) -> str | None:
    """Name the model a /v1/models listing serves for `wanted`, with its checkpoint if told.

    vLLM lists a served name with the checkpoint behind it as `root`; a server serving a
    single model (llama.cpp, vLLM) answers with it whatever name a request gives.
    """
    match = next((m for m in models if getattr(m, "id", None) == wanted), None)
    if match is None and len(models) == 1:
        match = models[0]
    name = getattr(match, "id", None)
    if not isinstance(name, str):
        return None
    extra = getattr(match, "model_extra", None) or {}  # fields the SDK's Model does not name
    root = getattr(match, "root", None) or extra.get("root")
    return f"{name} ({root})" if isinstance(root, str) and root and root != name else name
