"""The OpenAI wire format, shared by every OpenAI-shaped backend (direct and Batch API).

One request body, one completion parser, one error description and one transient-fault
rule: the direct backend (openai_compat) and the Batch API backend (batch_api) send the
same bodies and read answers the same way, so a run may switch between them on resume.
"""

from __future__ import annotations

import re
from typing import Any

import openai

from selfinstruct.config import TeacherConfig
from selfinstruct.errors import AuthError
from selfinstruct.records import Completion, Request, Usage

# The OpenAI SDK's own default endpoint (openai._client.OpenAI base_url).
DEFAULT_BASE_URL = "https://api.openai.com/v1"

# A server or proxy may echo the request's headers in an error body; keys never get printed.
_SECRET = re.compile(r"(?i)(bearer\s+|api[-_ ]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+|sk-[\w-]{8,}")
MAX_MESSAGE = 300  # characters of a server's error message worth a terminal line


class BadResponse(Exception):
    """A 200 answer without a usable choice: worth retrying like a 5xx."""


def api_path(api: str) -> str:
    """Return the path, under the base URL, of the teacher API ("completions" or "chat")."""
    return "/chat/completions" if api == "chat" else "/completions"


def request_body(config: TeacherConfig, request: Request) -> dict[str, Any]:
    """Return the JSON body of one (chat) completion request."""
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
    return body


def _count(value: object) -> int:
    """Return a token count as the server gave it; anything but a count reads as 0."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    return 0


def completion_from_json(data: object, *, chat: bool) -> Completion:
    """Read text, finish reason and usage from a (chat) completion's JSON answer.

    Raise BadResponse when there is no choice or its text is not a string.
    """
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise BadResponse("the answer had no choices")
    choice = choices[0]
    if chat:
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
    else:
        text = choice.get("text")
    if text is not None and not isinstance(text, str):
        raise BadResponse("the answer's text was not a string")
    usage = data.get("usage") if isinstance(data, dict) else None
    tokens = Usage()
    if isinstance(usage, dict):
        tokens = Usage(_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))
    return Completion(
        text=text or "",
        finish_reason=str(choice.get("finish_reason") or ""),  # missing: not "stop"
        usage=tokens,
    )


def redact(text: str) -> str:
    """Replace anything that looks like a credential with [redacted]."""
    return _SECRET.sub(lambda m: (m.group(1) or "") + "[redacted]", text)


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
    if isinstance(exc, BadResponse):
        return str(exc)
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
        exc, (openai.APIConnectionError, openai.APIResponseValidationError, BadResponse)
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
