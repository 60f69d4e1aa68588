"""Teacher backend for any OpenAI-compatible server: OpenAI itself, `vllm serve`, and others."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import contextvars
import dataclasses
import heapq
import itertools
import json
import logging
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import openai
from openai import AsyncOpenAI, DefaultAsyncHttpxClient
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from selfinstruct.backends.base import Backend, Notify, RequestRefused, SendsHeld, Spend
from selfinstruct.backends.openai_wire import (
    DEFAULT_BASE_URL,
    DROPPABLE,
    STOP_STATUSES,
    AttemptTimeout,
    BadResponse,
    RefusedFields,
    TransportFault,
    api_path,
    completion_from_json,
    describe_error,
    is_refusal,
    is_transient,
    redirect_error,
    request_body,
    require_key,
    served_model,
)
from selfinstruct.concurrency import (
    ACCEPT_BURST,
    AdaptiveLimit,
    ConcurrencyLimit,
    PacerClosed,
    PriorityGate,
    RatePacer,
    SendMark,
    retry_after,
)
from selfinstruct.config import RunConfig, TeacherConfig
from selfinstruct.errors import AuthError, ConfigError, TeacherError
from selfinstruct.records import CHARS_PER_TOKEN, Completion, Request, SamplingParams, Usage
from selfinstruct.secrets import redact, register, url_credentials
from selfinstruct.store import LIMITS

MAX_BACKOFF = 60.0  # seconds; beyond this a server is down rather than busy
MAX_RETRY_AFTER = 300.0  # honour long Retry-After values, within reason
INITIAL_CONCURRENCY = 16  # where the adaptive limit starts probing (the old fixed default)
SET_ASIDE_AFTER = 3  # failures in a row before an endpoint is set aside
SET_ASIDE_FIRST = 5.0  # seconds of the first pause; doubles with each set-aside in a row
MAX_SET_ASIDE = 120.0
# Refused requests in a row, with no answer between them, after which the teacher is taken
# to refuse everything (a wrong model behind a filter, a broken proxy) and the run stops.
MAX_REFUSALS_IN_ROW = 20
# Exceptions of the HTTP libraries that a garbled answer raises past the SDK (aiohttp's
# ClientResponseError for a bad status line, chunk size or oversized header; h11's and
# httpx's protocol errors): by module, as aiohttp is optional.
_TRANSPORT_MODULES = ("aiohttp", "httpx", "httpx2", "httpcore", "h11", "anyio")
SAVE_LIMITS_EVERY = 10.0  # seconds between writes of what the limit learned (limits.json)
# A room probe (AdaptiveLimit.probe_after) is the cheapest request a server serves: one
# answer token. Each carries a fresh number, so no two are the same prompt.
PROBE_PARAMS = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=1)
PROBE_STAGE = "probe"  # their stage in the response log and in the run's usage
# A probe this many times slower than the fastest one, and answered after a request was,
# waited for a slot (network jitter is well within it; a slot frees when an answer ends).
PROBE_WAITED = 3.0
# Seconds a one-token answer takes at least on a server with a free slot (prefill and one
# decoding step: tens of milliseconds on a GPU), where the preflight's listing of models,
# which does no model work, may take one millisecond.
PROBE_FLOOR = 0.05
# A probe goes this many times the preflight's round trip (listing the models: no model
# work) after the send that bound the limit, so that send reaches the server first; at
# least PROBE_DELAY_MIN, and never later than the acceptance clock's delay.
PROBE_REACH_FACTOR = 4.0
PROBE_DELAY_MIN = 0.03

# The pacer's mark of the send being made in this task: its answer's rate-limit headers
# are read against it (RatePacer.observe).
_SEND_MARK: contextvars.ContextVar[SendMark | None] = contextvars.ContextVar(
    "selfinstruct_send_mark", default=None
)
log = logging.getLogger(__name__)
_T = TypeVar("_T")


@dataclass
class _Wire:
    """When the attempt made in this task was handed to the transport and answered."""

    handed: float | None = None
    answered: float | None = None


# The wire times of the attempt being made in this task, noted by the HTTP hooks: the
# latency the limit judges is theirs, without the SDK's building and parsing, which on a
# busy client (a start-up burst of many requests) would make the first answers look slow
# and the server's unloaded latency high.
_WIRE: contextvars.ContextVar[_Wire | None] = contextvars.ContextVar(
    "selfinstruct_wire", default=None
)


class _Turn:
    """When a request waiting at a queueing server had its turn (None: not yet, as known).

    A queueing server (``vllm serve``, llama.cpp's) serves a request once those that
    reached it first are answered. Each of those was sent before it reached the server,
    which it surely has once it has been out a timeout: they were then answered since its
    send or still out. So its turn comes, at the latest, when every request still out then
    has been answered, counting those sent after it, which may have overtaken it.
    """

    __slots__ = ("at", "sent")

    def __init__(self, sent: float) -> None:
        self.at: float | None = None
        self.sent = sent  # clock seconds


class _TurnTimer:
    """Call `expire` when `left()` says an attempt's time is up, looking again until then.

    A class, not a closure that re-arms itself: such a closure refers to itself, a cycle
    only the cyclic collector frees, and the engine freezes the heap after each commit
    (_quiet_collector), so every attempt's cycle out at a commit was kept for good (350
    MiB more at 52,000 tasks). Once cancelled, nothing here refers back to itself.
    """

    def __init__(
        self, expire: Callable[[float], object], left: Callable[[], float], first: float
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._expire, self._left = expire, left
        self._timer = self._loop.call_later(first, self._check)

    def _check(self) -> None:
        if (due := self._left()) > 0:
            self._timer = self._loop.call_later(due, self._check)
        else:
            self._expire(self._loop.time())  # now

    def cancel(self) -> None:
        """Stop looking: the attempt is over."""
        self._timer.cancel()


@dataclass
class _Endpoint:
    url: str
    client: AsyncOpenAI
    outstanding: int = 0
    failures: int = 0  # transient failures in a row, 429s aside (those mean busy, not broken)
    set_asides: int = 0  # times set aside since its last answer; lengthens the next pause
    down_until: float = 0.0  # monotonic time before which no request is sent to it
    last_error: str = ""
    answers: int = 0  # answers it has given (completions and probes)
    last_answer: float = float("-inf")  # when the latest came (clock seconds)
    # Requests waiting for their turn (see _Turn): (answers that bring it, order, turn).
    turns: list[tuple[int, int, _Turn]] = field(default_factory=list)

    def answered(self, now: float) -> None:
        """Note an answer at `now`: progress for the requests waiting behind it."""
        self.answers += 1
        self.last_answer = now
        while self.turns and self.turns[0][0] <= self.answers:
            heapq.heappop(self.turns)[2].at = now


def _retry_after(exc: BaseException | None) -> float | None:
    if not isinstance(exc, openai.APIStatusError):
        return None
    after = retry_after(exc.response.headers)
    return None if after is None else min(after, MAX_RETRY_AFTER)


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


def _http_client(limits: Any, hooks: dict[str, list[Any]] | None = None) -> Any:
    """Return the SDK's aiohttp transport when installed, else its default (httpx).

    At hundreds of requests in flight httpx's connection pool costs milliseconds of CPU per
    request (it scans every connection on each request); aiohttp's does not. Redirects are
    never followed (the SDK's clients follow them by default): a 307 would send every
    prompt, and the key, to whatever server the Location names. `hooks` are httpx event
    hooks (every response's headers reach the rate pacer through one).
    """
    aiohttp_client = getattr(openai, "DefaultAioHttpClient", None)
    if aiohttp_client is not None:
        try:
            return aiohttp_client(limits=limits, follow_redirects=False, event_hooks=hooks)
        except RuntimeError:
            pass  # the SDK's aiohttp extra is not installed
    return DefaultAsyncHttpxClient(limits=limits, follow_redirects=False, event_hooks=hooks)


def _is_transport_fault(exc: BaseException) -> bool:
    module = type(exc).__module__.split(".")[0]
    return module in _TRANSPORT_MODULES or isinstance(exc, (OSError, EOFError))


def _client(
    url: str, key: str, config: TeacherConfig, limits: Any, hooks: dict[str, list[Any]]
) -> AsyncOpenAI:
    """Build the client of one endpoint, with the credentials its URL carried, if any.

    The query string goes with every request (the SDK would glue the path onto it).
    """
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    base = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))
    headers: dict[str, str] = {}
    creds = url_credentials(url)
    if creds is not None:
        query.update(creds.query)
        key = creds.api_key or key
        if creds.basic is not None:
            token = base64.b64encode(":".join(creds.basic).encode()).decode()
            headers["Authorization"] = f"Basic {token}"  # replaces the bearer header
            register(token)
    return AsyncOpenAI(
        api_key=key,
        base_url=base,
        max_retries=0,
        # No timeout per read: a request waiting in a queueing server's queue gets no byte
        # until its turn. Every attempt is bounded by _guarded instead, from its turn.
        timeout=None,
        http_client=_http_client(limits, hooks),
        default_query=query or None,
        default_headers=headers or None,
    )


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
        register(api_key)  # whatever its form, it never reaches a message or a file
        self._refusals_in_row = 0
        self._refused = RefusedFields(config)
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
        hooks: dict[str, list[Any]] = {
            "request": [self._on_request],
            "response": [self._on_response],
        }
        self._endpoints = [_Endpoint(url, _client(url, key, config, limits, hooks)) for url in urls]
        self.limit = make_limit(config)
        self._gate = PriorityGate(lambda: self.limit.limit)
        self.pacer = RatePacer(clock)
        self._out_tokens = 0  # rate-limit tokens of the requests on the wire
        self._probe_timer: asyncio.TimerHandle | None = None
        self._probe_task: asyncio.Task[None] | None = None
        self._probe_off = False  # a server that could not answer a probe is not asked again
        self._held = asyncio.Event()  # set by hold(): nothing more is sent
        self.probes = 0  # room probes sent (one-token requests, logged through _spend)
        self._spend: list[Spend] = []
        self._probe_fastest = float("inf")  # seconds: the quickest probe answer so far
        self._reach: float | None = None  # seconds: the preflight's quickest round trip
        self._watchers: list[Callable[[], None]] = []
        # Generation requests posted, and handed to the HTTP transport (the client's request
        # hook): a room probe waits until every request of its load has reached the server.
        self._posted = 0
        self._handed = 0
        self._turn_order = itertools.count()  # ties in _Endpoint.turns
        self._handed_at = float("-inf")
        self._burst_at: float | None = None  # the first handed since the limit last grew
        # What the limit learned is kept beside the run (operational, not identity), for the
        # same endpoints only: another server's capacity says nothing about these.
        self._limits_path = limits_path
        self._saved: dict[str, Any] = {}
        self._saved_at = clock()
        if limits_path is not None:
            self._load_limits(limits_path)

    @classmethod
    def from_config(
        cls, config: RunConfig, api_key: str | None, *, notify: Notify | None = None
    ) -> OpenAICompatBackend:
        """Build the backend for the config's endpoints; refuse api.openai.com without a key."""
        require_key(config.teacher, api_key)
        # What the limit learned is kept in the run directory, so a resume starts from it.
        return cls(config.teacher, api_key, limits_path=config.out / LIMITS)

    def concurrency(self) -> int:
        """Return the current limit of requests in flight, within what stated rate limits use."""
        limit = self.limit.limit
        round_trip = self.limit.round_trip
        if self.pacer.active and round_trip is not None:
            cap = self.pacer.in_flight_cap(round_trip)
            if cap is not None:
                return min(limit, cap)
        return limit

    def watch_capacity(self, callback: Callable[[], None]) -> None:
        """Call `callback` when the limit grows between answers (the acceptance clock)."""
        self._watchers.append(callback)

    def hold(self, held: bool = True) -> None:
        """Send nothing more: requests waiting for a slot, a refill or a retry raise SendsHeld."""
        if not held:
            self._held.clear()
            self.pacer.reopen()
            return
        self._held.set()
        self.pacer.close()
        if self._probe_timer is not None:
            self._probe_timer.cancel()
            self._probe_timer = None

    async def _pause(self, seconds: float) -> None:
        """Wait `seconds` before a retry; raise SendsHeld at once if the run holds sends."""
        if not self._held.is_set():
            with contextlib.suppress(asyncio.TimeoutError):  # TimeoutError from 3.11 on
                await asyncio.wait_for(self._held.wait(), seconds)
        if self._held.is_set():
            raise SendsHeld

    def watch_spend(self, callback: Spend) -> None:
        """Call `callback(stage, key, answer)` for each room probe answered (a paid request)."""
        self._spend.append(callback)

    # -- what the server says: rate-limit headers, acceptance, the learned limit -----------

    async def _on_request(self, request: Any) -> None:
        """Count a generation request handed to the transport (httpx event hook)."""
        if request.method == "POST":
            self._handed += 1
            self._handed_at = self._clock()
            if (wire := _WIRE.get()) is not None:
                wire.handed, wire.answered = self._handed_at, None
            if self._burst_at is None:
                self._burst_at = self._handed_at

    async def _on_response(self, response: Any) -> None:
        """Note an answer's time and read its rate-limit headers (httpx event hook)."""
        if (wire := _WIRE.get()) is not None:
            wire.answered = self._clock()
        if "x-ratelimit-limit-requests" in response.headers or (
            "x-ratelimit-limit-tokens" in response.headers
        ):
            # The hook runs in the task that sent the request: a completion's carries its
            # send mark. Any other call's answer is read against everything still out.
            if (mark := _SEND_MARK.get()) is not None:
                self.pacer.observe(response.headers, mark=mark)
                return
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

    def _start_probe(self) -> None:
        """Send a room probe if the limit still asks for one (no answer or refusal since)."""
        self._probe_timer = None
        if self._held.is_set():
            return
        out = sum(e.outstanding for e in self._endpoints)
        # The acceptance clock may have raised the limit since the send that bound it: no
        # reason to wait. Only an answer or a refusal since then makes the probe moot.
        wanted = self.limit.probe_after(max(out, self.limit.limit))
        if self._probe_task is not None or wanted is None:
            return
        # A probe answered at once proves room at the load the server had, which is the
        # load counted here only once every request of it has reached the server and been
        # read. At start-up the client may still be building requests (about a millisecond
        # of CPU each), and the server reads a burst at its own pace, which on a shared
        # machine may be no faster than the client sent it: a probe on a warm connection
        # that overtook them proved room the server did not have (a queueing server of 256
        # slots then got 526 requests, 271 of them queued, p50 latency 8-10 s against 6.3 s
        # unloaded). So the probe goes once all are handed to the transport, and as long
        # again as the client took to hand them (plus the acceptance delay) after the last.
        # Not the first probe, at the acceptance clock's burst: a small, fast server must
        # still be asked before its first answers, which the burst queued (see on_full).
        if self.limit.limit > ACCEPT_BURST:
            burst = 0.0 if self._burst_at is None else self._handed_at - self._burst_at
            settle = self.limit.accept_delay + max(0.0, burst)
            since = self._clock() - self._handed_at
            if self._handed < self._posted or since < settle:
                wait = settle if self._handed < self._posted else settle - since
                loop = asyncio.get_running_loop()
                self._probe_timer = loop.call_later(wait, self._start_probe)
                return
        self._probe_task = asyncio.get_running_loop().create_task(self._probe(out))

    async def _probe(self, in_flight: int) -> None:
        """Ask for one answer token with `in_flight` out; first back means the server had room.

        A server whose slots are all busy serves the probe only after one frees, that is
        after some request's answer; answered before any, it was served at once. Answered
        after one, and many times slower than the fastest probe, it waited for a slot.
        Its refusal (429) is a refusal like any other; any other failure ends probing.
        """
        check = f"{random.getrandbits(32):08x}"
        request = Request(
            key=f"{PROBE_STAGE}/{check}",
            stage="instructions",
            prompt=f"Reply with one word. (check {check})",
            params=PROBE_PARAMS,
        )
        self.probes += 1
        sent_at = self._clock()
        try:
            _SEND_MARK.set(await self.pacer.wait(_tokens(request)))
            healthy = self._healthy()
            if not healthy:
                return
            endpoint = min(healthy, key=lambda e: e.outstanding)
            body = request_body(self._config, request, self._refused.fields)
            self.limit.on_probe(in_flight)
            self._posted += 1
            data = await self._guarded(
                endpoint.client.post(api_path(self._config.api), body=body, cast_to=object),
                self._config.timeout,
                endpoint,
            )
            endpoint.answered(self._clock())
            answer = completion_from_json(data, chat=self._config.api == "chat", request=request)
        except Exception as exc:
            if _is_overload(exc):
                if not _is_rate_limit(exc):
                    out = sum(e.outstanding for e in self._endpoints)  # the probe is not
                    self.limit.on_overload(sent_at, in_flight + 1, self._clock() - sent_at, out)
            else:
                self._probe_off = True
            log.debug("room probe with %d in flight failed: %s", in_flight, describe_error(exc))
            return
        finally:
            self._probe_task = None
            self.limit.on_probe(None)
        latency = self._clock() - sent_at
        try:
            for spend in self._spend:
                spend(PROBE_STAGE, request.key, answer)
        except OSError as exc:
            # The run's own next write meets the same fault and stops it with its message.
            log.warning("could not log a room probe's answer: %s", exc)
        before, self._probe_fastest = self._probe_fastest, min(self._probe_fastest, latency)
        fastest = before
        if self._reach is not None:
            # The first probe has no other to be compared with; the preflight's round trip
            # (no model work: at least PROBE_FLOOR for one) is the quickest any answer can
            # be, so a probe many times slower than it, back only after an answer, waited.
            fastest = min(fastest, max(self._reach, PROBE_FLOOR))
        if isinstance(self.limit, AdaptiveLimit) and self.limit.answered:
            if latency > PROBE_WAITED * fastest:
                # The quickest probe before it took as long as its service once it had a
                # slot: the answers until then count the queue ahead of it (see on_full).
                self.limit.on_full(in_flight, before if before < latency else None)
            return
        if self.limit.on_room(in_flight):
            self._burst_at = None  # the burst the next probe waits for starts now
            log.info(
                "the teacher served a probe at once with %d requests in flight, before any "
                "answer: up to %d in flight",
                in_flight,
                self.limit.limit,
            )
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
                started = self._clock()
                page = await self._guarded(
                    endpoint.client.models.list(timeout=min(self._config.timeout, 15.0)),
                    min(self._config.timeout, 15.0),
                )
                took = self._clock() - started
                self._reach = took if self._reach is None else min(self._reach, took)
                # A refusal from the farthest endpoint takes longest to come back.
                self.limit.on_reach(took)
                if self.reported_model is None:
                    self.reported_model = served_model(list(page.data), self._config.model)
            except openai.AuthenticationError as exc:
                raise AuthError(
                    f"{endpoint.url} rejected the API key ({describe_error(exc)}); "
                    "check OPENAI_API_KEY"
                ) from None
            except (openai.APIConnectionError, TransportFault) as exc:
                unreachable.append(f"cannot reach {endpoint.url}: {describe_error(exc)}")
                self._failed(endpoint, exc, force=True)
            except openai.APIStatusError as exc:
                if (redirect := redirect_error(exc, endpoint.url)) is not None:
                    raise ConfigError(redirect) from None
                # Otherwise reachable; some compatible servers do not serve /models.
        if len(unreachable) == len(self._endpoints):
            raise TeacherError(
                "; ".join(unreachable) + "; start the server or pass the right --base-url"
            )

    async def aclose(self) -> None:
        """Keep what the limit learned, and close every endpoint's connection pool."""
        if self._probe_timer is not None:
            self._probe_timer.cancel()
        if (task := self._probe_task) is not None:
            task.cancel()
            await asyncio.wait([task], timeout=5.0)  # it ends at its next await
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
                if not is_transient(exc) or self._config.max_retries < 1:
                    raise
                await self._pause(self._wait(exc, 1, failed))

            def wait(state: RetryCallState) -> float:
                exc = state.outcome.exception() if state.outcome else None
                return self._wait(exc, state.attempt_number + 1, failed)

            retrying = AsyncRetrying(
                retry=retry_if_exception(is_transient),
                stop=stop_after_attempt(self._config.max_retries),
                wait=wait,
                sleep=self._pause,
                reraise=True,
            )
            async for attempt in retrying:
                with attempt:
                    return await self._gated_attempt(request, tried, failed)
        except openai.AuthenticationError as exc:
            url = (tried[-1] if tried else self._endpoints[0]).url
            raise AuthError(f"{url} rejected the API key: {describe_error(exc)}") from None
        except (openai.APIError, BadResponse, TransportFault, AttemptTimeout) as exc:
            url = (tried[-1] if tried else self._endpoints[0]).url
            if (redirect := redirect_error(exc, url)) is not None:
                raise ConfigError(redirect) from None
            attempts = self._config.max_retries + 1
            tries = f" after {attempts} attempt{'s' * (attempts > 1)}"
            tries = tries if is_transient(exc) else ""
            message = f"{url}: {describe_error(exc)}{tries}"
            if is_refusal(exc):
                self._refusals_in_row += 1
                # Refusals of requests in flight together come in bursts; a burst of
                # twice what may be in flight is no burst.
                if self._refusals_in_row < max(MAX_REFUSALS_IN_ROW, 2 * self.limit.limit):
                    raise RequestRefused(message) from None
                message = (
                    f"{self._refusals_in_row} requests in a row refused, none answered; "
                    f"the teacher refuses everything (last: {message})"
                )
            elif isinstance(exc, openai.APIStatusError) and exc.status_code in STOP_STATUSES:
                message += "; check --base-url and --model"
            raise TeacherError(message) from None
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
            # An API that states rate limits is kept within them; every send is counted,
            # also before the first answer states any, to read later answers against.
            if self._held.is_set():
                raise SendsHeld  # before the pacer counts it as sent
            try:
                sent = await self.pacer.wait(_tokens(request))
            except PacerClosed:
                raise SendsHeld from None
            mark = _SEND_MARK.set(sent)
            try:
                endpoint = await self._pick(failed[-1] if failed else None)
                if self._held.is_set():
                    raise SendsHeld  # it waited for an endpoint to come back
                tried.append(endpoint)
                return await self._attempt(endpoint, request, failed)
            finally:
                _SEND_MARK.reset(mark)
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
        loop = asyncio.get_running_loop()
        timer = None if accept_after is None else loop.call_later(accept_after, self._taken)
        if self._probe_timer is None and self._probe_task is None and not self._probe_off:
            probe_after = self.limit.probe_after(in_flight + 1)
            if probe_after is not None and self._reach is not None:
                probe_after = min(
                    probe_after, max(PROBE_DELAY_MIN, PROBE_REACH_FACTOR * self._reach)
                )
            if probe_after is not None:
                self._probe_timer = loop.call_later(probe_after, self._start_probe)
        wire = _Wire()
        wire_mark = _WIRE.set(wire)
        try:
            completion = await self._call(endpoint, request)
        except BaseException as exc:
            if _is_overload(exc) and not _is_rate_limit(exc):
                # The server held at most the others still out when it refused this one.
                out = sum(e.outstanding for e in self._endpoints)  # this one included
                self.limit.on_overload(sent_at, in_flight + 1, self._clock() - sent_at, out - 1)
            elif is_transient(exc) and not _is_overload(exc):
                self._failed(endpoint, exc)
                failed.append(endpoint)
            raise
        finally:
            _WIRE.reset(wire_mark)
            endpoint.outstanding -= 1
            self._out_tokens -= tokens
            if timer is not None:
                timer.cancel()
        self._answered(endpoint)
        endpoint.answered(self._clock())
        self._refusals_in_row = 0
        outstanding = sum(e.outstanding for e in self._endpoints)
        latency = self._clock() - sent_at
        if wire.handed is not None and wire.answered is not None:
            latency = wire.answered - wire.handed  # the server's part (see _WIRE)
        tokens = completion.usage.completion_tokens
        self.limit.on_success(request.stage, latency, in_flight, outstanding, tokens or None)
        self._save_limits()
        return completion

    async def _call(self, endpoint: _Endpoint, request: Request) -> Completion:
        try:
            return await self._guarded(
                self._call_unchecked(endpoint, request),
                self._config.timeout,
                endpoint,
            )
        except UnicodeDecodeError as exc:
            # JSON must be UTF-8 (RFC 8259 sec. 8.1), but a server that cut a character's
            # bytes apart still sent an answer: what was lost becomes U+FFFD, which the
            # parse boundary rejects in the one field that holds it (invalid_text).
            try:
                data = json.loads(bytes(exc.object).decode("utf-8", "replace"))
            except ValueError:
                raise BadResponse(f"the answer was not valid JSON ({exc})") from None
            completion = completion_from_json(
                data, chat=self._config.api == "chat", request=request
            )
            return self._refused.finish(completion, request)
        except ValueError as exc:  # the SDK lets a 200 with a non-JSON body escape as this
            raise BadResponse(f"the answer was not valid JSON ({redact(str(exc))})") from None

    async def _guarded(
        self,
        call: Awaitable[_T],
        timeout: float,
        queue: _Endpoint | None = None,
    ) -> _T:
        """Await `call` within `timeout` seconds, turning transport faults into ours.

        The SDK's timeout bounds each read, not the answer: a server trickling a byte a
        second would hold the request forever. A garbled answer raises the HTTP library's
        own exceptions past the SDK; they are faults of the teacher, retried like a drop.

        With `queue` (the endpoint it went to) the seconds count from the request's turn
        there (_Turn): a queueing server with few slots, or a long queue of slow answers,
        answers the last of a burst minutes after its send, and a request cut off there
        would be sent again and paid twice while the first is still being served.
        """
        try:
            if queue is not None:
                return await self._within_turn(call, timeout, queue)
            if sys.version_info >= (3, 11):
                async with asyncio.timeout(timeout):  # no task per attempt, as wait_for makes
                    return await call
            return await asyncio.wait_for(call, timeout)
        except asyncio.TimeoutError:
            waited = "" if queue is None else " of its turn at the server"
            raise AttemptTimeout(
                f"request timed out (no complete answer within {timeout:g}s{waited})"
            ) from None
        except (openai.APIError, ValueError):
            raise
        except Exception as exc:
            if not _is_transport_fault(exc):
                raise
            # aiohttp's message spans lines (it draws a caret under the bad byte).
            said = " ".join(str(getattr(exc, "message", "") or exc).split())[:160]
            raise TransportFault(
                f"malformed HTTP answer ({type(exc).__name__}: {redact(said)})"
            ) from None

    async def _within_turn(self, call: Awaitable[_T], timeout: float, endpoint: _Endpoint) -> _T:
        """Await `call`; raise TimeoutError `timeout` s after its turn at `endpoint` (_Turn).

        Until its turn, each answer the endpoint gives is progress: the timeout counts from
        the latest. A server that answers nothing for `timeout` s is still cut, as is one
        that answers others but holds this one past its turn.
        """
        turn = _Turn(self._clock())
        waiting = False

        def left() -> float:
            # First called when the request has been out `timeout` s: until its turn comes,
            # answers to the requests out now are progress for it (answered() notes it).
            nonlocal waiting
            if not waiting:
                waiting = True
                due = endpoint.answers + endpoint.outstanding
                heapq.heappush(endpoint.turns, (due, next(self._turn_order), turn))
            start = max(turn.sent, endpoint.last_answer) if turn.at is None else turn.at
            return start + timeout - self._clock()

        if sys.version_info >= (3, 11):
            # One timer per attempt, as asyncio.timeout alone would make: only an attempt
            # out longer than the timeout is looked at again, so answers cost nothing more.
            async with asyncio.timeout(None) as scope:
                timer = _TurnTimer(scope.reschedule, left, timeout)
                try:
                    return await call
                finally:
                    timer.cancel()
        task = asyncio.ensure_future(call)
        try:
            due = timeout
            while due > 0:
                done, _ = await asyncio.wait({task}, timeout=due)
                if done:
                    return task.result()
                due = left()
            raise asyncio.TimeoutError
        finally:
            if not task.done():
                task.cancel()

    async def _call_unchecked(self, endpoint: _Endpoint, request: Request) -> Completion:
        chat = self._config.api == "chat"
        # The client's documented way to post a body as it is, the answer as plain JSON:
        # the typed create() spends ~1 ms of CPU per request checking our parameters against
        # its TypedDicts and building response models, a third of the client's CPU at a few
        # hundred requests in flight. Errors, auth and timeouts work as with create().
        # A 400 naming a field the model does not take (a reasoning model's max_tokens, say)
        # is answered at once without that field; each field is learned once, so this ends.
        spent = Usage()  # answers paid for but sent again: counted with the one kept
        for _ in range(len(DROPPABLE) + 2):
            body = request_body(self._config, request, self._refused.fields)
            self._posted += 1
            try:
                data = await endpoint.client.post(
                    api_path(self._config.api), body=body, cast_to=object
                )
            except openai.BadRequestError as exc:
                if self._refused.learn(exc, body):
                    continue
                raise
            completion = completion_from_json(data, chat=chat, request=request)
            if self._refused.stopped_in_reasoning(completion, body):
                spent += completion.usage
                continue
            if spent != Usage():
                completion = dataclasses.replace(completion, usage=completion.usage + spent)
            return self._refused.finish(completion, request)
        raise AssertionError("unreachable: every refusable field has been left out")
