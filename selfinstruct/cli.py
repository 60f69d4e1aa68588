"""The `selfinstruct` command line: thin wrappers that build a config and call the library."""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, NoReturn

import typer

from selfinstruct.errors import BudgetSpent, SelfInstructError
from selfinstruct.similarity import ROUGE_THRESHOLD
from selfinstruct.text import PrintableFormatter, printable

if TYPE_CHECKING:
    from selfinstruct.engine import Progress
    from selfinstruct.store import StageUsage

app = typer.Typer(
    name="selfinstruct",
    help="Grow a synthetic instruction-tuning dataset the Self-Instruct way.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:
    """Run the command line; skip the collector's passes over every object at exit."""
    try:
        app()
    finally:
        # Everything the command wrote is closed by now. Interpreter shutdown would walk
        # every object the openai package's thousands of models created, 0.2-0.4 s on a
        # 2-core machine, after the work is done: frozen objects are left to the OS.
        gc.freeze()


DEFAULT_OUT = Path("outputs/default")
EXIT_BUDGET_SPENT = 3  # bootstrap stopped at --max-cost / --max-tokens; the run is resumable
OutOption = Annotated[Path, typer.Option("--out", "-d", help="Run directory.")]


def _fail(message: str, code: int = 1) -> NoReturn:
    from selfinstruct.secrets import redact

    # A server may echo the request's headers in its error: no credential is printed, and
    # a server's text may hold terminal escapes.
    typer.echo(f"error: {printable(redact(message))}", err=True)
    raise typer.Exit(code)


class _ProgressLine:
    """Print accepted/target, rate, ETA and rejections; redraw in place on a terminal."""

    def __init__(self) -> None:
        self._tty = sys.stderr.isatty()
        self._last = 0.0
        self._shown = ""

    def __call__(self, p: Progress, final: bool = False) -> None:
        now = time.monotonic()
        if not final and not self._tty and now - self._last < 5.0 and not p.landing:
            return  # the wait at the target is shown at once: the user may not want it
        self._last = now
        rate = p.accepted_this_session / p.elapsed if p.elapsed > 0 else 0.0
        left = max(p.target - p.accepted, 0)
        eta = _duration(left / rate) if rate > 0 else "?"
        rejected = sum(p.rejections.values())
        top = ", ".join(f"{r} {n}" for r, n in p.rejections.most_common(3))
        line = (
            f"{p.accepted}/{p.target} tasks | {rate * 60:.1f}/min | ETA {eta} | "
            f"round {p.rounds} | rejected {rejected}" + (f" ({top})" if top else "")
        ) + (" | limited by the lookahead window: raise --prompts-per-round" * p.window_limited)
        if p.landing:
            line += (
                f" | target reached: {p.landing} requests already sent are landing in the "
                "log, so a longer --target reuses them (Ctrl-C exits now)"
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
    language: Annotated[
        str | None,
        typer.Option(
            help="en or zh: the bundled seeds, prompts and filter defaults of that language "
            "(default: en)."
        ),
    ] = None,
    concurrency: Annotated[
        str | None,
        typer.Option(
            help="Requests in flight: a number, or auto to find the server's capacity "
            "(default: auto)."
        ),
    ] = None,
    max_concurrency: Annotated[
        int | None, typer.Option(help="Ceiling of --concurrency auto (default: 1024).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of example sampling.")] = None,
    temperature: Annotated[float | None, typer.Option(help="Sampling temperature.")] = None,
    top_p: Annotated[float | None, typer.Option(help="Nucleus sampling mass.")] = None,
    max_new_tokens: Annotated[
        int | None, typer.Option(help="Completion token limit of an instruction request.")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option(help="Seconds per request, from its turn at the server.")
    ] = None,
    max_retries: Annotated[int | None, typer.Option(help="Retries per request.")] = None,
    prompts_per_round: Annotated[int | None, typer.Option(help="Requests per round.")] = None,
    backend: Annotated[
        str | None,
        typer.Option(
            help="openai (OpenAI-compatible API), local (llama.cpp on this CPU) or vllm "
            "(vLLM on this machine's GPUs, needs --model) "
            "[default: openai with OPENAI_API_KEY or --base-url, else local when installed]."
        ),
    ] = None,
    model_path: Annotated[Path | None, typer.Option(help="GGUF file for --backend local.")] = None,
    threads: Annotated[int | None, typer.Option(help="CPU threads for --backend local.")] = None,
    batch_api: Annotated[
        bool | None,
        typer.Option(
            "--batch-api/--no-batch-api",
            help="Send requests through the OpenAI Batch API: half the price, answers within "
            "24 hours; pending batches are picked up again on resume.",
        ),
    ] = None,
    batch_poll_seconds: Annotated[
        float | None, typer.Option(help="Seconds between checks of a pending batch [default: 30].")
    ] = None,
    max_cost: Annotated[
        float | None,
        typer.Option(help="Stop cleanly once the run has cost this many USD (resumable)."),
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            help="Stop cleanly once the run has used this many prompt + completion tokens "
            "(resumable)."
        ),
    ] = None,
    price_in: Annotated[
        float | None,
        typer.Option(help="USD per million prompt tokens, for --max-cost (default: known price)."),
    ] = None,
    price_out: Annotated[
        float | None,
        typer.Option(help="USD per million completion tokens (default: known price)."),
    ] = None,
    semantic_dedup: Annotated[
        float | None,
        typer.Option(
            metavar="THRESHOLD",
            help="Also reject instructions whose embedding cosine similarity to the pool "
            "exceeds THRESHOLD, e.g. 0.8 (needs the semantic extra).",
        ),
    ] = None,
    judge: Annotated[
        bool | None,
        typer.Option(
            "--judge/--no-judge",
            help="Rate every accepted task 1-5 with a one-sentence reason before it is "
            "committed (stored as the task's judge field; no task is dropped) [default: off].",
        ),
    ] = None,
    judge_model: Annotated[
        str | None, typer.Option(help="Model that judges [default: the teacher's].")
    ] = None,
    judge_base_url: Annotated[
        list[str] | None,
        typer.Option(
            help="The judge's own OpenAI-compatible endpoint; its key is "
            "SELFINSTRUCT_JUDGE_API_KEY, else OPENAI_API_KEY [default: the teacher's]."
        ),
    ] = None,
    judge_api: Annotated[
        str | None, typer.Option(help="completions or chat for the judge [default: the teacher's].")
    ] = None,
    judge_price_in: Annotated[
        float | None,
        typer.Option(help="USD per million prompt tokens of --judge-model (default: known price)."),
    ] = None,
    judge_price_out: Annotated[
        float | None,
        typer.Option(help="USD per million completion tokens of --judge-model (default: known)."),
    ] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run",
            help="Show the plan, one prompt of each kind and a cost estimate; "
            "send nothing, write nothing.",
        ),
    ] = False,
    tensor_parallel_size: Annotated[
        int | None, typer.Option(help="--backend vllm: GPUs splitting each layer, per replica.")
    ] = None,
    pipeline_parallel_size: Annotated[
        int | None, typer.Option(help="--backend vllm: pipeline stages per replica.")
    ] = None,
    data_parallel_size: Annotated[
        int | None,
        typer.Option(help="--backend vllm: replicas of the model, each on its own GPUs."),
    ] = None,
    gpu_memory_utilization: Annotated[
        float | None, typer.Option(help="--backend vllm: share of GPU memory vLLM may use.")
    ] = None,
    distributed_executor_backend: Annotated[
        str | None,
        typer.Option(help="--backend vllm: mp (this node), ray (a Ray cluster) or auto."),
    ] = None,
    max_model_len: Annotated[
        int | None, typer.Option(help="--backend vllm: context length [default: the model's].")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress line.")] = False,
) -> None:
    """Grow the task pool of a run directory to --target; re-run the same command to resume."""
    flags = dict(locals())  # every parameter by name: FLAG_KEYS says which setting each sets
    import asyncio

    from selfinstruct.config import flag_overrides, load_config

    _log_warnings()
    run_dir = out
    with _user_errors(run=lambda: run_dir):
        cfg = load_config(config, flag_overrides(flags))
        run_dir = cfg.out
        if dry_run:
            from selfinstruct.plan import dry_run_report

            typer.echo(dry_run_report(cfg, os.environ))
            return
        from selfinstruct.runner import run_bootstrap

        summary = asyncio.run(
            run_bootstrap(
                cfg,
                os.environ,
                progress=None if quiet else _ProgressLine(),
                notify=None if quiet else _note,
                handle_signals=True,
            )
        )
    typer.echo(_summary(summary))


