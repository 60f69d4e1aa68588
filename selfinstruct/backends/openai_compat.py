"""Teacher backend for any OpenAI-compatible server: OpenAI itself, `vllm serve`, and others."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai
from openai import AsyncOpenAI, DefaultAsyncHttpxClient
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from selfinstruct.backends.base import Backend
from selfinstruct.concurrency import AdaptiveLimit, ConcurrencyLimit, PriorityGate, RatePacer
from selfinstruct.config import TeacherConfig
from selfinstruct.errors import AuthError, TeacherError
from selfinstruct.records import Completion, Request, Usage

DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_BACKOFF = 60.0  # seconds; beyond this a server is down rather than busy
MAX_RETRY_AFTER = 300.0  # honour long Retry-After values, within reason
INITIAL_CONCURRENCY = 16  # where the adaptive limit starts probing (the old fixed default)
SET_ASIDE_AFTER = 3  # failures in a row before an endpoint is set aside
SET_ASIDE_FIRST = 5.0  # seconds of the first pause; doubles with each set-aside in a row
MAX_SET_ASIDE = 120.0
SAVE_LIMITS_EVERY = 10.0  # seconds between writes of what the limit learned (limits.json)
# Characters per token for a rate-limit estimate of a prompt: OpenAI's rule of thumb
# ("one token is about 4 characters of English text", help.openai.com, "What are tokens").
CHARS_PER_TOKEN = 4

log = logging.getLogger(__name__)


class _BadResponse(Exception):
    """A 200 answer without a usable choice: worth retrying like a 5xx."""


@dataclass
class _Endpoint:
    url: str
    client: AsyncOpenAI
    outstanding: int = 0
    failures: int = 0  # transient failures in a row, 429s aside (those mean busy, not broken)
    set_asides: int = 0  # times set aside since its last answer; lengthens the next pause
    down_until: float = 0.0  # monotonic time before which no request is sent to it
    last_error: str = ""


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


def _backoff(exc: BaseException | None, attempt: int) -> float:
    """Return the seconds to wait after failed attempt number `attempt` (1 is the first)."""
    if (after := _retry_after(exc)) is not None:
        return after
    # Full jitter keeps many clients that failed together from retrying together.
    return random.uniform(0, min(MAX_BACKOFF, 0.5 * 2**attempt))


def _is_overload(exc: BaseException) -> bool:
    return isinstance(exc, openai.APIStatusError) and exc.status_code == 429


def _is_rate_limit(exc: BaseException) -> bool:
    """Say whether a 429 is a stated rate limit (the pacer's business), not a full server."""
    if not isinstance(exc, openai.APIStatusError):
        return False
    headers = exc.response.headers
    return "x-ratelimit-remaining-requests" in headers or "x-ratelimit-remaining-tokens" in headers


def _tokens(request: Request) -> int:
    """Estimate what a request counts against a tokens-per-minute limit.

    OpenAI counts the prompt's estimated tokens and max_tokens when it admits a request
    (platform.openai.com/docs/guides/rate-limits), so this is what the server will charge.
    """
    return len(request.prompt) // CHARS_PER_TOKEN + request.params.max_tokens


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
    if isinstance(exc, _BadResponse):
        return str(exc)
    return _redact(f"{type(exc).__name__}: {exc}")


def _http_client(limits: Any, hooks: dict[str, list[Any]] | None = None) -> Any:
    """Return the SDK's aiohttp transport when installed, else its default (httpx).

    At hundreds of requests in flight httpx's connection pool costs milliseconds of CPU per
    request (it scans every connection on each request); aiohttp's does not. `hooks` are
    httpx event hooks (every response's headers reach the rate pacer through one).
    """
    aiohttp_client = getattr(openai, "DefaultAioHttpClient", None)
    if aiohttp_client is not None:
        try:
            return aiohttp_client(limits=limits, event_hooks=hooks)
        except RuntimeError:
            pass  # the SDK's aiohttp extra is not installed
    return DefaultAsyncHttpxClient(limits=limits, event_hooks=hooks)


def make_limit(config: TeacherConfig) -> ConcurrencyLimit:
    """Build the concurrency limit the config asks for: fixed, or found by probing."""
    if config.concurrency == "auto":
        return AdaptiveLimit(
            min(INITIAL_CONCURRENCY, config.max_concurrency), config.max_concurrency
        )
    return ConcurrencyLimit(config.concurrency)


class OpenAICompatBackend(Backend):
    """Send requests to one or more OpenAI-compatible endpoints with bounded retries.

    Each request goes to the healthy endpoint with the fewest requests outstanding. An
    endpoint that fails SET_ASIDE_AFTER times in a row is set aside for a pause that
    doubles each time (up to MAX_SET_ASIDE), then tried again; meanwhile the others carry
    the run. Requests in flight follow `limit`, fixed or adaptive.
    """

    def __init__(
        self,
        config: TeacherConfig,
        api_key: str | None,
        *,
        clock: Callable[[], float] = time.monotonic,
        set_aside: float = SET_ASIDE_FIRST,
        limits_path: Path | None = None,
    ) -> None:
        urls = config.base_urls or [DEFAULT_BASE_URL]
        # Local servers (vLLM, llama.cpp) accept any key; the SDK insists on one.
        key = api_key or "EMPTY"
        self._config = config
        self._clock = clock
        self._set_aside = set_aside
        # The SDK keeps 100 idle connections per client; past that, every request would
        # open a new one, so keep as many as may be in flight.
        most = config.concurrency if isinstance(config.concurrency, int) else config.max_concurrency
        # Built from the SDK's own default, as SDK releases differ in their HTTP library.
        limits = type(openai.DEFAULT_CONNECTION_LIMITS)(
            max_connections=most, max_keepalive_connections=most
        )
        self._endpoints = [
            _Endpoint(
                url,
                AsyncOpenAI(
                    api_key=key,
                    base_url=url,
                    max_retries=0,
                    timeout=config.timeout,
                    http_client=_http_client(limits, {"response": [self._on_response]}),
                ),
            )
            for url in urls
        ]
        self.limit = make_limit(config)
        self._gate = PriorityGate(lambda: self.limit.limit)
        self.pacer = RatePacer(clock)
        self._out_tokens = 0  # rate-limit tokens of the requests on the wire
        self._watchers: list[Callable[[], None]] = []
        # What the limit learned is kept beside the run (operational, not identity), for the
        # same endpoints only: another server's capacity says nothing about these.
        self._limits_path = limits_path
        self._saved: dict[str, Any] = {}
        self._saved_at = clock()
        if limits_path is not None:
            self._load_limits(limits_path)

    def describe(self) -> str:
        """Say which model and endpoints answer."""
        urls = ", ".join(e.url for e in self._endpoints)
        return f"{self._config.model} ({self._config.api} API) at {urls}"

    def concurrency(self) -> int:
        """Return the current limit of requests in flight."""
        return self.limit.limit

    def watch_capacity(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the limit grows between answers (the acceptance clock)."""
        self._watchers.append(callback)

    # -- what the server says: rate-limit headers, acceptance, the learned limit -----------

    async def _on_response(self, response: Any) -> None:
        """Read an answer's rate-limit headers (httpx event hook: every response passes)."""
        if "x-ratelimit-limit-requests" in response.headers or (
            "x-ratelimit-limit-tokens" in response.headers
        ):
            out = sum(e.outstanding for e in self._endpoints)
            self.pacer.observe(
                response.headers, out_requests=max(0, out - 1), out_tokens=self._out_tokens
            )

    def _taken(self) -> None:
        """Grow the limit for a request the server took (unrefused after accept_after)."""
        before = self.limit.limit
        self.limit.on_accepted(sum(e.outstanding for e in self._endpoints))
        if self.limit.limit > before:
            self._gate.poke()
            for callback in self._watchers:
                callback()

    def _load_limits(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return  # none yet, or unreadable: start-up finds the capacity again
        if isinstance(data, dict) and data.get("base_urls") == [e.url for e in self._endpoints]:
            self.limit.restore(data)
            self._saved = data

    def _save_limits(self, *, force: bool = False) -> None:
        """Write the learned limit to limits.json when it changed, at most every 10 s."""
        if self._limits_path is None or not self.limit.adaptive:
            return
        if not force and self._clock() - self._saved_at < SAVE_LIMITS_EVERY:
            return
        data = {"base_urls": [e.url for e in self._endpoints], **self.limit.snapshot()}
        if data == self._saved or not self._limits_path.parent.is_dir():
            return
        from selfinstruct.store import atomic_write

        self._saved, self._saved_at = data, self._clock()
        try:
            atomic_write(self._limits_path, json.dumps(data).encode() + b"\n")
        except OSError as exc:
            # Operational state only: without it a resumed run probes again. The run's own
            # writes meet the same full disk and stop it with the one message that matters.
            log.debug("could not keep the learned limit in %s: %s", self._limits_path, exc)

    async def preflight(self) -> None:
        """List models once so a wrong URL or key fails in seconds, not after retries.

        With several endpoints an unreachable one is only set aside (the run goes on with
        the others); the run fails fast only when none can be reached.
        """
        unreachable: list[str] = []
        for endpoint in self._endpoints:
            try:
                await endpoint.client.models.list(timeout=min(self._config.timeout, 15.0))
            except openai.AuthenticationError as exc:
                raise AuthError(
                    f"{endpoint.url} rejected the API key ({describe_error(exc)}); "
                    "check OPENAI_API_KEY"
                ) from None
            except openai.APIConnectionError as exc:
                unreachable.append(f"cannot reach {endpoint.url}: {describe_error(exc)}")
                self._failed(endpoint, exc, force=True)
            except openai.APIStatusError:
                pass  # reachable; some compatible servers do not serve /models
        if len(unreachable) == len(self._endpoints):
            raise TeacherError(
                "; ".join(unreachable) + "; start the server or pass the right --base-url"
            )

    async def aclose(self) -> None:
        """Keep what the limit learned, and close every endpoint's connection pool."""
        try:
            if isinstance(self.limit, AdaptiveLimit) and self.limit.answered:
                self._save_limits(force=True)
        finally:
            await self._close_clients()

    async def _close_clients(self) -> None:
        for endpoint in self._endpoints:
            await endpoint.client.close()

    async def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """Answer the requests concurrently, within the concurrency limit."""
        return list(await asyncio.gather(*(self._complete_one(r) for r in requests)))

    # -- endpoint health -------------------------------------------------------------------

    def _healthy(self, avoid: _Endpoint | None = None) -> list[_Endpoint]:
        now = self._clock()
        healthy = [e for e in self._endpoints if e.down_until <= now]
        # A retry goes elsewhere when it can: the endpoint that just failed goes last.
        others = [e for e in healthy if e is not avoid]
        return others or healthy

    async def _pick(self, avoid: _Endpoint | None = None) -> _Endpoint:
        """Return the healthy endpoint with the fewest outstanding requests.

        When every endpoint is set aside, wait for the first to come back and try it.
        """
        healthy = self._healthy(avoid)
        if healthy:
            return min(healthy, key=lambda e: e.outstanding)
        soonest = min(self._endpoints, key=lambda e: e.down_until)
        await asyncio.sleep(max(0.0, soonest.down_until - self._clock()))
        return soonest

    def _failed(self, endpoint: _Endpoint, exc: BaseException, *, force: bool = False) -> None:
        endpoint.last_error = describe_error(exc)
        endpoint.failures += 1
        if (force or endpoint.failures >= SET_ASIDE_AFTER) and len(self._endpoints) > 1:
            pause = min(MAX_SET_ASIDE, self._set_aside * 2**endpoint.set_asides)
            if endpoint.down_until <= self._clock():
                log.warning(
                    "teacher %s set aside for %gs after %d failure(s) in a row (%s); "
                    "the other endpoints carry on",
                    endpoint.url,
                    pause,
                    endpoint.failures,
                    endpoint.last_error,
                )
                endpoint.set_asides += 1
            endpoint.down_until = self._clock() + pause
            endpoint.failures = 0

    def _answered(self, endpoint: _Endpoint) -> None:
        if endpoint.set_asides:
            log.warning("teacher %s answers again", endpoint.url)
        endpoint.failures = endpoint.set_asides = 0

    def _wait(self, exc: BaseException | None, attempt: int, failed: list[_Endpoint]) -> float:
        """Retry at once on another endpoint after a fault, if one answers; else back off."""
        if exc is not None and not _is_overload(exc) and failed:
            if any(e is not failed[-1] for e in self._healthy(failed[-1])):
                return 0.0
        return _backoff(exc, attempt)

    # -- one request -----------------------------------------------------------------------

    async def _complete_one(self, request: Request) -> Completion:
        tried: list[_Endpoint] = []  # where each attempt went
        failed: list[_Endpoint] = []  # where this request has failed, latest last
        try:
            try:
                # The first attempt goes without tenacity: its per-call objects form
                # reference cycles, and at hundreds of requests a second that garbage made
                # the cyclic collector stop the event loop for ~100 ms at a time (measured
                # with gc.callbacks). Only a request that fails pays for the machinery.
                return await self._gated_attempt(request, tried, failed)
            except Exception as exc:
                if not _is_transient(exc) or self._config.max_retries < 1:
                    raise
                await asyncio.sleep(self._wait(exc, 1, failed))

            def wait(state: RetryCallState) -> float:
                exc = state.outcome.exception() if state.outcome else None
                return self._wait(exc, state.attempt_number + 1, failed)

            retrying = AsyncRetrying(
                retry=retry_if_exception(_is_transient),
                stop=stop_after_attempt(self._config.max_retries),
                wait=wait,
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    return await self._gated_attempt(request, tried, failed)
        except openai.AuthenticationError as exc:
            url = (tried[-1] if tried else self._endpoints[0]).url
            raise AuthError(f"{url} rejected the API key: {describe_error(exc)}") from None
        except (openai.APIError, _BadResponse) as exc:
            url = (tried[-1] if tried else self._endpoints[0]).url
            attempts = self._config.max_retries + 1
            tries = f" after {attempts} attempt{'s' * (attempts > 1)}"
            tries = tries if _is_transient(exc) else ""
            raise TeacherError(f"{url}: {describe_error(exc)}{tries}") from None
        raise AssertionError("unreachable: tenacity re-raises the last error")

    async def _gated_attempt(
        self, request: Request, tried: list[_Endpoint], failed: list[_Endpoint]
    ) -> Completion:
        """Wait for a slot, then make one attempt on the best endpoint.

        A refused attempt gives its slot back while it waits to retry: after a 429 the limit
        drops, and retries that kept their slots would keep the server above it. Retries
        are let in before new requests.
        """
        await self._gate.acquire(-1 if tried else 0)
        try:
            if self.pacer.active:  # an API that states rate limits: stay within them
                await self.pacer.wait(_tokens(request))
            endpoint = await self._pick(failed[-1] if failed else None)
            tried.append(endpoint)
            return await self._attempt(endpoint, request, failed)
        finally:
            self._gate.release()

    async def _attempt(
        self, endpoint: _Endpoint, request: Request, failed: list[_Endpoint]
    ) -> Completion:
        """Send one attempt to `endpoint`, telling the limit and the health record how it went."""
        in_flight = sum(e.outstanding for e in self._endpoints)
        endpoint.outstanding += 1
        tokens = _tokens(request)
        self._out_tokens += tokens
        sent_at = self._clock()
        accept_after = self.limit.accept_after
        timer = (
            None
            if accept_after is None
            else asyncio.get_running_loop().call_later(accept_after, self._taken)
        )
        try:
            completion = await self._call(endpoint, request)
        except BaseException as exc:
            if _is_overload(exc) and not _is_rate_limit(exc):
                self.limit.on_overload(sent_at, in_flight + 1, self._clock() - sent_at)
            elif _is_transient(exc) and not _is_overload(exc):
                self._failed(endpoint, exc)
                failed.append(endpoint)
            raise
        finally:
            endpoint.outstanding -= 1
            self._out_tokens -= tokens
            if timer is not None:
                timer.cancel()
        self._answered(endpoint)
        outstanding = sum(e.outstanding for e in self._endpoints)
        latency, tokens = self._clock() - sent_at, completion.usage.completion_tokens
        self.limit.on_success(request.stage, latency, in_flight, outstanding, tokens or None)
        self._save_limits()
        return completion

    async def _call(self, endpoint: _Endpoint, request: Request) -> Completion:
        try:
            return await self._call_unchecked(endpoint, request)
        except ValueError as exc:  # the SDK lets a 200 with a non-JSON body escape as this
            raise _BadResponse(f"the answer was not valid JSON ({exc})") from None

    async def _call_unchecked(self, endpoint: _Endpoint, request: Request) -> Completion:
        p = request.params
        chat = self._config.api == "chat"
        body: dict[str, Any] = {
            "model": self._config.model,
            "temperature": p.temperature,
            "top_p": p.top_p,
            "max_tokens": p.max_tokens,
            "presence_penalty": p.presence_penalty,
            "frequency_penalty": p.frequency_penalty,
        }
        if chat:
            body["messages"] = [{"role": "user", "content": request.prompt}]
        else:
            body["prompt"] = request.prompt
        if p.stop:
            body["stop"] = list(p.stop)
        if p.seed is not None:
            body["seed"] = p.seed
        # The client's documented way to post a body as it is, the answer as plain JSON:
        # the typed create() spends ~1 ms of CPU per request checking our parameters against
        # its TypedDicts and building response models, a third of the client's CPU at a few
        # hundred requests in flight. Errors, auth and timeouts work as with create().
        data = await endpoint.client.post(
            "/chat/completions" if chat else "/completions", body=body, cast_to=object
        )
        return completion_from_json(data, chat=chat)


def completion_from_json(data: object, *, chat: bool) -> Completion:
    """Read text, finish reason and usage from a (chat) completion's JSON answer."""
    choices = data.get("choices") if isinstance(data, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise _BadResponse("the answer had no choices")
    choice = choices[0]
    if chat:
        message = choice.get("message")
        text = message.get("content") if isinstance(message, dict) else None
    else:
        text = choice.get("text")
    if text is not None and not isinstance(text, str):
        raise _BadResponse("the answer's text was not a string")
    usage = data.get("usage") if isinstance(data, dict) else None
    tokens = Usage()
    if isinstance(usage, dict):
        prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
        if isinstance(prompt, int) and isinstance(completion, int):
            tokens = Usage(prompt, completion)
    return Completion(
        text=text or "",
        finish_reason=str(choice.get("finish_reason") or "stop"),
        usage=tokens,
    )
