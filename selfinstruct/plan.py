"""What `bootstrap --dry-run` shows: the plan, one prompt of each kind, and an estimate.

A dry run reads the run directory when it exists (its commit record and pool, for the
prompts the next round would send and for the rates observed so far) but never writes to
it, takes no lock and sends no request: its teacher cannot send.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from selfinstruct.backends.base import Backend
from selfinstruct.backends.openai_wire import DEFAULT_BASE_URL
from selfinstruct.config import RunConfig, keep_stored_defaults
from selfinstruct.costs import (
    Price,
    batch_usage,
    config_price,
    config_stage_prices,
    price_usage,
    usd,
)
from selfinstruct.engine import Bootstrap
from selfinstruct.pricing import BATCH_PRICE_FACTOR
from selfinstruct.prompts import load_prompts
from selfinstruct.records import CHARS_PER_TOKEN, Completion, Request, Stage
from selfinstruct.runner import resolve, run_header
from selfinstruct.seeds import SeedSet, load_seeds
from selfinstruct.store import CONFIG, RunDir, State, read_state, stored_identity

# Requests per accepted task, by stage, before any run has been observed. Measured with
# `python benchmarks/estimate_defaults.py` on the bundled synthetic teacher (a 1,000-task
# run per mode at the default settings; benchmarks/results/estimate_defaults-bcbc1a1.txt):
# a real teacher's rates differ, so a dry run says
# when it uses these, and a small first run (`--target 50`) gives measured ones. The
# Self-Instruct paper reports the 52,445 tasks (82,439 instances) it kept, not how many
# candidates it generated, so it gives no acceptance rate to start from.
DEFAULT_REQUESTS_PER_TASK: dict[str, dict[Stage, float]] = {
    "self-instruct": {"instructions": 0.175, "classify": 1.091, "instances": 1.055},
    "alpaca": {"instructions": 0.188},
}

STAGES: tuple[Stage, ...] = ("instructions", "classify", "instances", "judge")
# With --judge: one verdict per accepted task, plus a second ask for each unreadable one
# (the bundled synthetic teacher's rate, judge_garbage_rate, is 0.05).
JUDGE_REQUESTS_PER_TASK = 1.05
# Completion tokens of a verdict: "Score: N", a newline and one sentence of about 20 words.
JUDGE_COMPLETION_TOKENS = 30.0


class _NoTeacher(Backend):
    """A teacher for dry runs: it refuses to answer, so nothing can be sent by mistake."""

    async def complete(self, requests: Sequence[Request]) -> list[Completion]:
        """Refuse: a dry run sends nothing."""
        raise AssertionError("a dry run sends no request")


@dataclass(frozen=True)
class StageEstimate:
    """What one stage will take to reach the target."""

    stage: Stage
    requests: float
    prompt_tokens: float
    completion_tokens: float


def _tokens(text: str) -> float:
    return len(text) / CHARS_PER_TOKEN


def _default_sizes(
    config: RunConfig, seeds: SeedSet, previews: Sequence[Request]
) -> dict[Stage, tuple[float, float]]:
    """Return (prompt, completion) tokens per request by stage, from this run's own prompts.

    Prompt sizes are the rendered prompts'; completion sizes assume the teacher writes
    what its examples look like: new_per_prompt seed-sized tasks, a one-token yes/no, and
    seed-sized instances, each capped by its request's token limit.
    """
    by_stage: dict[Stage, list[Request]] = {}
    for request in previews:
        by_stage.setdefault(request.stage, []).append(request)
    tasks = seeds.tasks
    n = max(len(tasks), 1)
    if config.mode == "alpaca":
        # "### Task N", "Instruction:", "Input:", "Output:" lines around each task.
        per_task = sum(
            len(t.instruction) + len(t.instances[0].input) + len(t.instances[0].output) + 40
            for t in tasks
        )
    else:
        per_task = sum(len(t.instruction) + 4 for t in tasks)  # "17. " and a newline
    listing = config.new_per_prompt * per_task / n / CHARS_PER_TOKEN
    instances = (
        sum(sum(len(i.input) + len(i.output) + 20 for i in t.instances) for t in tasks)
        / n
        / CHARS_PER_TOKEN
    )
    completion: dict[Stage, float] = {
        "instructions": min(listing, config.teacher.instruction_sampling()[3]),
        "classify": min(1.0, config.teacher.classify_max_tokens),
        "instances": min(instances, config.teacher.instances_max_tokens),
        "judge": min(JUDGE_COMPLETION_TOKENS, config.judge.max_tokens),
    }
    sizes: dict[Stage, tuple[float, float]] = {}
    for stage, requests in by_stage.items():
        prompt = sum(_tokens(r.prompt) for r in requests) / len(requests)
        sizes[stage] = (prompt, completion[stage])
    return sizes


def estimate(
    config: RunConfig, state: State | None, seeds: SeedSet, previews: Sequence[Request]
) -> tuple[str, list[StageEstimate]]:
    """Return how the estimate was made and what each stage will take to reach the target."""
    accepted = state.accepted if state is not None else 0
    remaining = max(config.target - accepted, 0)
    usage = state.usage if state is not None else {}
    if accepted > 0 and usage:
        requests = sum(u.requests for u in usage.values())
        basis = (
            f"rates observed in this run ({accepted:,} tasks from {requests:,} requests); "
            "novelty rejections grow with the pool, so later tasks cost somewhat more"
        )
        rows = [
            StageEstimate(
                stage,
                remaining * usage[stage].requests / accepted,
                remaining * usage[stage].prompt_tokens / accepted,
                remaining * usage[stage].completion_tokens / accepted,
            )
            for stage in STAGES
            if stage in usage
        ]
        return basis, rows
    basis = (
        "defaults: requests per task measured on the bundled synthetic teacher, tokens per "
        f"request from these prompts at {CHARS_PER_TOKEN} characters per token; a real "
        "teacher differs: run a small --target first for an estimate from observed rates"
    )
    sizes = _default_sizes(config, seeds, previews)
    rows = []
    per_stage = dict(DEFAULT_REQUESTS_PER_TASK[config.mode])
    if config.judge.enabled:
        per_stage["judge"] = JUDGE_REQUESTS_PER_TASK
    for stage, per_task in per_stage.items():
        prompt, completion = sizes[stage]
        n = remaining * per_task
        rows.append(StageEstimate(stage, n, n * prompt, n * completion))
    return basis, rows


def _preview_label(config: RunConfig, request: Request, index: int) -> str:
    p = request.params
    what = {
        "instructions": "new tasks" if config.mode == "alpaca" else "new instructions",
        "classify": "is it a classification task? (shown for a seed instruction)",
        "instances": "instances, "
        + ("output-first" if "Label:" in request.prompt else "input-first")
        + " (shown for a seed instruction)",
        "judge": "rate the task from 1 to 5 (shown for a seed task)",
    }[request.stage]
    stops = ", ".join(repr(s) for s in p.stop)
    return (
        f"prompt {index}: {request.stage}: {what}\n"
        f"  temperature {p.temperature}, top_p {p.top_p}, max_tokens {p.max_tokens}, "
        f"presence_penalty {p.presence_penalty}, stop [{stops}]"
    )


def _number(value: float) -> str:
    return f"{round(value):,}"


def _teacher_line(config: RunConfig, name: str) -> str:
    """Say where requests would go, as the run would send them."""
    teacher = config.teacher
    if name == "local":
        return f"in-process llama.cpp ({teacher.model_path})"
    if name == "vllm":
        layout = (
            f"tensor {teacher.tensor_parallel_size} x pipeline {teacher.pipeline_parallel_size}"
            f" GPUs per replica, {teacher.data_parallel_size} replica(s)"
        )
        return f"in-process vLLM on this machine ({layout})"
    urls = ", ".join(teacher.base_urls) or DEFAULT_BASE_URL
    if name == "batch-api":
        return f"{urls} through the Batch API (half price, answers within 24 hours)"
    return urls


def dry_run_report(config: RunConfig, env: Mapping[str, str]) -> str:
    """Check a bootstrap command and describe what it would do, touching nothing."""
    config, backend_name = resolve(config, env)  # exactly as the run resolves it
    seeds = load_seeds(config.seeds, language=config.language)
    prompt_set = load_prompts(config.prompts, language=config.language, judge=config.judge.enabled)
    teacher = config.teacher
    out: Path = config.out
    exists = (out / CONFIG).exists()
    run = RunDir(out)  # never opened: no lock, no write
    state = read_state(out) if exists else None
    if exists:  # refused as a run would be
        keep_stored_defaults(config, stored_identity(out))  # as a real run does
        run.check_identity(run_header(config, backend_name, seeds, prompt_set))
    if state is not None:
        run.state = state
    engine = Bootstrap(config, _NoTeacher(), run, seeds, prompt_set)
    previews = engine.preview()

    lines = ["dry run: nothing is sent, nothing is written", ""]
    accepted = state.accepted if state is not None else 0
    where = (
        f"{out} (exists: {accepted:,} tasks, {state.rounds_committed:,} rounds committed)"
        if state is not None
        else f"{out} ({'exists, no commit record' if exists else 'new'})"
    )
    endpoints = _teacher_line(config, backend_name)
    price = config_price(config)
    # What is still to be asked goes through the Batch API at its price when the run does.
    factor = BATCH_PRICE_FACTOR if backend_name == "batch-api" else 1.0
    price_text = (
        f"{price[0]} / {price[1]} USD per million tokens in/out"
        + (f", x{factor:g} through the Batch API" if factor != 1.0 else "")
        if price is not None
        else "unknown: pass --price-in and --price-out for costs"
    )
    budget = config.budget
    limits = [f"{budget.max_cost:.2f} USD"] if budget.max_cost is not None else []
    if budget.max_tokens is not None:
        limits.append(f"{budget.max_tokens:,} tokens")
    semantic = config.filters.semantic_threshold
    own_prices = config_stage_prices(config)
    lines += [
        f"run        {where}",
        f"mode       {config.mode}",
        f"teacher    {teacher.model} ({teacher.api} API, {backend_name} backend)",
        f"endpoints  {endpoints}",
        f"target     {config.target:,} tasks ({max(config.target - accepted, 0):,} to go)",
        f"requests   {teacher.concurrency} in flight at most, "
        f"{config.prompts_per_round} instruction prompts per round",
        f"novelty    ROUGE-L F > {config.filters.rouge_threshold}"
        + (
            f"; semantic: cosine > {semantic} (all-MiniLM-L6-v2)"
            if semantic is not None
            else "; semantic: off"
        ),
        f"budget     {', '.join(limits) if limits else 'none'}",
        f"prices     {price_text}",
        _judge_line(config, own_prices),
        "",
    ]
    for number, request in enumerate(previews, start=1):
        lines += [_preview_label(config, request, number), "-" * 72, request.prompt, "-" * 72, ""]

    basis, rows = estimate(config, state, seeds, previews)
    lines.append(f"estimate to reach {config.target:,} tasks, from {basis}")
    lines.append(
        f"  {'stage':<14}{'requests':>10}{'prompt tok':>14}{'compl. tok':>14}{'cost USD':>10}"
    )
    total = StageEstimate("instructions", 0, 0, 0)
    total_usd: float | None = 0.0
    for row in rows:
        # Each stage at its price: the judge's own model may cost differently.
        row_price = own_prices.get(row.stage, price)
        dollars = (
            usd(row.prompt_tokens, row.completion_tokens, row_price, factor)
            if row_price is not None
            else None
        )
        total_usd = None if dollars is None or total_usd is None else total_usd + dollars
        lines.append(_estimate_row(row.stage, row, dollars))
        total = StageEstimate(
            "instructions",
            total.requests + row.requests,
            total.prompt_tokens + row.prompt_tokens,
            total.completion_tokens + row.completion_tokens,
        )
    lines.append(_estimate_row("total", total, total_usd))
    lines.append(_budget_line(config, state, total, price, total_usd))
    return "\n".join(lines).rstrip()


def _estimate_row(name: str, row: StageEstimate, dollars: float | None) -> str:
    cost = f"{dollars:.2f}" if dollars is not None else "?"
    return (
        f"  {name:<14}{_number(row.requests):>10}{_number(row.prompt_tokens):>14}"
        f"{_number(row.completion_tokens):>14}{cost:>10}"
    )


def _judge_line(config: RunConfig, own_prices: Mapping[str, Price | None]) -> str:
    """Say whether tasks are judged, by which model, where, and at what price."""
    judge = config.judge
    if not judge.enabled:
        return "judge      off"
    model = judge.model or config.teacher.model
    where = ", ".join(judge.base_urls) or "the teacher's endpoints"
    api = judge.api or config.teacher.api
    text = f"judge      {model} ({api} API, {where}): every accepted task rated 1-5"
    if "judge" in own_prices:
        own = own_prices["judge"]
        text += f"; {own[0]} / {own[1]} USD per million" if own is not None else "; price unknown"
    return text


def _budget_line(
    config: RunConfig,
    state: State | None,
    total: StageEstimate,
    price: Price | None,
    total_usd: float | None,
) -> str:
    """Say where --max-cost / --max-tokens would stop the run, by the estimate."""
    budget = config.budget
    if budget.max_cost is None and budget.max_tokens is None:
        return "budget     none set: the run stops at the target"
    accepted = state.accepted if state is not None else 0
    remaining = max(config.target - accepted, 0)
    usage = state.usage.values() if state is not None else []
    spent_in = sum(u.prompt_tokens for u in usage)
    spent_out = sum(u.completion_tokens for u in usage)
    tokens = total.prompt_tokens + total.completion_tokens
    per_task: list[tuple[str, float, float]] = []  # (limit, left, needed per task)
    if budget.max_tokens is not None and remaining:
        left = float(budget.max_tokens - spent_in - spent_out)
        per_task.append((f"--max-tokens {budget.max_tokens:,}", left, tokens / remaining))
    if budget.max_cost is not None and price is not None and remaining:
        # Spent so far as the budget counts it (costs.py): batched answers at their price.
        spent = price_usage(
            state.usage if state else {},
            batch_usage(config.out),
            price,
            config_stage_prices(config),
        )
        left = budget.max_cost - (spent.total_usd or 0.0)
        need = (total_usd or 0.0) / remaining
        per_task.append((f"--max-cost {budget.max_cost:.2f}", left, need))
    if not per_task:
        return "budget     the target is reached"
    stops = [
        (accepted + max(left, 0.0) / need if need > 0 else float("inf"), name)
        for name, left, need in per_task
    ]
    reach, name = min(stops)
    if reach >= config.target:
        return f"budget     {name}: enough for the target, by this estimate"
    return f"budget     {name} stops the run at about {int(reach):,} of {config.target:,} tasks"