def _summary(summary: Progress) -> str:
    return (
        f"{summary.accepted}/{summary.target} tasks in {summary.rounds} rounds "
        f"({summary.accepted_this_session} new, {summary.requests_sent} requests, "
        f"{summary.requests_replayed} replayed from the log, {_duration(summary.elapsed)})"
    )


def _has_progress(run: Path | None) -> bool:
    """Say whether a run directory holds work a re-run would resume (answers or commits)."""
    from selfinstruct.store import RESPONSES, read_state

    if run is None:
        return False
    try:
        if (run / RESPONSES).stat().st_size > 0:
            return True
    except OSError:
        return False
    state = read_state(run)
    return state is not None and state.rounds_committed > 0


@contextmanager
def _user_errors(
    *, path: Path | None = None, run: Callable[[], Path | None] | None = None
) -> Iterator[None]:
    """Turn the errors a user can meet into one line on stderr and a non-zero exit.

    `path` names the file an OSError without a file name is about; `run` returns the run
    directory whose saved progress makes the "re-run to resume" hints true.
    """

    def resumable() -> bool:
        return run is not None and _has_progress(run())

    try:
        yield
    except BudgetSpent as exc:
        if exc.progress is not None:
            typer.echo(_summary(exc.progress))
        # Not an error, but not the target either: scripts can tell the two apart.
        _fail(f"{exc}; {exc.hint}", EXIT_BUDGET_SPENT)
    except SelfInstructError as exc:
        _fail(f"{exc}; {exc.hint}" if exc.hint and resumable() else str(exc))
    except OSError as exc:
        # A full disk or a file-size limit: committed rounds are intact, the rest is redone.
        where = f"{exc.filename or path}: " if exc.filename or path else ""
        remedy = "; free space and re-run the same command to resume" if resumable() else ""
        _fail(f"{where}{exc.strerror or exc}{remedy}")
    except KeyboardInterrupt:
        saved = "; the run is saved: re-run the same command to resume" if resumable() else ""
        _fail(f"interrupted{saved}", 130)


