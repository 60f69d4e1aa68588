"""Teacher backend that sends requests through the OpenAI Batch API, at half the price.

Requests queue up until none has arrived for ``batch_quiet_seconds`` (the engine asks for
a whole window of rounds' requests at once, then the next stage's), or until a batch is
full; then they go out as one batch: a JSONL file uploaded with purpose ``batch``, a batch
created on it, polled until it ends, its output and error files read back. Each line's
``custom_id`` is the request's log key, so every answer finds its waiter.

The run directory's ``batches.jsonl`` records, before any waiting, the uploaded file and
the keys it carries, then the batch's id, then how the batch ended. A resumed run reads it
back and waits on (or collects) the interrupted run's batches instead of paying for their
requests again. Lines that failed, and the unanswered lines of an expired batch, go into a
later batch, at most ``MAX_ATTEMPTS`` batches per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import openai
from openai import AsyncOpenAI, DefaultAsyncHttpxClient

from selfinstruct.backends.base import Backend, Notify, RequestRefused, SendsHeld
from selfinstruct.backends.openai_wire import (
    DEFAULT_BASE_URL,
    DROPPABLE,
    MAX_MESSAGE,
    STOP_STATUSES,
    BadResponse,
    RefusedFields,
    api_path,
    completion_from_json,
    describe_error,
    describe_status,
    is_transient,
    is_transient_status,
    redirect_error,
    request_body,
    require_key,
)
from selfinstruct.config import RunConfig, TeacherConfig
from selfinstruct.costs import BATCHES
from selfinstruct.errors import AuthError, ConfigError, RunDirError, TeacherError
from selfinstruct.records import Completion, Request, Usage
from selfinstruct.secrets import redact, register
from selfinstruct.store import read_lines

# OpenAI's limits on one batch input file: 50,000 requests and 200 MB (Batch API guide).
MAX_BATCH_REQUESTS = 50_000
MAX_BATCH_BYTES = 190 * 1024 * 1024  # a margin under 200 MB for the multipart envelope
# Seconds allowed to upload or download a batch file (up to 200 MB).
TRANSFER_TIMEOUT = 600.0
# How many batches one request may ride in before its failure is final.
MAX_ATTEMPTS = 3
# Polling backs off from batch_poll_seconds up to this multiple of it.
MAX_POLL_FACTOR = 8.0
# When a create call's outcome is unknown, look this far before the upload for the batch.
CLOCK_SLACK = 300
TERMINAL = frozenset({"completed", "failed", "expired", "cancelled"})
# Batch-level endings that say nothing about the lines: not counted as attempts.
_NOT_ATTEMPTS = frozenset({"failed", "cancelled"})


def endpoint_path(api: str) -> str:
    """Return the Batch API endpoint for the teacher API ("completions" or "chat")."""
    return "/v1" + api_path(api)


@dataclass
class _Failure:
    """Why a request got no answer from a batch, and whether another batch may help."""

    message: str
    retryable: bool = True
    refused: bool = False  # the answer refuses this request itself (see is_refusal)
    error: object = None  # a 400's error object, which may name a field the model refuses


@dataclass
class _Batch:
    """One uploaded input file and the batch made of it, as far as this run knows."""

    file_id: str
    keys: list[str]
    stages: dict[str, str]
    uploaded_at: float  # unix time, to bound the search for a batch of unknown id
    batch_id: str | None = None
    status: str | None = None  # a terminal status once it has ended
    output_file_id: str | None = None
    error_file_id: str | None = None
    from_log: bool = False  # read back from batches.jsonl rather than submitted now
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    error: BaseException | None = None  # why waiting on it failed, for every waiter
    # Set when it ended failed or cancelled while this run watched it: its unanswered
    # requests then stop the run (a user cancelled it, or the input was refused).
    stop_message: str | None = None
    results: dict[str, Completion] | None = None  # None until collected
    failures: dict[str, _Failure] = field(default_factory=dict)
    watcher: asyncio.Task[None] | None = None
    collecting: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def name(self) -> str:
        """Return the batch id, or a stand-in until the batch exists."""
        return self.batch_id or f"for file {self.file_id}"


@dataclass
class _Queued:
    request: Request
    line: bytes
    assigned: asyncio.Future[_Batch]


class BatchAPIBackend(Backend):
    """Answer requests through OpenAI's Batch API, keeping batch ids in the run directory."""

    answers_promptly = False

    def __init__(
        self,
        config: TeacherConfig,
        api_key: str | None,
        run_path: Path,
        *,
        notify: Callable[[str], None] | None = None,
        lane: str | None = None,
    ) -> None:
        url = config.base_urls[0] if config.base_urls else DEFAULT_BASE_URL
        # A second backend of the run (the judge's own model) logs its batches in its own
        # lane of batches.jsonl: each reads back only its own, as ids of two servers may meet.
        self._lane = lane
        self._config = config
        self._url = url
        self._endpoint = endpoint_path(config.api)
        self._path = run_path / BATCHES
        self._notify = notify
        self._max_requests = min(config.batch_max_requests, MAX_BATCH_REQUESTS)
        # Every request of a window must be in flight at once to share one batch.
        self.min_concurrency = self._max_requests
        key = api_key or "EMPTY"
        register(api_key)
        # File and status calls are safe to repeat, so the SDK's retries (which honour
        # Retry-After) are the one retry layer; creating a batch is not, see _create.
        # Redirects are not followed: the prompts stay with the endpoint given.
        self._client = AsyncOpenAI(
            api_key=key,
            base_url=url,
            max_retries=config.max_retries,
            timeout=config.timeout,
            http_client=DefaultAsyncHttpxClient(follow_redirects=False),
        )
        self._create_client = self._client.with_options(max_retries=0)
        self._refused = RefusedFields(config)
        # Requests sent again without a field the model refused (not counted as attempts).
        self._resent: dict[str, int] = {}
        self._sent_stop: dict[str, bool] = {}  # whether a request's latest line had stops
        self._spent: dict[str, Usage] = {}  # usage of answers discarded to be asked again
        self._log_fh: IO[bytes] | None = None
        self._loaded = False
        self._batches: dict[str, _Batch] = {}  # by file id
        self._latest: dict[str, _Batch] = {}  # by request key: the last batch carrying it
        self._history: dict[str, list[_Batch]] = {}
        self._queue: dict[str, _Queued] = {}
        self._queued_bytes = 0
        self._last_queued = 0.0
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None
        self._closing = False
        self._held = False  # see hold()
        self.batches_submitted = 0  # this session, for summaries and benchmarks

    # -- Backend -------------------------------------------------------------------------

    @classmethod
    def resolve(cls, config: RunConfig) -> dict[str, Any]:
        """Refuse several endpoints: a batch and its results live on one server."""
        if len(config.teacher.base_urls) > 1:
            raise ConfigError("--batch-api sends every batch to one endpoint: pass one --base-url")
        return {}

    @classmethod
    def from_config(
        cls, config: RunConfig, api_key: str | None, *, notify: Notify | None = None
    ) -> BatchAPIBackend:
        """Build the backend, keeping its batch log in the run directory."""
        require_key(config.teacher, api_key)
        return cls(config.teacher, api_key, config.out, notify=notify)

    async def preflight(self) -> None:
        """Fail fast when the key is wrong or the server offers no Batch API."""
        timeout = min(self._config.timeout, 15.0)
        try:
            await self._client.with_options(max_retries=0).batches.list(limit=1, timeout=timeout)
        except openai.AuthenticationError as exc:
            raise AuthError(
                f"{self._url} rejected the API key ({describe_error(exc)}); check OPENAI_API_KEY"
            ) from None
        except openai.NotFoundError:
            raise TeacherError(
                f"{self._url} offers no Batch API (GET /batches: 404); drop --batch-api"
            ) from None
        except openai.APIConnectionError as exc:
            raise TeacherError(
                f"cannot reach {self._url}: {describe_error(exc)}; "
                "start the server or pass the right --base-url"
            ) from None
        except openai.APIStatusError as exc:
            if (redirect := redirect_error(exc, self._url)) is not None:
                raise ConfigError(redirect) from None
            # Otherwise reachable; a transient error now is retried when it matters.

    async def aclose(self) -> None:
        """Stop waiting (pending batches go on at OpenAI and are found again on resume)."""
        self._closing = True
        tasks = [b.watcher for b in self._batches.values() if b.watcher is not None]
        if self._flusher is not None:
            tasks.append(self._flusher)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for queued in self._queue.values():
            queued.assigned.cancel()
        self._queue.clear()
        await self._client.close()
        if self._log_fh is not None:
            self._log_fh.close()
            self._log_fh = None

    def hold(self, held: bool = True) -> None:
        """Submit no more batches: requests still queued for one raise SendsHeld."""
        self._held = held
        if held:
            for queued in self._queue.values():
                if not queued.assigned.done():
                    queued.assigned.set_exception(SendsHeld())
                    queued.assigned.exception()  # its waiter may be cancelled before it reads it

    async def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """Answer the requests, each through whichever batch carries (or will carry) it."""
        self._load()
        return list(await asyncio.gather(*(self._answer(r) for r in requests)))

    # -- one request ---------------------------------------------------------------------

    async def _answer(self, request: Request) -> Completion:
        key = request.key
        batch = self._latest.get(key)
        while True:
            if batch is None:
                batch = await self._enqueue(request)
            self._watch(batch)
            await batch.ended.wait()
            if batch.error is not None:
                if isinstance(batch.error, TeacherError):
                    raise TeacherError(str(batch.error))
                raise batch.error
            await self._collect(batch)
            assert batch.results is not None
            # Popped, not kept: the engine logs it and asks for each key once per run, and
            # a later run downloads the output again if it needs it.
            resent = self._resent.get(key, 0)
            full_body = request_body(self._config, request)
            if (completion := batch.results.pop(key, None)) is not None:
                # Whether its line carried stop sequences (unknown for an earlier run's: yes).
                sent = full_body if self._sent_stop.get(key, True) else {}
                if resent > len(DROPPABLE) or not self._refused.stopped_in_reasoning(
                    completion, sent
                ):
                    if (spent := self._spent.pop(key, None)) is not None:
                        usage = completion.usage + spent  # what the discarded answers cost
                        completion = dataclasses.replace(completion, usage=usage)
                    return self._refused.finish(completion, request)
                self._spent[key] = self._spent.get(key, Usage()) + completion.usage
                self._resent[key] = resent + 1  # sent again without stop sequences
                batch = None
                continue
            if batch.stop_message is not None:
                raise TeacherError(batch.stop_message)
            failure = batch.failures.get(key) or _Failure("missing from the batch's output")
            if resent <= len(DROPPABLE) and self._refused.learn(failure.error, full_body):
                # The model refuses a field (max_tokens, say): a later batch goes without it.
                self._resent[key] = resent + 1
                batch = None
                continue
            tries = sum(1 for b in self._history.get(key, []) if b.status not in _NOT_ATTEMPTS)
            tries -= resent
            if not failure.retryable or tries >= MAX_ATTEMPTS:
                after = f" (in {tries} batches)" if failure.retryable else ""
                message = (
                    f"{self._url}: request {key} failed in batch {batch.name}: "
                    f"{failure.message}{after}"
                )
                if failure.refused:
                    raise RequestRefused(message)
                raise TeacherError(message)
            batch = None  # into a later batch

    async def _enqueue(self, request: Request) -> _Batch:
        if self._held:
            raise SendsHeld
        queued = self._queue.get(request.key)
        if queued is None:
            body = request_body(self._config, request, self._refused.fields)
            self._sent_stop[request.key] = "stop" in body
            line = {"custom_id": request.key, "method": "POST", "url": self._endpoint, "body": body}
            data = json.dumps(line, ensure_ascii=False).encode() + b"\n"
            queued = _Queued(request, data, asyncio.get_running_loop().create_future())
            self._queue[request.key] = queued
            self._queued_bytes += len(data)
            self._last_queued = time.monotonic()
            self._wake.set()
            if self._flusher is None or self._flusher.done():
                self._flusher = asyncio.create_task(self._flush_loop())
        return await queued.assigned

    # -- submitting ----------------------------------------------------------------------

    def _full(self) -> bool:
        return len(self._queue) >= self._max_requests or self._queued_bytes >= MAX_BATCH_BYTES

    async def _flush_loop(self) -> None:
        quiet = self._config.batch_quiet_seconds
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            # Wait until nothing has been queued for `quiet` seconds, or a batch is full.
            while self._queue and not self._full():
                idle = time.monotonic() - self._last_queued
                if idle >= quiet:
                    break
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), quiet - idle)
                self._wake.clear()
            while self._queue:
                taken = self._take()
                if taken:
                    await self._submit(taken)
                if not self._full():
                    break  # the rest waits for its own quiet window

    def _take(self) -> list[_Queued]:
        """Remove from the queue what fits in one batch, skipping abandoned requests."""
        taken: list[_Queued] = []
        size = 0
        for key in list(self._queue):
            queued = self._queue[key]
            if len(taken) >= self._max_requests or size + len(queued.line) > MAX_BATCH_BYTES:
                break
            del self._queue[key]
            self._queued_bytes -= len(queued.line)
            if queued.assigned.done():
                continue  # its waiter gave up (the run is ending): do not pay for it
            taken.append(queued)
            size += len(queued.line)
        return taken

    async def _submit(self, taken: list[_Queued]) -> None:
        try:
            await self._submit_unguarded(taken)
        except Exception as exc:
            # Whatever went wrong (a full disk, say), the waiters must hear of it.
            for q in taken:
                if not q.assigned.done():
                    q.assigned.set_exception(exc)

    async def _submit_unguarded(self, taken: list[_Queued]) -> None:
        data = b"".join(q.line for q in taken)
        name = f"selfinstruct-{int(time.time())}-{len(taken)}.jsonl"
        try:
            uploaded = await self._client.files.create(
                file=(name, data, "application/jsonl"),
                purpose="batch",
                timeout=max(self._config.timeout, TRANSFER_TIMEOUT),
            )
        except openai.APIError as exc:
            self._fail_queued(
                taken, f"{self._url}: cannot upload a batch file: {describe_error(exc)}"
            )
            return
        keys = [q.request.key for q in taken]
        batch = _Batch(
            uploaded.id, keys, {q.request.key: q.request.stage for q in taken}, time.time()
        )
        # Logged before the batch exists: a run killed from here on finds the file again.
        self._log(
            {
                "event": "file",
                "file_id": batch.file_id,
                "endpoint": self._endpoint,
                "requests": [[k, batch.stages[k]] for k in keys],
                "time": batch.uploaded_at,
            }
        )
        self._register(batch)
        for q in taken:
            if not q.assigned.done():
                q.assigned.set_result(batch)
        self.batches_submitted += 1
        self._watch(batch)

    def _fail_queued(self, taken: list[_Queued], message: str) -> None:
        for q in taken:
            if not q.assigned.done():
                q.assigned.set_exception(TeacherError(message))

    def _register(self, batch: _Batch) -> None:
        self._batches[batch.file_id] = batch
        for key in batch.keys:
            self._latest[key] = batch
            self._history.setdefault(key, []).append(batch)

    async def _create(self, batch: _Batch) -> str:
        """Create the batch of an uploaded file once, even when an answer is lost."""
        attempts = self._config.max_retries + 1
        for attempt in range(attempts):
            try:
                created = await self._create_client.batches.create(
                    input_file_id=batch.file_id,
                    endpoint=self._endpoint,  # type: ignore[arg-type]  # one of two literals
                    completion_window="24h",
                    metadata={"selfinstruct_file": batch.file_id},
                )
                return created.id
            except openai.APIError as exc:
                if not is_transient(exc) or attempt + 1 == attempts:
                    raise TeacherError(
                        f"{self._url}: cannot create a batch: {describe_error(exc)}"
                    ) from None
                # The batch may exist although the answer was lost: never create it twice.
                found = await self._find(batch)
                if found is not None:
                    return found
                await asyncio.sleep(random.uniform(0, min(60.0, 0.5 * 2**attempt)))
        raise AssertionError("unreachable")  # pragma: no cover

    async def _find(self, batch: _Batch) -> str | None:
        """Return the id of a batch made of this file, searching recent batches."""
        try:
            async for found in self._client.batches.list(limit=100):
                if found.input_file_id == batch.file_id:
                    return found.id
                if found.created_at < batch.uploaded_at - CLOCK_SLACK:
                    return None  # newest first: anything older predates the upload
        except openai.APIError as exc:
            raise TeacherError(f"{self._url}: cannot list batches: {describe_error(exc)}") from None
        return None

    # -- waiting -------------------------------------------------------------------------

    def _watch(self, batch: _Batch) -> None:
        if batch.ended.is_set() or (batch.watcher is not None and not batch.watcher.done()):
            return
        batch.watcher = asyncio.create_task(self._watch_loop(batch))

    async def _watch_loop(self, batch: _Batch) -> None:
        try:
            fresh = batch.batch_id is None
            if batch.batch_id is None:
                # A run killed between upload and create may or may not have created it.
                found = await self._find(batch) if batch.from_log else None
                batch.batch_id = found or await self._create(batch)
                self._log({"event": "batch", "file_id": batch.file_id, "batch_id": batch.batch_id})
                self._say(f"batch {batch.batch_id}: {len(batch.keys)} requests submitted")
            elif batch.from_log:
                self._say(f"batch {batch.batch_id}: pending from an earlier run; waiting on it")
            await self._poll(batch, first_wait=fresh)
        except asyncio.CancelledError:
            raise  # the run is closing; the batch goes on and is found on resume
        except Exception as exc:
            batch.error = exc
        batch.ended.set()

    async def _poll(self, batch: _Batch, *, first_wait: bool) -> None:
        assert batch.batch_id is not None
        base = self._config.batch_poll_seconds
        interval = base
        errors = 0
        shown = ""
        wait = first_wait
        while True:
            if wait:
                await asyncio.sleep(interval)
                interval = min(interval * 1.5, base * MAX_POLL_FACTOR)
            wait = True
            try:
                found = await self._client.batches.retrieve(batch.batch_id)
            except openai.NotFoundError:
                # Gone (deleted, or another account): its requests go into a new batch.
                batch.status = "lost"
                self._say(f"batch {batch.batch_id}: not found any more; resubmitting")
                self._log_end(batch)
                return
            except openai.APIError as exc:
                errors += 1
                if errors > self._config.max_retries:
                    raise TeacherError(
                        f"{self._url}: cannot check batch {batch.batch_id}: {describe_error(exc)}"
                    ) from None
                continue
            errors = 0
            counts = found.request_counts
            line = found.status + (
                f" {counts.completed + counts.failed}/{counts.total}"
                if counts and counts.total
                else ""
            )
            if line != shown and found.status not in TERMINAL:
                self._say(f"batch {batch.batch_id}: {line}")
                shown = line
            if found.status in TERMINAL:
                break
        batch.status = found.status
        batch.output_file_id = found.output_file_id
        batch.error_file_id = found.error_file_id
        await self._collect(batch)
        self._log_end(batch)
        answered = len(batch.results or {})
        unanswered = len(batch.keys) - answered
        if found.status == "failed":
            details = [e.message for e in (found.errors.data or [])] if found.errors else []
            detail = redact((details[0] or "")[:MAX_MESSAGE]) if details else "no reason given"
            batch.stop_message = (
                f"{self._url}: batch {batch.batch_id} failed: {detail}; "
                "re-run the same command to resubmit its requests"
            )
        elif found.status == "cancelled":
            batch.stop_message = (
                f"{self._url}: batch {batch.batch_id} was cancelled with {unanswered} "
                "requests unanswered; re-run the same command to resubmit them"
            )
        tail = f", {unanswered} unanswered" if unanswered else ""
        self._say(f"batch {batch.batch_id}: {found.status}, {answered} answered{tail}")

    # -- reading results -----------------------------------------------------------------

    async def _collect(self, batch: _Batch) -> None:
        """Download the batch's output and error files once, and sort its answers."""
        async with batch.collecting:
            if batch.results is not None:
                return
            results: dict[str, Completion] = {}
            failures: dict[str, _Failure] = {}
            for file_id in (batch.output_file_id, batch.error_file_id):
                if file_id is None:
                    continue
                try:
                    content = (
                        await self._client.files.content(
                            file_id, timeout=max(self._config.timeout, TRANSFER_TIMEOUT)
                        )
                    ).content
                except openai.NotFoundError:
                    continue  # expired or deleted: its requests are asked again
                except openai.APIError as exc:
                    raise TeacherError(
                        f"{self._url}: cannot download {file_id} of batch {batch.name}: "
                        f"{describe_error(exc)}"
                    ) from None
                for raw in content.splitlines():
                    parsed = self._read_line(raw)
                    if parsed is None:
                        continue  # a damaged line: that request goes into another batch
                    key, outcome = parsed
                    if isinstance(outcome, Completion):
                        results[key] = outcome
                        failures.pop(key, None)
                    elif key not in results:
                        failures[key] = outcome
            batch.results = results
            batch.failures = failures

    def _read_line(self, raw: bytes) -> tuple[str, Completion | _Failure] | None:
        """Turn one output or error line into the request's answer or its failure."""
        try:
            line = json.loads(raw)
            key = str(line["custom_id"])
        except (ValueError, KeyError, TypeError):
            return None
        response = line.get("response") if isinstance(line, dict) else None
        error = line.get("error")
        if isinstance(response, dict):
            status = int(response.get("status_code") or 0)
            body = response.get("body")
            if status == 200 and isinstance(body, dict):
                try:
                    return key, completion_from_json(body, chat=self._config.api == "chat")
                except BadResponse as exc:
                    return key, _Failure(describe_error(exc), refused=True)
            message = ""
            error_object = body.get("error") if isinstance(body, dict) else None
            if isinstance(error_object, dict):
                message = str(error_object.get("message") or "")
            refused = 400 <= status < 500 and status not in STOP_STATUSES
            refused = refused and not is_transient_status(status)
            return key, _Failure(
                describe_status(status, message),
                is_transient_status(status),
                refused,
                error_object if status == 400 else None,
            )
        if isinstance(error, dict):
            code = error.get("code") or "error"
            return key, _Failure(redact(f"{code}: {error.get('message') or ''}".strip()))
        return None

    # -- the batch log -------------------------------------------------------------------

    def _load(self) -> None:
        """Read batches.jsonl once: what an interrupted run submitted and how it ended."""
        if self._loaded:
            return
        self._loaded = True
        by_id: dict[str, _Batch] = {}
        other_api: set[str] = set()
        valid = 0
        for number, line, end in read_lines(self._path):
            valid = end
            try:
                entry = json.loads(line)
                event = entry["event"]
                if entry.get("lane") != self._lane:
                    continue
                if event == "file":
                    if entry["endpoint"] != self._endpoint:
                        # Made for the other API (the run switched): its answers would not
                        # parse here, so its requests are asked again.
                        other_api.add(str(entry["file_id"]))
                        continue
                    pairs = [(str(k), str(s)) for k, s in entry["requests"]]
                    batch = _Batch(
                        str(entry["file_id"]),
                        [k for k, _ in pairs],
                        dict(pairs),
                        float(entry["time"]),
                        from_log=True,
                    )
                    self._register(batch)
                elif event == "batch":
                    if str(entry["file_id"]) in other_api:
                        other_api.add(str(entry["batch_id"]))
                        continue
                    batch = self._batches[str(entry["file_id"])]
                    batch.batch_id = str(entry["batch_id"])
                    by_id[batch.batch_id] = batch
                elif event == "end":
                    if str(entry["batch_id"]) in other_api:
                        continue
                    batch = by_id[str(entry["batch_id"])]
                    batch.status = str(entry["status"])
                    batch.output_file_id = entry.get("output_file_id")
                    batch.error_file_id = entry.get("error_file_id")
                    batch.ended.set()
            except (ValueError, KeyError, TypeError) as exc:
                field_name = exc.args[0] if isinstance(exc, KeyError) else "(line)"
                raise RunDirError(
                    f"{self._path}:{number}: field '{field_name}': invalid batch record"
                ) from None
        if self._path.exists() and valid < self._path.stat().st_size:
            os.truncate(self._path, valid)  # a torn last line from a crash mid-write
        pending = [b for b in self._batches.values() if not b.ended.is_set()]
        if pending:
            self._say(f"resuming: {len(pending)} batches of an earlier run still pending")

    def _log(self, entry: dict[str, Any]) -> None:
        if self._log_fh is None:
            self._log_fh = open(self._path, "ab")
        entry = {**entry, "time": entry.get("time", time.time())}
        if self._lane is not None:
            entry["lane"] = self._lane
        # ASCII escapes: a server's message may hold a lone surrogate, which UTF-8 cannot encode.
        self._log_fh.write(json.dumps(entry).encode() + b"\n")
        self._log_fh.flush()
        os.fsync(self._log_fh.fileno())

    def _log_end(self, batch: _Batch) -> None:
        usage: dict[str, list[int]] = {}
        for key, completion in (batch.results or {}).items():
            entry = usage.setdefault(batch.stages.get(key, "unknown"), [0, 0, 0])
            entry[0] += 1
            entry[1] += completion.usage.prompt_tokens
            entry[2] += completion.usage.completion_tokens
        self._log(
            {
                "event": "end",
                "batch_id": batch.batch_id,
                "status": batch.status,
                "output_file_id": batch.output_file_id,
                "error_file_id": batch.error_file_id,
                "answered": len(batch.results or {}),
                "failed": len(batch.keys) - len(batch.results or {}),
                "usage": usage,
            }
        )

    def _say(self, message: str) -> None:
        if self._notify is not None:
            self._notify(message)


def pending_batches(run: Path) -> int:
    """Count the batches in a run's batches.jsonl that have not ended (0 without one)."""
    started: set[tuple[str, str]] = set()  # (lane, id): each lane has its own ids
    ended: set[tuple[str, str]] = set()
    for _, line, _ in read_lines(run / BATCHES):
        try:
            entry = json.loads(line)
            lane = str(entry.get("lane"))
            if entry.get("event") == "file":
                started.add((lane, str(entry["file_id"])))
            elif entry.get("event") == "batch":
                started.discard((lane, str(entry["file_id"])))
                started.add((lane, str(entry["batch_id"])))
            elif entry.get("event") == "end":
                ended.add((lane, str(entry["batch_id"])))
        except (ValueError, KeyError, TypeError, AttributeError):
            continue  # a warning's count: a damaged record only makes it rough
    return len(started - ended)
