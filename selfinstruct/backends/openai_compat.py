"""Teacher backend for any OpenAI-compatible server: OpenAI itself, `vllm serve`, and others."""

from __future__ import annotations

import asyncio
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import openai
from openai import AsyncOpenAI
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from selfinstruct.backends.base import Backend
from selfinstruct.config import TeacherConfig
from selfinstruct.errors import AuthError, TeacherError
from selfinstruct.records import Completion, Request, Usage

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_BACKOFF = 60.0  # seconds; beyond this a server is down rather than busy
MAX_RETRY_AFTER = 300.0  # honour long Retry-After values, within reason


class _BadResponse(Exception):
    """A 200 answer without a usable choice: worth retrying like a 5xx."""


@dataclass
class _Endpoint:
    url: str
    client: AsyncOpenAI
    outstanding: int = 0


def _is_transient(exc: BaseException) -> bool:
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    # Connection errors include timeouts; a garbled 200 is usually a proxy hiccup.
    return isinstance(
        exc, (openai.APIConnectionError, openai.APIResponseValidationError, _BadResponse)
    )


def _retry_after(exc: BaseException | None) -> float | None:
    if not isinstance(exc, openai.APIStatusError):
        return None
    value = exc.response.headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, min(float(value), MAX_RETRY_AFTER))
    except ValueError:
        return None  # an HTTP date: rare from these servers; fall back to backoff


def _wait(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if (after := _retry_after(exc)) is not None:
        return after
    # Full jitter keeps many clients that failed together from retrying together.
    return random.uniform(0, min(MAX_BACKOFF, 0.5 * 2**state.attempt_number))


# A server or proxy may echo the request's headers in an error body; keys never get printed.
_SECRET = re.compile(r"(?i)(bearer\s+|api[-_ ]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;}]+|sk-[\w-]{8,}")
_MAX_MESSAGE = 300  # characters of a server's error message worth a terminal line


def _redact(text: str) -> str:
    return _SECRET.sub(lambda m: (m.group(1) or "") + "[redacted]", text)


def describe_error(exc: BaseException) -> str:
    """Summarise an API error in one line without echoing request headers or keys."""
    if isinstance(exc, openai.APIStatusError):
        message = exc.message if isinstance(exc.message, str) else ""
        first = message.splitlines()[0] if message else ""
        first = re.sub(r"^Error code: \d+ - ", "", first)  # the SDK's prefix repeats the code
        if len(first) > _MAX_MESSAGE:
            first = first[:_MAX_MESSAGE] + "..."
        return _redact(f"HTTP {exc.status_code}: {first}".strip())
    if isinstance(exc, openai.APITimeoutError):
        return "request timed out"
    if isinstance(exc, openai.APIConnectionError):
        cause = exc.__cause__
        return f"connection failed ({type(cause).__name__ if cause else 'no answer'})"
    if isinstance(exc, _BadResponse):
        return str(exc)
    return _redact(f"{type(exc).__name__}: {exc}")


class OpenAICompatBackend(Backend):
    """Send requests to one or more OpenAI-compatible endpoints with bounded retries."""

    def __init__(self, config: TeacherConfig, api_key: str | None) -> None:
        urls = config.base_urls or [DEFAULT_BASE_URL]
        # Local servers (vLLM, llama.cpp) accept any key; the SDK insists on one.
        key = api_key or "EMPTY"
        self._config = config
        self._endpoints = [
            _Endpoint(
                url,
                AsyncOpenAI(api_key=key, base_url=url, max_retries=0, timeout=config.timeout),
            )
            for url in urls
        ]
        self._slots = asyncio.Semaphore(config.concurrency)

    def describe(self) -> str:
        """Say which model and endpoints answer."""
        urls = ", ".join(e.url for e in self._endpoints)
        return f"{self._config.model} ({self._config.api} API) at {urls}"

    async def preflight(self) -> None:
        """List models once so a wrong URL or key fails in seconds, not after retries."""
        for endpoint in self._endpoints:
            try:
                await endpoint.client.models.list(timeout=min(self._config.timeout, 15.0))
            except openai.AuthenticationError as exc:
                raise AuthError(
                    f"{endpoint.url} rejected the API key ({describe_error(exc)}); "
                    "check OPENAI_API_KEY"
                ) from None
            except openai.APIConnectionError as exc:
                raise TeacherError(
                    f"cannot reach {endpoint.url}: {describe_error(exc)}; "
                    "start the server or pass the right --base-url"
                ) from None
            except openai.APIStatusError:
                pass  # reachable; some compatible servers do not serve /models

    async def aclose(self) -> None:
        """Close every endpoint's connection pool."""
        for endpoint in self._endpoints:
            await endpoint.client.close()

    async def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """Answer the requests concurrently, within the concurrency limit."""
        return list(await asyncio.gather(*(self._complete_one(r) for r in requests)))

    async def _complete_one(self, request: Request) -> Completion:
        async with self._slots:
            last: BaseException | None = None
            endpoint = self._endpoints[0]
            retrying = AsyncRetrying(
                retry=retry_if_exception(_is_transient),
                stop=stop_after_attempt(self._config.max_retries + 1),
                wait=_wait,
                reraise=True,
            )
            try:
                async for attempt in retrying:
                    with attempt:
                        endpoint = min(self._endpoints, key=lambda e: e.outstanding)
                        endpoint.outstanding += 1
                        try:
                            return await self._call(endpoint, request)
                        except BaseException as exc:
                            last = exc
                            raise
                        finally:
                            endpoint.outstanding -= 1
            except openai.AuthenticationError as exc:
                raise AuthError(
                    f"{endpoint.url} rejected the API key: {describe_error(exc)}"
                ) from None
            except (openai.APIError, _BadResponse) as exc:
                attempts = self._config.max_retries + 1
                tries = f" after {attempts} attempt{'s' * (attempts > 1)}"
                tries = tries if _is_transient(exc) else ""
                raise TeacherError(f"{endpoint.url}: {describe_error(exc)}{tries}") from None
            raise TeacherError(f"{endpoint.url}: no answer ({last!r})")  # pragma: no cover

    async def _call(self, endpoint: _Endpoint, request: Request) -> Completion:
        try:
            return await self._call_unchecked(endpoint, request)
        except ValueError as exc:  # the SDK lets a 200 with a non-JSON body escape as this
            raise _BadResponse(f"the answer was not valid JSON ({exc})") from None

    async def _call_unchecked(self, endpoint: _Endpoint, request: Request) -> Completion:
        p = request.params
        common: dict[str, Any] = {
            "model": self._config.model,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
            "presence_penalty": p.presence_penalty,
            "frequency_penalty": p.frequency_penalty,
        }
        if p.stop:
            common["stop"] = list(p.stop)
        if p.seed is not None:
            common["seed"] = p.seed
        if self._config.api == "chat":
            chat = await endpoint.client.chat.completions.create(
                messages=[{"role": "user", "content": request.prompt}], **common
            )
            if not chat.choices:
                raise _BadResponse("the answer had no choices")
            choice = chat.choices[0]
            text = choice.message.content or ""
            finish = choice.finish_reason
            usage = chat.usage
        else:
            comp = await endpoint.client.completions.create(prompt=request.prompt, **common)
            if not comp.choices:
                raise _BadResponse("the answer had no choices")
            text = comp.choices[0].text or ""
            finish = comp.choices[0].finish_reason
            usage = comp.usage
        return Completion(
            text=text,
            finish_reason=str(finish or "stop"),
            usage=Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage(),
        )