def _log_warnings() -> None:
    """Show the library's warnings (an endpoint set aside, say) on stderr, one line each."""
    import logging

    logger = logging.getLogger("selfinstruct")
    if not logger.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(PrintableFormatter("%(levelname)s: %(message)s"))
        from selfinstruct.secrets import RedactFilter

        handler.addFilter(RedactFilter())
        logger.addHandler(handler)
        logger.setLevel(logging.WARNING)
        logger.propagate = False


def _note(message: str) -> None:
    """Print a one-line event (a batch submitted or finished) above the progress line."""
    prefix = "\r\033[K" if sys.stderr.isatty() else ""
    sys.stderr.write(f"{prefix}{printable(message)}\n")
    sys.stderr.flush()


@app.command()
def status(
    out: OutOption = DEFAULT_OUT,
    price_in: Annotated[
        float | None,
        typer.Option(help="USD per million prompt tokens [default: the run's, else known price]."),
    ] = None,
    price_out: Annotated[
        float | None,
        typer.Option(help="USD per million completion tokens [default: the run's, else known]."),
    ] = None,
) -> None:
    """Show where a run stands: tasks, rejections by stage and reason, requests, tokens, cost."""

    from selfinstruct.backends.batch_api import pending_batches
    from selfinstruct.costs import run_cost
    from selfinstruct.store import CONFIG, read_header, read_state

    state = read_state(out)
    if not (out / CONFIG).exists() or state is None:
        _fail(f"{out}: no run here (no {CONFIG} or state.json); pass --out RUN_DIR")
    try:
        header = read_header(out)
        teacher = header["config"]["teacher"]
        mode, model, api = header["config"]["mode"], teacher["model"], teacher["api"]
        # Priced as budgets and report price it: these flags, else the run's own prices.
        table = run_cost(out, (price_in, price_out))
    except SelfInstructError as exc:
        _fail(str(exc))
    except (KeyError, TypeError):
        _fail(f"{out / CONFIG}: field 'config': incomplete; not written by this version")
    typer.echo(f"run        {out}")
    typer.echo(f"mode       {mode}")
    reported = header.get("teacher_reported")  # what the server said it runs, if it did
    served = f"; the server reports {reported}" if reported and reported != model else ""
    typer.echo(f"teacher    {model} ({api} API{served})")
    typer.echo(f"tasks      {state.accepted} / {state.target or '?'}")
    typer.echo(f"rounds     {state.rounds_committed}")
    typer.echo(f"rejected   {sum(state.rejections.values())}")
    for key, count in sorted(
        state.rejections.items(), key=lambda kv: (kv[0].split("/")[0], -kv[1])
    ):
        stage, _, reason = key.partition("/")
        typer.echo(f"  {stage:<14}{reason:<28}{count:>8}")
    typer.echo(f"{'stage':<16}{'requests':>9}{'prompt tok':>13}{'compl. tok':>13}{'cost USD':>11}")
    for row in table.stages.values():
        cost = f"{row.usd:.2f}" if row.usd is not None else ""
        typer.echo(
            f"  {row.stage:<14}{row.requests:>9}{row.prompt_tokens:>13}"
            f"{row.completion_tokens:>13}{cost:>11}"
        )
    _echo_reasoning(state.usage)
    pending = pending_batches(out)
    if table.batched_requests or pending:
        waiting = f"; {pending} batches pending" if pending else ""
        typer.echo(f"batch API  {table.batched_requests} requests answered at half price{waiting}")
    total = table.total_usd
    if total is not None and table.price is not None:
        per_task = total / state.accepted if state.accepted else 0.0
        half = ", half that through the Batch API" if table.batched_requests else ""
        own = table.stage_prices.get("judge")
        judged = f", the judge at {own[0]}/{own[1]}" if own is not None else ""
        typer.echo(
            f"cost       {total:.2f} USD at {table.price[0]}/{table.price[1]} USD per million "
            f"tokens in/out{judged}{half} ({per_task * 1000:.3f} USD per 1000 tasks)"
        )
    elif table.price is not None:
        typer.echo("cost       unknown price of the judge's model: it was started without one")
    else:
        typer.echo("cost       unknown model price: pass --price-in and --price-out")
    judge = header["config"].get("judge")
    if isinstance(judge, dict) and judge.get("enabled"):
        from selfinstruct.judge import format_summary, summarize
        from selfinstruct.store import load_pool

        with _user_errors(path=out):
            summary = summarize(load_pool(out))
        for line in format_summary(summary, str(judge.get("model") or model)):
            typer.echo(printable(line))  # reasons and instructions are the teacher's text


