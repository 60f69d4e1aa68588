"""The Batch API mode: the loopback server's Files and Batch APIs, and --batch-api end to end.

Everything goes over real HTTP to OpenAITestServer with the real openai client; resume is
tested by SIGKILLing a real bootstrap process while its batch is pending.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from conftest import SHORT_WINDOW, bootstrap_args, cli_env, machine_example_prompts, run_cli
from openai.types import Completion as OpenAICompletion
from openai.types.chat import ChatCompletion

from selfinstruct.backends.base import RequestRefused, SendsHeld
from selfinstruct.backends.batch_api import BATCHES, BatchAPIBackend, request_body
from selfinstruct.config import RunConfig, TeacherConfig
from selfinstruct.errors import TeacherError
from selfinstruct.records import Request, SamplingParams
from selfinstruct.testing.server import BatchPlan, OpenAITestServer, Reply, echo_text
from selfinstruct.testing.teacher import SyntheticTeacher

TERMINAL = ("completed", "failed", "expired", "cancelled")


@pytest.fixture
def server() -> Iterator[OpenAITestServer]:
    with OpenAITestServer(batch_delay=0.2) as srv:
        yield srv


@pytest.fixture
def client(server: OpenAITestServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=0) as c:
        yield c


def _line(custom_id: str, prompt: str, url: str = "/v1/completions", **body: Any) -> bytes:
    payload: dict[str, Any] = {"model": "test-model", **body}
    if url == "/v1/chat/completions":
        payload["messages"] = [{"role": "user", "content": prompt}]
    else:
        payload["prompt"] = prompt
    line = {"custom_id": custom_id, "method": "POST", "url": url, "body": payload}
    return json.dumps(line).encode() + b"\n"


def _submit(client: openai.OpenAI, data: bytes, endpoint: str = "/v1/completions") -> str:
    uploaded = client.files.create(file=("in.jsonl", data, "application/jsonl"), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint=endpoint,  # type: ignore[arg-type]  # a str parameter of a test helper
        completion_window="24h",
    )
    assert batch.status == "validating"
    return batch.id


def _wait(client: openai.OpenAI, batch_id: str) -> tuple[openai.types.Batch, list[str]]:
    """Poll until the batch ends; return it and the statuses seen on the way."""
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        batch = client.batches.retrieve(batch_id)
        if not seen or seen[-1] != batch.status:
            seen.append(batch.status)
        if batch.status in TERMINAL:
            return batch, seen
        time.sleep(0.02)
    raise AssertionError(f"batch {batch_id} never ended ({seen})")


def _lines(client: openai.OpenAI, file_id: str | None) -> dict[str, dict[str, Any]]:
    if file_id is None:
        return {}
    content = client.files.content(file_id).content
    return {entry["custom_id"]: entry for entry in map(json.loads, content.splitlines())}


# -- the server's Files API ------------------------------------------------------------


def test_file_upload_retrieve_content_delete(client: openai.OpenAI) -> None:
    data = _line("a", "one") + _line("b", "two")
    uploaded = client.files.create(file=("in.jsonl", data, "application/jsonl"), purpose="batch")
    assert uploaded.object == "file"
    assert uploaded.purpose == "batch"
    assert uploaded.bytes == len(data)
    assert uploaded.filename == "in.jsonl"
    assert uploaded.id.startswith("file-")
    assert client.files.retrieve(uploaded.id) == uploaded
    assert client.files.content(uploaded.id).content == data
    deleted = client.files.delete(uploaded.id)
    assert deleted.deleted and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)


def test_file_upload_needs_a_known_purpose(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.files.create(file=("x.jsonl", b"{}\n"), purpose="nonsense")  # type: ignore[arg-type]


# -- the server's Batch API ------------------------------------------------------------


def test_batch_answers_every_line_through_the_handler(
    server: OpenAITestServer, client: openai.OpenAI
) -> None:
    server.push_batch_plans(BatchPlan(delay=1.5))  # long enough to see it in progress
    prompts = {"x": "first prompt", "y": "second prompt here", "z": "third"}
    batch_id = _submit(client, b"".join(_line(k, p, max_tokens=50) for k, p in prompts.items()))
    batch, seen = _wait(client, batch_id)
    assert "in_progress" in seen and seen[-1] == "completed"  # created as "validating"
    assert batch.request_counts is not None
    assert (batch.request_counts.total, batch.request_counts.completed) == (3, 3)
    assert batch.error_file_id is None
    assert batch.completed_at is not None and batch.in_progress_at is not None
    out = _lines(client, batch.output_file_id)
    assert set(out) == set(prompts)
    for key, prompt in prompts.items():
        assert out[key]["id"].startswith("batch_req_") and out[key]["error"] is None
        response = out[key]["response"]
        assert response["status_code"] == 200
        completion = OpenAICompletion.model_validate(response["body"])
        assert completion.choices[0].text == echo_text(prompt)
        assert completion.usage is not None and completion.usage.prompt_tokens > 0
    assert client.files.retrieve(batch.output_file_id or "").purpose == "batch_output"
    (recorded,) = server.batches
    assert recorded.id == batch_id and recorded.status == "completed"
    assert recorded.custom_ids == ("x", "y", "z")
    assert sorted(r.prompt for r in server.batch_requests) == sorted(prompts.values())
    assert server.requests == []  # batch lines are not direct requests


def test_chat_batch_lines_are_chat_completions(client: openai.OpenAI) -> None:
    url = "/v1/chat/completions"
    batch_id = _submit(client, _line("c", "Write one task.", url), endpoint=url)
    batch, _ = _wait(client, batch_id)
    body = _lines(client, batch.output_file_id)["c"]["response"]["body"]
    chat = ChatCompletion.model_validate(body)
    assert chat.choices[0].message.content == echo_text("Write one task.")


def test_line_errors_go_to_the_error_file(server: OpenAITestServer, client: openai.OpenAI) -> None:
    server.push_batch_plans(BatchPlan(line_faults={1: Reply.server_error(503)}))
    bad = json.dumps(
        {"custom_id": "c", "method": "POST", "url": "/v1/completions", "body": {"prompt": "x"}}
    ).encode()
    batch_id = _submit(client, _line("a", "fine") + _line("b", "faulted") + bad + b"\n")
    batch, _ = _wait(client, batch_id)
    assert batch.status == "completed"
    assert batch.request_counts is not None
    assert (batch.request_counts.completed, batch.request_counts.failed) == (1, 2)
    assert set(_lines(client, batch.output_file_id)) == {"a"}
    errors = _lines(client, batch.error_file_id)
    assert errors["b"]["response"]["status_code"] == 503
    assert errors["c"]["response"]["status_code"] == 400
    assert "model" in errors["c"]["response"]["body"]["error"]["message"]


def test_expired_batch_lists_unanswered_lines_as_expired(
    server: OpenAITestServer, client: openai.OpenAI
) -> None:
    server.push_batch_plans(BatchPlan(outcome="expired", answered_lines=1))
    batch_id = _submit(client, _line("a", "one") + _line("b", "two") + _line("c", "three"))
    batch, _ = _wait(client, batch_id)
    assert batch.status == "expired" and batch.expired_at is not None
    assert set(_lines(client, batch.output_file_id)) == {"a"}
    errors = _lines(client, batch.error_file_id)
    assert set(errors) == {"b", "c"}
    assert errors["b"]["response"] is None
    assert errors["b"]["error"]["code"] == "batch_expired"


def test_invalid_input_file_fails_validation_with_line_numbers(client: openai.OpenAI) -> None:
    data = _line("a", "one") + _line("b", "two", url="/v1/chat/completions") + _line("a", "x")
    batch, _ = _wait(client, _submit(client, data))
    assert batch.status == "failed" and batch.failed_at is not None
    assert batch.errors is not None and batch.errors.data is not None
    assert [(e.line, e.param) for e in batch.errors.data] == [(2, "url"), (3, "custom_id")]
    assert batch.output_file_id is None


def test_cancel_ends_a_batch_as_cancelled(server: OpenAITestServer, client: openai.OpenAI) -> None:
    server.push_batch_plans(BatchPlan(delay=30.0))
    batch_id = _submit(client, _line("a", "one") + _line("b", "two"))
    cancelling = client.batches.cancel(batch_id)
    assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
    batch, _ = _wait(client, batch_id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    errors = _lines(client, batch.error_file_id)
    assert {e["error"]["code"] for e in errors.values()} == {"batch_cancelled"}


def test_batch_list_is_newest_first_and_paginates(client: openai.OpenAI) -> None:
    ids = [_submit(client, _line("a", str(n))) for n in range(3)]
    page = client.batches.list(limit=2)
    assert [b.id for b in page.data] == ids[:0:-1] and page.has_more
    assert [b.id for b in client.batches.list(limit=2)] == ids[::-1]  # auto-paging


def test_batch_create_errors(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.batches.create(
            input_file_id="file-missing", endpoint="/v1/completions", completion_window="24h"
        )
    tuning = client.files.create(file=("t.jsonl", b"{}\n"), purpose="fine-tune")
    with pytest.raises(openai.BadRequestError, match="purpose"):
        client.batches.create(
            input_file_id=tuning.id, endpoint="/v1/completions", completion_window="24h"
        )
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_missing")


# -- the backend, in process -----------------------------------------------------------


def _requests(n: int) -> list[Request]:
    params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=20)
    return [
        Request(f"r0/p{i}/instructions/k{i}", "instructions", f"prompt {i}", params)
        for i in range(n)
    ]


def _complete(server: OpenAITestServer, tmp_path: Path, requests: list[Request]) -> list[str]:
    config = TeacherConfig(
        base_urls=[server.base_url],
        model="test-model",
        batch_poll_seconds=0.05,
        batch_quiet_seconds=0.05,
        max_retries=1,
    )

    async def go() -> list[str]:
        backend = BatchAPIBackend(config, "k", tmp_path)
        try:
            return [c.text for c in await backend.complete(requests)]
        finally:
            await backend.aclose()

    return asyncio.run(go())


def test_held_requests_still_queued_for_a_batch_are_never_submitted(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    # The run reached its target (or was stopped) while requests waited for the queue's
    # quiet window: they fail with SendsHeld, no batch is uploaded for them, and a request
    # queued after the hold is refused the same way.
    config = TeacherConfig(base_urls=[server.base_url], model="test-model", batch_quiet_seconds=5)

    async def go() -> tuple[list[BaseException | list[Any]], BaseException | None]:
        backend = BatchAPIBackend(config, "k", tmp_path)
        try:
            waiting = [asyncio.ensure_future(backend.complete([r])) for r in _requests(3)]
            await asyncio.sleep(0.1)  # each is queued, within the quiet window
            backend.hold()
            results = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), 5)
            late: BaseException | None = None
            try:
                await asyncio.wait_for(backend.complete(_requests(1)), 5)
            except SendsHeld as exc:
                late = exc
            return results, late
        finally:
            await backend.aclose()

    results, late = asyncio.run(go())
    assert all(isinstance(r, SendsHeld) for r in results), results
    assert isinstance(late, SendsHeld)
    assert server.batches == [] and _uploads(tmp_path) == 0


def _uploads(run_path: Path) -> int:
    """Return how many batch input files the backend recorded uploading."""
    log = run_path / BATCHES
    lines = log.read_text().splitlines() if log.exists() else []
    return sum(json.loads(line)["event"] == "file" for line in lines)


def test_failed_lines_are_retried_in_a_later_batch(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    server.push_batch_plans(BatchPlan(line_faults={0: Reply.server_error(500)}))
    requests = _requests(3)
    texts = _complete(server, tmp_path, requests)
    assert texts == [echo_text(r.prompt) for r in requests]
    first, second = server.batches
    assert first.custom_ids == tuple(r.key for r in requests)
    assert second.custom_ids == (requests[0].key,)
    log = [json.loads(line) for line in (tmp_path / BATCHES).read_text().splitlines()]
    assert [e["event"] for e in log] == ["file", "batch", "end", "file", "batch", "end"]
    assert [e["answered"] for e in log if e["event"] == "end"] == [2, 1]


def test_expired_batch_resubmits_only_what_is_missing(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    server.push_batch_plans(BatchPlan(outcome="expired", answered_lines=2))
    requests = _requests(5)
    assert _complete(server, tmp_path, requests) == [echo_text(r.prompt) for r in requests]
    first, second = server.batches
    assert first.status == "expired"
    assert second.custom_ids == tuple(r.key for r in requests[2:])
    assert Counter(r.prompt for r in server.batch_requests) == Counter(r.prompt for r in requests)


def test_a_line_failing_in_every_batch_stops_with_its_error(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    server.push_batch_plans(*[BatchPlan(line_faults={0: Reply.server_error(502)})] * 3)
    with pytest.raises(TeacherError, match=r"r0/p0/instructions/k0 failed .*HTTP 502.*3 batches"):
        _complete(server, tmp_path, _requests(1))
    assert len(server.batches) == 3


def test_a_refused_line_is_not_retried(server: OpenAITestServer, tmp_path: Path) -> None:
    # A refusal of one request (a content filter's 400) is the engine's to record and skip.
    server.push_batch_plans(BatchPlan(line_faults={0: Reply(status=400, text="bad prompt")}))
    with pytest.raises(RequestRefused, match="HTTP 400: bad prompt"):
        _complete(server, tmp_path, _requests(2))
    assert len(server.batches) == 1


def test_a_refused_line_is_described_as_the_direct_backend_does(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    # A proxy that echoes the request's headers: the key never reaches the message, and a
    # long body is cut, exactly as the direct backend reports its errors (openai_wire).
    echoed = "rejected; headers: Authorization: Bearer gsk_Secret0123456789 " + "x" * 2000
    server.push_batch_plans(BatchPlan(line_faults={0: Reply(status=400, text=echoed)}))
    with pytest.raises(RequestRefused) as info:
        _complete(server, tmp_path, _requests(1))
    message = str(info.value)
    assert "HTTP 400: rejected; headers: Authorization: Bearer [redacted]" in message
    assert "gsk_Secret" not in message
    assert len(message) < 500


def test_a_failed_batch_stops_with_the_reason(server: OpenAITestServer, tmp_path: Path) -> None:
    server.push_batch_plans(BatchPlan(outcome="failed", message="model not found"))
    with pytest.raises(TeacherError, match="failed: model not found; re-run"):
        _complete(server, tmp_path, _requests(2))


def test_a_lost_create_reply_does_not_make_a_second_batch(
    server: OpenAITestServer, tmp_path: Path
) -> None:
    server.push_batch_plans(BatchPlan(drop_create_reply=True))
    requests = _requests(2)
    assert _complete(server, tmp_path, requests) == [echo_text(r.prompt) for r in requests]
    assert len(server.batches) == 1


@pytest.mark.parametrize("created", [False, True], ids=["not-created", "created"])
def test_resume_after_an_upload_finds_or_creates_its_batch(
    server: OpenAITestServer, client: openai.OpenAI, tmp_path: Path, created: bool
) -> None:
    requests = _requests(3)
    config = TeacherConfig(model="test-model")
    data = b"".join(
        json.dumps(
            {
                "custom_id": r.key,
                "method": "POST",
                "url": "/v1/completions",
                "body": request_body(config, r),
            }
        ).encode()
        + b"\n"
        for r in requests
    )
    uploaded = client.files.create(file=("in.jsonl", data, "application/jsonl"), purpose="batch")
    if created:
        client.batches.create(
            input_file_id=uploaded.id, endpoint="/v1/completions", completion_window="24h"
        )
    # What a run killed before it logged the batch id leaves behind, with a torn last line.
    record = {
        "event": "file",
        "file_id": uploaded.id,
        "endpoint": "/v1/completions",
        "requests": [[r.key, r.stage] for r in requests],
        "time": time.time(),
    }
    (tmp_path / BATCHES).write_bytes(json.dumps(record).encode() + b'\n{"event": "bat')
    assert _complete(server, tmp_path, requests) == [echo_text(r.prompt) for r in requests]
    assert len(server.batches) == 1
    log = [json.loads(line) for line in (tmp_path / BATCHES).read_text().splitlines()]
    assert [e["event"] for e in log] == ["file", "batch", "end"]


# -- the CLI, end to end ---------------------------------------------------------------


def _bootstrap_args(server: OpenAITestServer, out: Path, target: int, *extra: str) -> list[str]:
    config = out.parent / f"{out.name}.toml"
    # Short waits keep the test quick; the defaults suit a real API (minutes to hours).
    # A one-round window: most rounds' prompts show machine tasks, so the Batch API run
    # must reproduce pool-dependent prompts too.
    config.write_text(SHORT_WINDOW + "[teacher]\nbatch_quiet_seconds = 0.3\n")
    # Not quiet: the tests read the batch notes printed above the progress line.
    extra = ("--target", str(target), "--config", str(config), *extra)
    return bootstrap_args(server, out, *extra, quiet=False)


def _batch_args(server: OpenAITestServer, out: Path, target: int) -> list[str]:
    return _bootstrap_args(server, out, target, "--batch-api", "--batch-poll-seconds", "0.1")


def _logged_keys(out: Path) -> list[str]:
    return [json.loads(line)["key"] for line in (out / "responses.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("api", ["completions", "chat"])
def test_bootstrap_with_batch_api_matches_direct_requests(tmp_path: Path, api: str) -> None:
    target = 60
    with OpenAITestServer(SyntheticTeacher(), batch_delay=0.2) as server:
        direct = run_cli(*_bootstrap_args(server, tmp_path / "direct", target, "--api", api))
        assert direct.returncode == 0, direct.stderr
        direct_requests = len(server.requests)
        assert machine_example_prompts(server.requests, tmp_path / "direct") > 0
        done = run_cli(*_batch_args(server, tmp_path / "batch", target), "--api", api)
        assert done.returncode == 0, done.stderr
        assert len(server.requests) == direct_requests, "--batch-api sent direct requests"
        batches = server.batches
    out = tmp_path / "batch"
    assert len(batches) >= 3  # instructions, classification, instances
    # The first batch carries the whole first window's instruction requests.
    defaults = RunConfig(lookahead=1)
    window = defaults.lookahead + 1
    first = batches[0].custom_ids
    assert len(first) == window * defaults.prompts_per_round
    assert {k.split("/")[0] for k in first} == {f"r{n}" for n in range(window)}
    assert all("/instructions/" in k for k in first)
    assert {b.endpoint for b in batches} == {f"/v1/{'chat/' if api == 'chat' else ''}completions"}
    assert all(b.status == "completed" for b in batches)
    carried = Counter(k for b in batches for k in b.custom_ids)
    assert max(carried.values()) == 1, "a request went into two batches"
    logged = _logged_keys(out)
    assert len(logged) == len(set(logged)) and set(logged) <= set(carried)
    # The same answers make the same dataset, however they were fetched.
    assert (out / "pool.jsonl").read_bytes() == (tmp_path / "direct" / "pool.jsonl").read_bytes()
    assert json.loads((out / "state.json").read_text())["accepted"] >= target
    assert f"{len(batches[0].custom_ids)} requests submitted" in done.stderr

    status = run_cli("status", "--out", str(out), "--price-in", "1", "--price-out", "1")
    assert status.returncode == 0, status.stderr
    usage = json.loads((out / "state.json").read_text())["usage"]
    tokens = sum(u["prompt_tokens"] + u["completion_tokens"] for u in usage.values())
    assert f"cost       {tokens / 1e6 / 2:.2f} USD" in status.stdout
    answered = sum(len(b.answered) for b in batches)
    assert f"batch API  {answered} requests answered at half price\n" in status.stdout


def _wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def _pending_batch(out: Path) -> str | None:
    """Return the id of a batch logged as created but not ended, if any."""
    path = out / BATCHES
    if not path.exists():
        return None
    created, ended = [], set()
    for line in path.read_bytes().split(b"\n")[:-1]:
        entry = json.loads(line)
        if entry["event"] == "batch":
            created.append(entry["batch_id"])
        elif entry["event"] == "end":
            ended.add(entry["batch_id"])
    pending = [b for b in created if b not in ended]
    return pending[-1] if pending else None


def test_killed_run_waits_on_its_pending_batch_instead_of_resubmitting(tmp_path: Path) -> None:
    target = 60
    # Slow batches, so the kill lands while one is pending at the server.
    with OpenAITestServer(SyntheticTeacher(), batch_delay=2.5) as server:
        reference = run_cli(*_bootstrap_args(server, tmp_path / "direct", target))
        assert reference.returncode == 0, reference.stderr
        direct_requests = len(server.requests)
        assert machine_example_prompts(server.requests, tmp_path / "direct") > 0
        out = tmp_path / "batch"
        killed: list[str] = []
        for _ in range(2):  # kill in the first batch, then in a later one
            proc = subprocess.Popen(
                [sys.executable, "-m", "selfinstruct", *_batch_args(server, out, target)],
                env=cli_env(),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            _wait_for(lambda: (b := _pending_batch(out)) is not None and b not in killed)
            batch_id = _pending_batch(out)
            assert batch_id is not None
            proc.send_signal(signal.SIGKILL)
            proc.communicate(timeout=30)
            assert proc.returncode == -signal.SIGKILL
            (state,) = [b.status for b in server.batches if b.id == batch_id]
            assert state in ("validating", "in_progress"), "the kill came too late"
            killed.append(batch_id)
        resumed = run_cli(*_batch_args(server, out, target))
        assert resumed.returncode == 0, resumed.stderr
        assert f"batch {killed[-1]}: pending from an earlier run" in resumed.stderr
        batches = server.batches
        answered = Counter(k for b in batches for k in b.answered)
        assert len(server.requests) == direct_requests, "--batch-api sent direct requests"

    carried = Counter(k for b in batches for k in b.custom_ids)
    assert max(carried.values()) == 1, "a request was resubmitted after the kill"
    assert max(answered.values()) == 1, "a request was answered twice"
    logged = set(_logged_keys(out))
    for batch_id in killed:
        (batch,) = [b for b in batches if b.id == batch_id]
        assert batch.status == "completed"
        assert set(batch.custom_ids) <= logged, "the pending batch's answers were not used"
    assert (out / "pool.jsonl").read_bytes() == (tmp_path / "direct" / "pool.jsonl").read_bytes()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--backend", "local"], "--batch-api is for --backend openai, not local"),
        ([], "OPENAI_API_KEY is not set"),
    ],
)
def test_batch_api_without_an_api_is_one_line(
    tmp_path: Path, extra: list[str], message: str
) -> None:
    done = run_cli("bootstrap", "--batch-api", "--out", str(tmp_path / "run"), *extra)
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and message in done.stderr
    assert not (tmp_path / "run").exists()


def test_batch_api_needs_a_server_that_has_it(tmp_path: Path) -> None:
    with OpenAITestServer() as server:
        done = run_cli(
            "bootstrap",
            "--batch-api",
            "--base-url",
            server.url + "/elsewhere/v1",
            "--out",
            str(tmp_path / "run"),
            "--target",
            "5",
        )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "offers no Batch API" in done.stderr
    assert not (tmp_path / "run").exists()


def _cost_line(status: str) -> float:
    line = next(x for x in status.splitlines() if x.startswith("cost "))
    return float(line.split()[1])


def test_max_cost_status_and_report_price_batch_answers_at_half(tmp_path: Path) -> None:
    # Batches of two requests, two in flight: the budget is checked every couple of answers.
    toml = tmp_path / "run.toml"
    toml.write_text("[teacher]\nbatch_max_requests = 2\nbatch_quiet_seconds = 0.02\n")
    out = tmp_path / "run"
    prices = ("--price-in", "1000", "--price-out", "1000")
    with OpenAITestServer(SyntheticTeacher(), batch_delay=0.02) as server:
        args = bootstrap_args(server, out, "--target", "200", "--prompts-per-round", "1")
        done = run_cli(
            *args,
            *("--batch-api", "--batch-poll-seconds", "0.02", "--concurrency", "2"),
            *("--config", str(toml), "--max-cost", "10", *prices),
        )
    assert done.returncode == 3, done.stderr
    assert "budget spent" in done.stderr and "--max-cost 10.00" in done.stderr
    usage = json.loads((out / "state.json").read_text())["usage"]
    tokens = sum(u["prompt_tokens"] + u["completion_tokens"] for u in usage.values())
    # Every answer came through a batch, at half the list price; the budget counts it so,
    # rather than stopping at half the spend asked for (4 answers at most past the limit).
    status = run_cli("status", "--out", str(out), *prices)
    assert status.returncode == 0, status.stderr
    spent = _cost_line(status.stdout)
    assert spent == pytest.approx(tokens * 1000 / 1e6 / 2, abs=0.01)
    assert 10 <= spent < 12
    # The report prices the same answers the same way.
    report = run_cli("report", str(out), "--parser", "heuristic", *prices)
    assert report.returncode == 0, report.stderr
    page = (out / "report" / "report.html").read_text(encoding="utf-8")
    assert f"{spent:.2f} USD at 1000 / 1000 USD per million tokens" in page
