"""The `selfinstruct` command line: thin wrappers that build a config and call the library."""

from __future__ import annotations

import os
import sys
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from selfinstruct.errors import SelfInstructError

if TYPE_CHECKING:
    from selfinstruct.engine import Progress

app = typer.Typer(
    name="selfinstruct",
    help="Grow a synthetic instruction-tuning dataset the Self-Instruct way.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

DEFAULT_OUT = Path("outputs/default")
OutOption = Annotated[Path, typer.Option("--out", "-d", help="Run directory.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _set(target: dict[str, Any], dotted: str, value: Any) -> None:
    """Put a flag's value into the nested override dict, unless the flag was not given."""
    if value is None:
        return
    *parents, leaf = dotted.split(".")
    for part in parents:
        target = target.setdefault(part, {})
    target[leaf] = value


class _ProgressLine:
    """Print accepted/target, rate, ETA and rejections; redraw in place on a terminal."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._last = 0.0

    def __call__(self, p: Progress, final: bool = False) -> None:
        now = time.monotonic()
        if not final and not self._tty and now - self._last < 5.0:
            return
        self._last = now
        rate = p.accepted_this_session / p.elapsed if p.elapsed > 0 else 0.0
        left = max(p.target - p.accepted, 0)
        eta = _duration(left / rate) if rate > 0 else "?"
        rejected = sum(p.rejections.values())
        top = ", ".join(f"{r} {n}" for r, n in p.rejections.most_common(3))
        line = (
            f"{p.accepted}/{p.target} tasks | {rate * 60:.1f}/min | ETA {eta} | "
            f"round {p.rounds} | rejected {rejected}" + (f" ({top})" if top else "")
        )
        if self._tty:
            sys.stderr.write("\r\033[K" + line + ("\n" if final else ""))
        else:
            sys.stderr.write(line + "\n")
        sys.stderr.flush()


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@app.command()
def bootstrap(
    target: Annotated[
        int | None, typer.Option(help="Grow the pool to this many tasks [default: 1000].")
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-d", help="Run directory [default: outputs/default]."),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML file of settings; flags override it.")
    ] = None,
    base_url: Annotated[
        list[str] | None,
        typer.Option(help="OpenAI-compatible endpoint, e.g. http://localhost:8000/v1."),
    ] = None,
    model: Annotated[str | None, typer.Option(help="Teacher model name.")] = None,
    api: Annotated[
        str | None, typer.Option(help="completions (base models, vLLM) or chat.")
    ] = None,
    seeds: Annotated[Path | None, typer.Option(help="Seed task JSONL file.")] = None,
    prompts: Annotated[Path | None, typer.Option(help="Directory of prompt templates.")] = None,
    concurrency: Annotated[int | None, typer.Option(help="Requests in flight at most.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of example sampling.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling mass.")] = None,
    max_tokens: Annotated[int | None, typer.Option(help="Completion token limit.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds per request.")] = None,
    max_retries: Annotated[int | None, typer.Option(help="Retries per request.")] = None,
    prompts_per_round: Annotated[int | None, typer.Option(help="Requests per round.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress line.")] = False,
) -> None:
    """Grow the task pool of a run directory to --target; re-run the same command to resume."""
    import asyncio

    from selfinstruct.config import load_config

    overrides: dict[str, Any] = {}
    for dotted, value in (
        ("target", target),
        ("out", out),
        ("seeds", seeds),
        ("prompts", prompts),
        ("seed", seed),
        ("prompts_per_round", prompts_per_round),
        ("teacher.base_urls", base_url or None),
        ("teacher.model", model),
        ("teacher.api", api),
        ("teacher.concurrency", concurrency),
        ("teacher.temperature", temperature),
        ("teacher.top_p", top_p),
        ("teacher.max_tokens", max_tokens),
        ("teacher.timeout", timeout),
        ("teacher.max_retries", max_retries),
    ):
        _set(overrides, dotted, value)
    try:
        cfg = load_config(config, overrides)
        summary = asyncio.run(_bootstrap(cfg, None if quiet else _ProgressLine()))
    except SelfInstructError as exc:
        _fail(str(exc))
    except KeyboardInterrupt:
        _fail("interrupted; the run is saved: re-run the same command to resume", 130)
    typer.echo(
        f"{summary.accepted}/{summary.target} tasks in {summary.rounds} rounds "
        f"({summary.accepted_this_session} new, {summary.requests_sent} requests, "
        f"{summary.requests_replayed} replayed from the log, {_duration(summary.seconds)})"
    )


async def _bootstrap(cfg: Any, progress: _ProgressLine | None) -> Any:
    from selfinstruct.backends.openai_compat import OpenAICompatBackend
    from selfinstruct.engine import Bootstrap, header_for
    from selfinstruct.errors import AuthError
    from selfinstruct.prompts import load_prompts
    from selfinstruct.seeds import load_seeds
    from selfinstruct.store import RunDir

    # Everything that can be checked is checked before the run directory is touched.
    seed_set = load_seeds(cfg.seeds)
    prompt_set = load_prompts(cfg.prompts)
    api_key = os.environ.get("OPENAI_API_KEY") or None
    if api_key is None and not cfg.teacher.base_urls:
        raise AuthError(
            "OPENAI_API_KEY is not set: export it to use api.openai.com, or pass "
            "--base-url URL for a local OpenAI-compatible server (vllm serve, llama.cpp)"
        )
    backend = OpenAICompatBackend(cfg.teacher, api_key)
    run = RunDir(cfg.out)
    try:
        await backend.preflight()
        run.open(header_for(cfg, seed_set, prompt_set))
        run.state.target = cfg.target
        engine = Bootstrap(cfg, backend, run, seed_set, prompt_set, progress)
        summary = await engine.run_until_target()
        if progress is not None:
            progress(engine._snapshot(time.monotonic() - summary.seconds), final=True)
        return summary
    finally:
        run.close()
        await backend.aclose()


@app.command()
def status(out: OutOption = DEFAULT_OUT) -> None:
    """Show where a run stands: tasks, rejections by reason, requests and tokens."""
    import json

    from selfinstruct.store import CONFIG, read_state

    state = read_state(out)
    if not (out / CONFIG).exists() or state is None:
        _fail(f"{out}: no run here (no {CONFIG} or state.json); pass --out RUN_DIR")
    header = json.loads((out / CONFIG).read_text())
    teacher = header["config"]["teacher"]
    typer.echo(f"run        {out}")
    typer.echo(f"teacher    {teacher['model']} ({teacher['api']} API)")
    typer.echo(f"tasks      {state.accepted} / {state.target or '?'}")
    typer.echo(f"rounds     {state.rounds_committed}")
    total = sum(state.rejections.values())
    typer.echo(f"rejected   {total}")
    for reason, count in Counter(state.rejections).most_common():
        typer.echo(f"  {reason:<26}{count:>8}")
    typer.echo("requests   stage            requests  prompt tok  completion tok")
    for stage, usage in sorted(state.usage.items()):
        typer.echo(
            f"           {stage:<15}{usage.requests:>9}{usage.prompt_tokens:>12}"
            f"{usage.completion_tokens:>16}"
        )


@app.command()
def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    out: OutOption = DEFAULT_OUT,
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="alpaca: [{instruction, input, output}].")
    ] = "alpaca",
) -> None:
    """Write the run's accepted tasks for fine-tuning (valid while a run is going, too)."""
    from selfinstruct.export import export_run

    if fmt != "alpaca":
        _fail(f"--format: unknown format {fmt!r} (choose from: alpaca)")
    try:
        n = export_run(out, output, "alpaca")
    except SelfInstructError as exc:
        _fail(str(exc))
    typer.echo(f"wrote {n} records to {output}")