def _echo_reasoning(usage: Mapping[str, StageUsage]) -> None:
    """Show the completion tokens a reasoning teacher spent thinking, when it spent any."""
    spent = {stage: u for stage, u in sorted(usage.items()) if u.reasoning_tokens}
    if not spent:
        return
    total = sum(u.reasoning_tokens for u in spent.values())
    parts = ", ".join(f"{stage} {u.reasoning_tokens}" for stage, u in spent.items())
    estimated = sum(u.reasoning_estimated for u in spent.values())
    how = f"; estimated from the text for {estimated} answers" if estimated else ""
    typer.echo(f"reasoning  {total} of the completion tokens ({parts}){how}")


@app.command()
def export(
    output: Annotated[
        str | None,  # a str, not a Path: Path("") would read "." and hide an empty value
        typer.Option("--output", "-o", help="File to write (a directory for --format hf)."),
    ] = None,
    out: OutOption = DEFAULT_OUT,
    fmt: Annotated[
        str,
        typer.Option(
            "--format",
            "-f",
            help="alpaca: JSON [{instruction, input, output}], one per instance; "
            "jsonl: the same, one a line; sharegpt: JSONL of conversations (from/value); "
            "openai: JSONL of messages (OpenAI chat fine-tuning); parquet: one Parquet "
            "file; hf: a Hugging Face datasets directory (save_to_disk); "
            "tasks: JSONL in the seed schema.",
        ),
    ] = "alpaca",
    system: Annotated[
        str | None, typer.Option(help="System message for the sharegpt and openai formats.")
    ] = None,
    push_to_hub: Annotated[
        str | None,
        typer.Option(
            "--push-to-hub",
            metavar="REPO",
            help="Also upload the records as a dataset to this Hugging Face Hub repo "
            "(needs HF_TOKEN, and pyarrow and datasets installed).",
        ),
    ] = None,
    private: Annotated[
        bool, typer.Option(help="With --push-to-hub: create the repo as private.")
    ] = False,
    min_score: Annotated[
        int | None,
        typer.Option(
            metavar="S",
            help="Keep only tasks the judge scored S or more (1-5); unscored tasks are dropped.",
        ),
    ] = None,
    card: Annotated[
        bool,
        typer.Option(
            "--card/--no-card",
            help="Write a data card: OUTPUT.card.json beside the export, and README.md in an "
            "hf directory or Hub repo.",
        ),
    ] = True,
    license: Annotated[
        str | None,
        typer.Option(
            metavar="SPDX",
            help="Licence the data card states (default: the seed file's, else unknown).",
        ),
    ] = None,
) -> None:
    """Write the run's accepted tasks for fine-tuning (valid while a run is going, too)."""
    from selfinstruct.card import card_path
    from selfinstruct.export import FORMATS, HF_TOKEN_ENV, export_run
    from selfinstruct.export import push_to_hub as push

    if fmt not in FORMATS:
        _fail(f"--format: unknown format {fmt!r} (choose from: {', '.join(FORMATS)})")
    if output is None and push_to_hub is None:
        _fail("--output: missing; name the file to write (or pass --push-to-hub REPO)")
    if output is not None and not output.strip():
        _fail("--output: empty path; name the file to write")
    if push_to_hub is not None and not os.environ.get(HF_TOKEN_ENV):
        # Checked before any file is written, so a missing token costs nothing.
        _fail(f"--push-to-hub needs a Hugging Face token: export {HF_TOKEN_ENV}=hf_... first")
    with _user_errors(path=None if output is None else Path(output)):
        if output is not None:
            n = export_run(
                out,
                Path(output),
                fmt,
                system=system,
                min_score=min_score,
                card=card,
                license=license,
            )
            beside = f"; its data card in {card_path(Path(output))}" if card else ""
            typer.echo(f"wrote {n} records to {output}{beside}")
        if push_to_hub is not None:
            n = push(
                out,
                push_to_hub,
                private=private,
                min_score=min_score,
                card=card,
                license=license,
            )
            typer.echo(f"pushed {n} records to the Hugging Face Hub dataset {push_to_hub}")


@app.command()
def report(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="Run directory.")] = DEFAULT_OUT,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Directory to write (default: RUN/report)."),
    ] = None,
    parser: Annotated[
        str,
        typer.Option(help="Verb/object parser: spacy, heuristic, or auto (spacy when installed)."),
    ] = "auto",
    seeds: Annotated[
        Path | None, typer.Option(help="The run's seed file, if it has moved since the run.")
    ] = None,
    price_in: Annotated[
        float | None, typer.Option(help="USD per million prompt tokens (default: known price).")
    ] = None,
    price_out: Annotated[
        float | None,
        typer.Option(help="USD per million completion tokens (default: known price)."),
    ] = None,
    compare: Annotated[
        tuple[Path, Path] | None,
        typer.Option(
            metavar="RUN_A RUN_B",
            help="Put two runs side by side on one page instead: compare.html "
            "(default directory: RUN_A/report/compare-<RUN_B's name>).",
        ),
    ] = None,
) -> None:
    """Write report.html (self-contained, opens offline) and PNG figures of a run, or of two."""
    from selfinstruct.report import PARSERS, build_report

    if compare is not None and run != DEFAULT_OUT:
        _fail("pass either RUN or --compare RUN_A RUN_B, not both")
    if parser not in PARSERS:
        _fail(f"--parser: unknown parser {parser!r} (choose from: {', '.join(PARSERS)})")
    if (price_in is None) != (price_out is None):
        _fail("--price-in and --price-out go together; pass both")
    price = (price_in, price_out) if price_in is not None and price_out is not None else None
    bars: dict[str, _Bar] = {}

    def progress(label: str, done: int, total: int) -> None:
        if label not in bars:
            for bar in bars.values():
                bar.close()
            bars[label] = _Bar(label)
        bars[label](done, total)

    if compare is not None:
        from selfinstruct.report.compare import build_comparison

        with _user_errors():
            compared = build_comparison(*compare, output, price=price, progress=progress)
        for bar in bars.values():
            bar.close()
        typer.echo(f"wrote {compared.html} and {len(compared.pngs)} PNGs beside it")
        return
    with _user_errors(path=run):
        result = build_report(
            run,
            output,
            parser=parser,
            seeds=seeds,
            price=price,
            progress=progress,
        )
    for bar in bars.values():
        bar.close()
    typer.echo(
        f"wrote {result.html} and {len(result.pngs)} PNGs beside it "
        f"({result.tasks} tasks; verbs parsed by {result.parser})"
    )


@app.command()
def dedup(
    input_path: Annotated[
        Path, typer.Argument(metavar="INPUT", help="Alpaca JSON, JSONL of tasks, or text.")
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="Kept records, same format.")],
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="Reject when ROUGE-L F exceeds this.")
    ] = ROUGE_THRESHOLD,
    against: Annotated[
        Path | None, typer.Option(help="Also reject instructions too close to these (e.g. seeds).")
    ] = None,
    tokenizer: Annotated[
        str,
        typer.Option(
            help="rouge (rouge-score's), unicode (CJK-aware), or auto: unicode when the "
            "start of the input holds CJK, kana or Hangul, which rouge drops entirely."
        ),
    ] = "auto",
    rejected: Annotated[
        Path | None, typer.Option(help="Where to list rejects [default: OUTPUT.rejected.jsonl].")
    ] = None,
) -> None:
    """Drop tasks whose instruction is a near duplicate of an earlier one (ROUGE-L).

    Records that share an instruction are one task, kept or dropped whole.
    """
    from selfinstruct.dedup import dedup_file

    if tokenizer not in ("auto", "rouge", "unicode"):
        _fail(f"--tokenizer: unknown tokenizer {tokenizer!r} (choose from: auto, rouge, unicode)")
    megabytes = _Bar("dedup: MB read")

    def bar(done: int, total: int) -> None:
        megabytes(-(-done // 1_000_000), -(-total // 1_000_000))  # rounded up: 1/1 at the end

    with _user_errors(path=input_path):  # DedupInputError included
        summary = dedup_file(
            input_path,
            output,
            rejected_path=rejected,
            threshold=threshold,
            against=against,
            tokenizer=tokenizer,  # type: ignore[arg-type]  # checked just above
            progress=bar,
        )
    megabytes.close()
    duplicates = summary.duplicate_records
    typer.echo(
        f"kept {summary.kept} of {summary.read} records ({summary.tasks_kept} of "
        f"{summary.tasks} tasks; {summary.rejected - duplicates} records of near-duplicate "
        f"tasks"
        + (f", {duplicates} repeated records" if duplicates else "")
        + (f"; checked against {summary.against_size} more" if summary.against_size else "")
        + f"; {summary.tokenizer} tokenizer) in {summary.seconds:.1f}s -> {summary.output_path}; "
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
        self._shown = False  # closing twice ends the line once


@app.command()
def init(
    path: Annotated[
        Path, typer.Argument(help="File to write (default: run.toml).", show_default=False)
    ] = Path("run.toml"),
    force: Annotated[bool, typer.Option("--force", help="Overwrite an existing file.")] = False,
    language: Annotated[str, typer.Option(help="en or zh: the language of the run.")] = "en",
) -> None:
    """Write a commented run.toml holding every setting and its default."""
    from selfinstruct.config import LANGUAGES
    from selfinstruct.runtoml import render_run_toml, write_run_toml

    if language not in LANGUAGES:
        _fail(f"--language: unknown language {language!r} (choose from: {', '.join(LANGUAGES)})")
    text = render_run_toml(language)
    try:
        write_run_toml(path, text, overwrite=force)
    except FileExistsError:
        _fail(f"{path}: already exists; pass --force to overwrite it")
    except OSError as exc:
        _fail(f"{path}: {exc.strerror or exc}")
    typer.echo(f"wrote {path}; use it with: selfinstruct bootstrap --config {path}")


seeds_app = typer.Typer(help="Inspect seed task files.", no_args_is_help=True)
app.add_typer(seeds_app, name="seeds")


@seeds_app.command("check")
def seeds_check(
    path: Annotated[Path, typer.Argument(help="Seed task JSONL file.")],
    language: Annotated[
        str, typer.Option(help="en or zh: how words are counted and the default tokenizer.")
    ] = "en",
    tokenizer: Annotated[
        str | None,
        typer.Option(
            help="rouge or unicode (CJK-aware) (default: rouge for en, unicode for zh).",
            show_default=False,
        ),
    ] = None,
    threshold: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="ROUGE-L F above which two tasks are too close.")
    ] = ROUGE_THRESHOLD,
    strict: Annotated[
        bool, typer.Option("--strict", help="Fail on near-duplicate or repeated instructions too.")
    ] = False,
) -> None:
    """Validate a seed file (file:line:field errors) and print its statistics."""
    from selfinstruct.config import LANGUAGE_FILTER_DEFAULTS, LANGUAGES
    from selfinstruct.seedcheck import format_stats, seed_stats
    from selfinstruct.seeds import load_seeds
    from selfinstruct.similarity import has_single_char_script

    if language not in LANGUAGES:
        _fail(f"--language: unknown language {language!r} (choose from: {', '.join(LANGUAGES)})")
    chosen = tokenizer or LANGUAGE_FILTER_DEFAULTS[language]["tokenizer"]
    if chosen not in ("rouge", "unicode"):
        _fail(f"--tokenizer: unknown tokenizer {chosen!r} (choose from: rouge, unicode)")
    try:
        seed_set = load_seeds(path)
    except SelfInstructError as exc:
        _fail(f"{exc}; the seed file is invalid")
    english = language == "en"
    bar = _Bar("similarity") if len(seed_set.tasks) > 2000 else None
    stats = seed_stats(
        seed_set.tasks,
        english=english,
        tokenizer=chosen,  # type: ignore[arg-type]  # checked just above
        threshold=threshold,
        progress=bar,
    )
    if bar is not None:
        bar.close()
    typer.echo(f"{path}: valid, sha256 {seed_set.digest[:16]}")
    licenses = seed_set.licenses()  # a sidecar SEEDS.jsonl.license, or per-line fields
    stated = ", ".join(f"{k or 'not stated'} ({n})" for k, n in sorted(licenses.items(), key=str))
    typer.echo(f"{'license':<24}{stated}")
    unit = "words" if english else "length"
    for line in format_stats(stats, unit=unit):
        typer.echo(line)
    if chosen == "rouge" and any(has_single_char_script(t.instruction) for t in seed_set.tasks):
        typer.echo(
            "note: some instructions are in Chinese or Japanese, which the rouge tokenizer "
            "drops entirely; pass --language zh (or --tokenizer unicode) to compare them"
        )
    if strict and stats.has_warnings:
        _fail("near-duplicate or repeated instructions (--strict)")
