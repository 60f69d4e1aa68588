"""The bootstrap pipeline: the one place with concurrency.

Rounds are fetched concurrently but applied strictly in round order, and round r samples
machine examples only from rounds < r - lookahead, so the pool depends on round numbers and
teacher answers alone, never on timing, concurrency or interruptions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import hashlib
import json
import logging
import math
import signal
import threading
import time
from bisect import bisect_left
from collections import Counter, deque
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

from selfinstruct import __version__
from selfinstruct.backends.base import Backend, RequestRefused, SendsHeld, Spend
from selfinstruct.budget import Budget
from selfinstruct.concurrency import PriorityGate
from selfinstruct.config import RunConfig, config_dump, identity
from selfinstruct.errors import BudgetSpent, RunDirError, TeacherError
from selfinstruct.filters import InstructionFilters, check_instances, check_output, clip
from selfinstruct.judge import parse_verdict, unparsed_reason
from selfinstruct.parse import (
    REASONING_ONLY,
    Unparsed,
    is_truncated,
    parse_alpaca,
    parse_instances,
    parse_instruction_list,
    parse_yes_no,
    reasoning_detail,
    reasoning_only,
)
from selfinstruct.prompts import (
    PromptSet,
    render_alpaca,
    render_classify,
    render_instances,
    render_instruction_list,
    render_judge,
)
from selfinstruct.records import (
    Candidate,
    Completion,
    Instance,
    Judgement,
    Request,
    SamplingParams,
    Stage,
    Task,
)
from selfinstruct.sampling import (
    LEGACY_SAMPLING,
    SAMPLING_VERSION,
    SAMPLING_VERSIONS,
    Draws,
    choose_examples,
    rng_for,
)
from selfinstruct.seeds import SeedSet
from selfinstruct.similarity import NoveltyIndex
from selfinstruct.store import (
    CONFIG,
    FORMAT,
    RunDir,
    load_admitted_rejections,
    load_pool,
    read_header,
)

if TYPE_CHECKING:
    from selfinstruct.semantic import SemanticIndex

log = logging.getLogger(__name__)

# Stop rather than pay forever when a teacher's answers never yield a task.
MAX_IDLE_ROUNDS = 50
# Container allocations between young-generation collections during a run (default 700).
YOUNG_THRESHOLD = 10_000
# Seconds of screening after which the event loop is let go (see Bootstrap._screen).
SCREEN_SLICE = 0.005
# The semantic index's vectors, appended as instructions join it (see semantic.py).
SEMANTIC_LOG = "semantic.vec"
# The identity entry that records a run's example-sampling algorithm (see sampling.py).
SAMPLING_KEY = "sampling_version"
# Weight of one commit in the running share of commits at which the lookahead window, not
# the teacher, held back new rounds (about the last five commits).
WINDOW_SHARE_WEIGHT = 0.2
# Before any round has committed, the share of the tasks asked for that a round is expected
# to add to the pool (the synthetic teacher's rounds add about 0.7; a weaker teacher less).
# Too high only costs a short run another round trip; too low, rounds it does not need.
FIRST_ROUND_YIELD = 0.5
# A round the estimate wants only as a margin against a short yield (the 25% headroom of
# _rounds_wanted) goes out only this share of an instruction request's round trip after the
# last request of the rounds expected to reach the target; later, it would most likely
# only make the run wait for it to land (PriorityGate.hold_spares). With p the chance it is
# needed, sending it t after them gains (1 - t) round trips with chance p and loses t with
# chance 1 - p: worth it while t < p; a margin round is needed in a minority of runs.
SPARE_SHARE = 0.25
# The latest estimate of a round's yield counts at most this many of the last rounds: as
# the pool grows, more candidates are near duplicates and rounds add fewer tasks.
RECENT_ROUNDS = 8
# The gate group of the requests that start a round's chain (instructions), which go ahead
# of older rounds' later stages by a lead (PriorityGate.lead, head_lead).
CHAIN_HEADS = 1
# The lead covers this many times the chain's time before its last stage at the recent
# commit rate: answers vary, and a lead too short idles slots while a round's last chain
# is still on its first stages; one too long only delays commits a little.
LEAD_MARGIN = 1.5
# Commits over which the commit rate is measured, and the weight of a new answer in a
# stage's mean latency (about the last ten).
LEAD_COMMITS = 16
STAGE_WEIGHT = 0.1
# The stage a round's chain ends with, by precedence: the lead is the time before it.
CHAIN_ENDS = ("judge", "instances")
# Signals after which a run stops sending, lets what is in flight land, and commits.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
# Rejection reason of a request the teacher refused persistently (backends.RequestRefused).
REFUSED = "teacher_refused"
# The setting that bounds each stage's answers, named in a reasoning_only rejection.
REASONING_LIMITS: dict[str, str] = {
    "instructions": "--max-new-tokens (teacher.max_tokens)",
    "classify": "teacher.classify_max_tokens",
    "instances": "teacher.instances_max_tokens",
    "judge": "judge.max_tokens",
}


@dataclass(frozen=True)
class Progress:
    """Where the run stands: after each committed round, and at the end of a bootstrap."""

    accepted: int
    target: int
    rounds: int
    rejections: Counter[str]
    accepted_this_session: int
    elapsed: float
    requests_sent: int
    requests_replayed: int
    # The lookahead window, not the teacher, held requests back at the last commit: slots
    # were free but no round could start (raise --prompts-per-round).
    window_limited: bool = False
    # The target is reached; this many requests, sent and paid for already, are being let
    # land in the log (a longer --target replays them) before the run exits.
    landing: int = 0


class _Prefix(Sequence[Task]):
    """A read-only view of the first `n` pool tasks, so sampling copies nothing."""

    def __init__(self, tasks: list[Task], n: int) -> None:
        self._tasks, self._n = tasks, n

    def __len__(self) -> int:
        return self._n

    @overload
    def __getitem__(self, index: int) -> Task: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[Task]: ...
    def __getitem__(self, index: int | slice) -> Task | Sequence[Task]:
        if isinstance(index, slice):
            return self._tasks[: self._n][index]
        if not -self._n <= index < self._n:
            raise IndexError(index)
        return self._tasks[index % self._n]


def sampling_version(run: Path) -> int:
    """Return the example-sampling algorithm of the run directory `run`.

    A run keeps the version it started with, recorded in its identity; one started before
    versions were recorded has version 1; a new run gets the current version.
    """
    if not (run / CONFIG).exists():
        return SAMPLING_VERSION
    try:
        version = read_header(run)["identity"].get(SAMPLING_KEY, LEGACY_SAMPLING)
    except RunDirError:
        return SAMPLING_VERSION  # opening the run reports what is wrong with config.json
    if version not in SAMPLING_VERSIONS:
        raise RunDirError(
            f"{run / CONFIG}: field 'identity.{SAMPLING_KEY}': the run draws its examples "
            f"with sampling version {version!r}, which this selfinstruct ({__version__}) "
            "does not know; resume it with the version that started it, or a newer one"
        )
    return int(version)


class Interrupted(KeyboardInterrupt):
    """A bootstrap stopped by SIGINT or SIGTERM, after its requests in flight were logged.

    A KeyboardInterrupt, so that whatever handles Ctrl-C (the CLI: exit status 130) handles
    it too; `progress` says where the run stands.
    """

    def __init__(self, signal_name: str, progress: Progress) -> None:
        super().__init__(f"stopped by {signal_name}")
        self.progress = progress


class _Stop(Exception):
    """Raised instead of sending a request once a stop signal has come."""


def header_for(config: RunConfig, seeds: SeedSet, prompts: PromptSet) -> dict[str, Any]:
    """Return config.json's content: identity (with content digests) and the full config."""
    ident = identity(config)
    ident["seeds.sha256"] = seeds.digest
    ident["prompts.sha256"] = prompts.digest
    if config.judge.enabled:  # absent otherwise: runs without the judge keep their identity
        ident["judge.prompt.sha256"] = prompts.judge_digest
    version = sampling_version(config.out)
    if version != LEGACY_SAMPLING:  # runs of version 1 have no such entry
        ident[SAMPLING_KEY] = version
    return {
        "format": FORMAT,
        "selfinstruct": __version__,
        "identity": ident,
        "config": config_dump(config),
    }


@dataclass
class _Admitted:
    """An instruction that passed the filters and novelty, with what came with it."""

    seq: int
    instruction: str
    input: str = ""
    output: str | None = None  # set in alpaca mode, where one request yields the whole task


@dataclass
class _RoundResult:
    tasks: list[tuple[int, str, bool | None, list[Instance]]] = field(default_factory=list)
    rejections: list[dict[str, Any]] = field(default_factory=list)
    judgements: list[Judgement] = field(default_factory=list)  # one per task, with the judge


def _rejection(
    stage: Stage, reason: str, instruction: str, detail: str = "", **extra: Any
) -> dict[str, Any]:
    return {"stage": stage, "reason": reason, "instruction": instruction, "detail": detail, **extra}


def _reasoning_rejection(
    stage: Stage, item: _Admitted, completion: Completion
) -> dict[str, Any] | None:
    """Reject an admitted task's answer that is only reasoning; None for any other answer."""
    if not reasoning_only(completion):
        return None
    detail = reasoning_detail(completion, REASONING_LIMITS[stage])
    return _rejection(stage, REASONING_ONLY, item.instruction, detail, seq=item.seq)


def head_lead(commit_times: Sequence[float], stage_seconds: Mapping[str, float]) -> float:
    """Return how many rounds early a round's instruction requests go, ahead of later stages.

    The gate serves the oldest round first, so without a lead a round's instruction
    requests wait behind every older round's classify and instance requests, and its own
    follow only after those: at the end of a run the last rounds' chains run with little
    else to send, and slots idle for the length of the chain. The lead is the rounds that
    commit (`commit_times`, the latest commits' times) while a chain goes through the
    stages before its last (`stage_seconds`, each stage's mean latency), so those are
    answered by the time the round's turn comes. 0 until both have been measured.
    """
    last = next((stage for stage in CHAIN_ENDS if stage in stage_seconds), None)
    if len(commit_times) < 2 or commit_times[-1] <= commit_times[0] or last is None:
        return 0.0
    rate = (len(commit_times) - 1) / (commit_times[-1] - commit_times[0])
    before = sum(stage_seconds.values()) - stage_seconds[last]
    return float(math.ceil(LEAD_MARGIN * rate * before))


class Bootstrap:
    """Grow the pool of a run directory to the target."""

    def __init__(
        self,
        config: RunConfig,
        backend: Backend,
        run: RunDir,
        seeds: SeedSet,
        prompts: PromptSet,
        progress: Callable[[Progress], None] | None = None,
        *,
        judge_backend: Backend | None = None,
    ) -> None:
        self.config = config
        self.backend = backend
        # The judge's own model or endpoint, else the teacher judges (the same backend).
        self.judge_backend = judge_backend or backend
        if config.judge.enabled and prompts.judge_digest is None:
            raise ValueError("the judge is on but its template was not loaded (load_prompts)")
        self.run = run
        self.seeds = seeds
        self.prompts = prompts
        self._progress = progress
        self._filters = InstructionFilters(config.filters, english=config.language == "en")
        self.pool: list[Task] = load_pool(run.path)
        self._pool_rounds = [t.round if t.round is not None else -1 for t in self.pool]
        # The index holds seeds, then every admitted instruction in admission order, so a
        # resumed run's index is the very one the interrupted run had.
        admitted = load_admitted_rejections(run.path, run.state.rejected_bytes)
        admitted.update({t.seq: t.instruction for t in self.pool if t.seq is not None})
        self.index = NoveltyIndex(config.filters.rouge_threshold, config.filters.tokenizer)
        self._index_texts = [t.instruction for t in seeds.tasks]
        self._index_texts += [admitted[k] for k in sorted(admitted)]
        self.index.add_many(self._index_texts)
        # Loaded when the run starts (embedding is slow), in the same order as the ROUGE index.
        self.semantic: SemanticIndex | None = None
        self._budget = Budget.from_config(config)
        self._sending = 0  # requests on the wire now
        self._next_seq = max(admitted, default=-1) + 1
        self._novelty_round = run.state.rounds_committed
        self._novelty_turn: asyncio.Condition | None = None
        self._gate: PriorityGate | None = None
        self._judge_gate: PriorityGate | None = None
        self._sent = 0
        self._replayed = 0
        # Set by the first stop signal: no request is sent after it (see _on_signal).
        self._stopping: str | None = None
        # Set once the target is reached: nothing more is sent while the wire drains.
        self._finishing = False
        self._stop_event: asyncio.Event | None = None
        # Every task a round spawns, so that none outlives the run (and writes to a closed log).
        self._live: set[asyncio.Task[Any]] = set()
        self._window_limited = False
        self._window_share = 0.0  # running share of commits at which the window was full
        self._stage_seconds: dict[str, float] = {}  # mean latency of each stage's answers
        self._commit_times: deque[float] = deque(maxlen=LEAD_COMMITS)
        self._accepted_at_start = run.state.accepted
        self._sampling = sampling_version(run.path)
        self._classify_examples, self._instance_examples = self._fixed_examples()

    def _fixed_examples(
        self,
    ) -> tuple[list[tuple[str, bool]], dict[bool, list[tuple[str, list[Instance]]]]]:
        """Choose the in-context examples of the classify and instance prompts, once per run.

        They stay fixed for the run, so every such prompt shares one long prefix (cheap with
        prefix caching on vLLM and OpenAI).
        """
        rng = Draws(rng_for(self.config.seed, -1, 0), self._sampling)
        cls = [t for t in self.seeds.tasks if t.is_classification]
        other = [t for t in self.seeds.tasks if t.is_classification is False]  # None: unknown
        n = min(6, len(cls), len(other))
        shots = [(t.instruction, True) for t in rng.sample(cls, n)]
        shots += [(t.instruction, False) for t in rng.sample(other, n)]
        rng.shuffle(shots)
        # Output-first examples show several labels, so prefer seeds with several instances.
        cls_by_richness = sorted(cls, key=lambda t: -len({i.output for i in t.instances}))
        with_input = [t for t in other if t.instances[0].input.strip()]
        without_input = [t for t in other if not t.instances[0].input.strip()]
        ordinary = rng.sample(with_input, min(3, len(with_input)))
        ordinary += rng.sample(without_input, min(2, len(without_input)))
        rng.shuffle(ordinary)
        # An output-first example needs inputs: the parser rejects a label without one.
        labelled = [
            (t.instruction, [i for i in t.instances if i.input.strip()]) for t in cls_by_richness
        ]
        instance_examples = {
            False: [(t.instruction, list(t.instances)) for t in ordinary],
            True: [(text, insts) for text, insts in labelled if insts][:3],
        }
        return shots, instance_examples

    # -- requests ------------------------------------------------------------------------

    def _request(self, tag: str, stage: Stage, prompt: str, params: SamplingParams) -> Request:
        return Request(f"{tag}/{stage}/{request_digest(prompt, params)}", stage, prompt, params)

    def _instruction_request(self, round_number: int, slot: int) -> Request:
        cfg = self.config
        eligible = bisect_left(self._pool_rounds, round_number - cfg.window[1])
        examples = choose_examples(
            self.seeds.tasks,
            _Prefix(self.pool, eligible),
            total=cfg.num_examples,
            from_machine=cfg.num_machine_examples,
            rng=rng_for(cfg.seed, round_number, slot),
            version=self._sampling,
        )
        last = cfg.num_examples + cfg.new_per_prompt
        if cfg.mode == "alpaca":
            prompt = render_alpaca(self.prompts, examples)
            stop = f"### Task {last + 1}"
        else:
            prompt = render_instruction_list(self.prompts, [e.instruction for e in examples])
            stop = f"\n{last + 1}."
        temperature, top_p, presence, max_tokens = cfg.teacher.instruction_sampling()
        params = SamplingParams(
            temperature=temperature,
            top_p=top_p,
            max_tokens=max_tokens,
            presence_penalty=presence,
            stop=(stop,),
            seed=_derived_seed(cfg.seed, round_number, slot),
        )
        return self._request(f"r{round_number}/p{slot}", "instructions", prompt, params)

    async def _answer(self, round_number: int, request: Request) -> Completion:
        cached = self.run.replay.get(request.key)
        if cached is not None:
            self._replayed += 1
            return cached
        if self._stopping or self._finishing:
            raise _Stop
        judged = request.stage == "judge"
        backend = self.judge_backend if judged else self.backend
        gate = self._judge_gate if judged else self._gate
        assert gate is not None
        await gate.acquire(round_number, CHAIN_HEADS if request.stage == "instructions" else 0)
        try:
            if self._stopping or self._finishing:
                raise _Stop
            if self._budget is not None:
                self._budget.check(self.run.state.usage)  # raises before anything is sent
            self._sending += 1
            sent = time.monotonic()
            try:
                (completion,) = await backend.complete([request])
                self._note_latency(request.stage, time.monotonic() - sent)
            except RequestRefused as refused:
                # A poison request: logged like an answer, so a resume replays the refusal
                # instead of paying for it again, and the pool stays deterministic.
                completion = Completion(text="", finish_reason=REFUSED, refusal=refused.message)
            except SendsHeld:
                raise _Stop from None  # it waited for its turn and was never sent
            finally:
                self._sending -= 1
        finally:
            gate.release()
        self._sent += 1
        self.run.log_response(request.key, round_number, request.stage, completion)
        return completion

    # -- one round -----------------------------------------------------------------------

    async def _round(self, round_number: int) -> _RoundResult:
        requests = [
            self._instruction_request(round_number, slot) for slot in range(self.config.window[0])
        ]
        completions = await asyncio.gather(
            *(self._spawn(self._answer(round_number, r)) for r in requests)
        )
        # Novelty is decided in round order, so the index never depends on timing.
        turn = self._novelty_turn
        assert turn is not None
        async with turn:
            await turn.wait_for(lambda: self._novelty_round == round_number)
        result = _RoundResult()
        admitted = await self._screen(completions, result.rejections)
        async with turn:
            self._novelty_round += 1
            turn.notify_all()
        if self.config.mode == "alpaca":
            for item in admitted:
                assert item.output is not None  # check_output rejected None
                instances = [Instance(input=item.input, output=item.output.strip())]
                result.tasks.append((item.seq, item.instruction, None, instances))
            if self.config.judge.enabled:
                # Before the commit, so that pool.jsonl holds every task with its judgement.
                result.judgements = await asyncio.gather(
                    *(
                        self._spawn(self._judge_task(round_number, pos, instruction, instances))
                        for pos, (_, instruction, _, instances) in enumerate(result.tasks)
                    )
                )
            return result
        outcomes = await asyncio.gather(
            *(
                self._spawn(self._finish_task(round_number, pos, item))
                for pos, item in enumerate(admitted)
            )
        )
        for task, rejections, judgement in outcomes:
            result.rejections.extend(rejections)
            if task is not None:
                result.tasks.append(task)
                if judgement is not None:
                    result.judgements.append(judgement)
        return result

    async def _finish_task(
        self, round_number: int, pos: int, item: _Admitted
    ) -> tuple[
        tuple[int, str, bool | None, list[Instance]] | None, list[dict[str, Any]], Judgement | None
    ]:
        """Complete an admitted instruction; with the judge on, rate it once it is complete.

        Judged at once rather than after the round's slowest task, so a round commits
        about one request's latency sooner.
        """
        task, rejections = await self._complete_task(round_number, pos, item)
        if task is None or not self.config.judge.enabled:
            return task, rejections, None
        _, instruction, _, instances = task
        return task, rejections, await self._judge_task(round_number, pos, instruction, instances)

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` as a task that the run cancels and awaits before it returns.

        When one request of a round fails, asyncio.gather leaves the others running; they
        must land in the log (a stop or a spent budget waits for them), never after it closed.
        """
        task = asyncio.ensure_future(coro)
        self._live.add(task)
        task.add_done_callback(self._live.discard)
        return task

    async def _screen(
        self, completions: Sequence[Completion], rejections: list[dict[str, Any]]
    ) -> list[_Admitted]:
        """Parse, filter and check novelty; admitted instructions join the index at once.

        A round's candidates take tens to hundreds of milliseconds against a large pool, so
        the loop is let go between them: answers that arrive meanwhile are read and new
        requests sent, instead of waiting (the teacher idles while they wait). The novelty
        turn stays with this round, so decisions keep their order.
        """
        admitted: list[_Admitted] = []
        alpaca = self.config.mode == "alpaca"
        yielded = time.perf_counter()
        for completion in completions:
            if completion.refusal is not None:
                rejections.append(_rejection("instructions", REFUSED, "", completion.refusal))
                continue
            if reasoning_only(completion):
                detail = reasoning_detail(completion, REASONING_LIMITS["instructions"])
                rejections.append(_rejection("instructions", REASONING_ONLY, "", detail))
                continue
            truncated = is_truncated(completion.finish_reason)
            items: Sequence[Candidate | Unparsed | str]
            if alpaca:
                items = parse_alpaca(completion.text, truncated=truncated)
            else:
                continued = self.config.teacher.api == "completions"
                items = parse_instruction_list(
                    completion.text, continued=continued, truncated=truncated
                )
            for item in items:
                if time.perf_counter() - yielded > SCREEN_SLICE:
                    await asyncio.sleep(0)
                    yielded = time.perf_counter()
                if isinstance(item, Unparsed):
                    rejections.append(_rejection("instructions", item.reason, "", item.text))
                    continue
                cand = Candidate(item) if isinstance(item, str) else item
                verdict = self._filters.check(cand.instruction)
                if verdict is None and alpaca:
                    verdict = self._filters.check_sizes(cand.input, cand.output)
                    verdict = verdict or check_output(cand.input, cand.output)
                if verdict is not None:
                    limits = self.config.filters
                    rejections.append(
                        _rejection(
                            "instructions",
                            verdict.reason,
                            clip(cand.instruction, limits.max_instruction_chars),
                            verdict.detail,
                            **self._clipped_fields(cand),
                        )
                    )
                    continue
                extra = {"input": cand.input, "output": cand.output} if alpaca else {}
                # The best match, not the first one found: which match an early exit finds
                # depends on the index's internals, so the log would differ after a resume.
                match = self.index.best_above(cand.instruction)
                if match is not None:
                    detail = f"ROUGE-L {match.score:.3f} with: {match.text}"
                    rejections.append(
                        _rejection(
                            "instructions", "near_duplicate", cand.instruction, detail, **extra
                        )
                    )
                    continue
                vector = None
                if self.semantic is not None:
                    vector = self.semantic.embed(cand.instruction)
                    near = self.semantic.best_above(vector)
                    if near is not None:
                        detail = f"cosine {near.score:.3f} with: {near.text}"
                        rejections.append(
                            _rejection(
                                "instructions",
                                "semantic_duplicate",
                                cand.instruction,
                                detail,
                                **extra,
                            )
                        )
                        continue
                    self.semantic.add(cand.instruction, vector)
                self.index.add(cand.instruction)
                admitted.append(
                    _Admitted(self._next_seq, cand.instruction, cand.input, cand.output)
                )
                self._next_seq += 1
        return admitted

    def _clipped_fields(self, cand: Candidate) -> dict[str, Any]:
        """Return an alpaca candidate's input and output for its rejection, within the limits."""
        if self.config.mode != "alpaca":
            return {}
        limits = self.config.filters
        output = cand.output if cand.output is None else clip(cand.output, limits.max_output_chars)
        return {"input": clip(cand.input, limits.max_input_chars), "output": output}

    def _classify_request(
        self, tag: str, instruction: str, retry_seed: int | None = None
    ) -> Request:
        """Ask whether an instruction is a classification task: greedy, or sampled to retry."""
        prompt = render_classify(self.prompts, self._classify_examples, instruction)
        limit = self.config.teacher.classify_max_tokens
        if retry_seed is None:
            params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=limit, stop=("\n",))
            return self._request(tag, "classify", prompt, params)
        params = SamplingParams(
            temperature=0.7, top_p=1.0, max_tokens=limit, stop=("\n",), seed=retry_seed
        )
        return self._request(tag + "/retry", "classify", prompt, params)

    def _instances_request(self, tag: str, instruction: str, is_cls: bool, seed: int) -> Request:
        """Ask for instances: input-first for ordinary tasks, output-first for classification."""
        cfg = self.config.teacher
        prompt = render_instances(
            self.prompts, self._instance_examples[is_cls], instruction, output_first=is_cls
        )
        params = SamplingParams(
            temperature=cfg.instances_temperature,
            top_p=1.0,
            max_tokens=cfg.instances_max_tokens,
            stop=("\nTask:", "Task:"),
            seed=seed,
        )
        return self._request(tag, "instances", prompt, params)

    def _judge_request(
        self,
        tag: str,
        instruction: str,
        instances: Sequence[Instance],
        retry_seed: int | None = None,
    ) -> Request:
        """Ask the judge to rate a complete task: greedy, or sampled to retry."""
        prompt = render_judge(self.prompts, instruction, instances)
        api = self.config.judge.api or self.config.teacher.api
        # A continued "Score:" line ends at the blank line after its reason; a chat answer
        # may hold a blank line between its labels, so it runs to its token limit instead.
        stop = ("\n\n",) if api == "completions" else ()
        limit = self.config.judge.max_tokens
        if retry_seed is None:
            params = SamplingParams(temperature=0.0, top_p=1.0, max_tokens=limit, stop=stop)
            return self._request(tag, "judge", prompt, params)
        params = SamplingParams(
            temperature=0.7, top_p=1.0, max_tokens=limit, stop=stop, seed=retry_seed
        )
        return self._request(tag + "/retry", "judge", prompt, params)

    async def _judge_task(
        self, round_number: int, pos: int, instruction: str, instances: Sequence[Instance]
    ) -> Judgement:
        """Rate a complete task; an unreadable verdict is asked once more, then recorded."""
        model = self.config.judge.model or self.config.teacher.model
        tag = f"r{round_number}/j{pos}"
        answers: list[str] = []
        thinking = ""  # why an answer held no verdict, when its limit went on reasoning
        for retry_seed in (None, _derived_seed(self.config.seed, round_number, 3000 + pos)):
            # A greedy retry would repeat itself; the second asks with sampling and a seed.
            request = self._judge_request(tag, instruction, instances, retry_seed)
            answer = await self._answer(round_number, request)
            if answer.refusal is not None:
                return Judgement(score=None, reason=f"judge refused: {answer.refusal}", model=model)
            verdict = parse_verdict(answer.text)
            if verdict is not None:
                return Judgement(score=verdict.score, reason=verdict.reason, model=model)
            if reasoning_only(answer):
                thinking = (
                    f"{REASONING_ONLY}: {reasoning_detail(answer, REASONING_LIMITS['judge'])}"
                )
            answers.append(answer.text)
        return Judgement(score=None, reason=thinking or unparsed_reason(*answers), model=model)

    def preview(self) -> list[Request]:
        """Return one request of each kind the next round would send, for --dry-run.

        The instruction request is exactly the next round's first; classify and instance
        requests are shown for seed instructions, as generated ones do not exist yet.
        """
        round_number = self.run.state.rounds_committed
        requests = [self._instruction_request(round_number, 0)]
        if self.config.mode == "alpaca":
            return requests + self._judge_preview(round_number)
        tag = f"r{round_number}/t0"
        ordinary = next((t for t in self.seeds.tasks if t.is_classification is False), None)
        labelled = next((t for t in self.seeds.tasks if t.is_classification), None)
        first = (ordinary or labelled or self.seeds.tasks[0]).instruction
        requests.append(self._classify_request(tag, first))
        seed = _derived_seed(self.config.seed, round_number, 2000)
        for task, is_cls in ((ordinary, False), (labelled, True)):
            if task is not None:
                requests.append(self._instances_request(tag, task.instruction, is_cls, seed))
        return requests + self._judge_preview(round_number)

    def _judge_preview(self, round_number: int) -> list[Request]:
        """Return the judge's request for a seed task, when the judge is on (for --dry-run)."""
        if not self.config.judge.enabled:
            return []
        task = self.seeds.tasks[0]
        return [self._judge_request(f"r{round_number}/j0", task.instruction, task.instances)]

    async def _complete_task(
        self, round_number: int, pos: int, item: _Admitted
    ) -> tuple[tuple[int, str, bool | None, list[Instance]] | None, list[dict[str, Any]]]:
        """Classify an admitted instruction and generate its instances."""
        tag = f"r{round_number}/t{pos}"
        rejections: list[dict[str, Any]] = []
        answer = await self._answer(round_number, self._classify_request(tag, item.instruction))
        if answer.refusal is not None:
            return None, [
                _rejection("classify", REFUSED, item.instruction, answer.refusal, seq=item.seq)
            ]
        if (thinking := _reasoning_rejection("classify", item, answer)) is not None:
            return None, [thinking]  # a sampled retry would think as long: no second try
        is_cls = parse_yes_no(answer.text)
        if is_cls is None:
            # A greedy retry would repeat itself; sample once more instead.
            retry_seed = _derived_seed(self.config.seed, round_number, 1000 + pos)
            second = await self._answer(
                round_number, self._classify_request(tag, item.instruction, retry_seed)
            )
            if second.refusal is not None:
                rejection = _rejection(
                    "classify", REFUSED, item.instruction, second.refusal, seq=item.seq
                )
                return None, [rejection]
            if (thinking := _reasoning_rejection("classify", item, second)) is not None:
                return None, [thinking]
            is_cls = parse_yes_no(second.text)
            if is_cls is None:
                detail = f"answers {answer.text.strip()[:60]!r} and {second.text.strip()[:60]!r}"
                rejections.append(
                    _rejection(
                        "classify",
                        "unparseable_classification",
                        item.instruction,
                        detail,
                        seq=item.seq,
                    )
                )
                return None, rejections
        seed = _derived_seed(self.config.seed, round_number, 2000 + pos)
        reply = await self._answer(
            round_number, self._instances_request(tag, item.instruction, is_cls, seed)
        )
        if reply.refusal is not None:
            rejection = _rejection(
                "instances", REFUSED, item.instruction, reply.refusal, seq=item.seq
            )
            return None, [rejection]
        if (thinking := _reasoning_rejection("instances", item, reply)) is not None:
            return None, [thinking]
        parsed = parse_instances(
            reply.text, output_first=is_cls, truncated=is_truncated(reply.finish_reason)
        )
        pairs: list[tuple[str, str]] = []
        for entry in parsed:
            if isinstance(entry, Unparsed):
                rejections.append(
                    _rejection(
                        "instances", entry.reason, item.instruction, entry.text, seq=item.seq
                    )
                )
            else:
                pairs.append((entry.input, entry.output))
        limits = self.config.filters
        checked = check_instances(
            pairs,
            self.config.max_instances,
            max_input_chars=limits.max_input_chars,
            max_output_chars=limits.max_output_chars,
        )
        for verdict, task_input, output in checked.dropped:
            rejections.append(
                _rejection(
                    "instances",
                    verdict.reason,
                    item.instruction,
                    verdict.detail,
                    seq=item.seq,
                    input=task_input,
                    output=output,
                )
            )
        if checked.task_verdict is not None:
            rejections.append(
                _rejection(
                    "instances",
                    checked.task_verdict.reason,
                    item.instruction,
                    checked.task_verdict.detail,
                    seq=item.seq,
                    is_classification=is_cls,
                )
            )
            return None, rejections
        instances = [Instance(input=i, output=o) for i, o in checked.kept]
        return (item.seq, item.instruction, is_cls, instances), rejections

    def _commit(self, round_number: int, result: _RoundResult) -> None:
        tasks = [
            Task(
                id=f"task_{len(self.pool) + n + 1:06d}",
                instruction=instruction,
                instances=instances,
                is_classification=is_cls,
                round=round_number,
                seq=seq,
                judge=result.judgements[n] if result.judgements else None,
            )
            for n, (seq, instruction, is_cls, instances) in enumerate(result.tasks)
        ]
        self.run.commit_round(round_number, tasks, result.rejections)
        self._commit_times.append(time.monotonic())  # the commit rate, for head_lead
        self.pool.extend(tasks)
        self._pool_rounds.extend([round_number] * len(tasks))

    # -- the loop ------------------------------------------------------------------------

    def _per_round(self) -> float | None:
        """Return the tasks a round is expected to add; None while rounds have added none."""
        state = self.run.state
        if state.rounds_committed == 0:
            # Nothing measured yet: expect a share of the tasks a round asks for, so that a
            # short run does not start a whole window of rounds it will never need.
            cfg = self.config
            return cfg.window[0] * cfg.new_per_prompt * FIRST_ROUND_YIELD
        if state.accepted == 0:
            return None
        return state.accepted / state.rounds_committed

    def _rounds_wanted(self) -> float:
        """Return how many rounds in flight the target needs by the latest estimate."""
        # 25% headroom: a round short of the target costs a full round-trip of latency.
        return self._rounds_to_target(self._per_round(), 0.8)

    def _rounds_to_target(self, per_round: float | None, counted: float = 1.0) -> float:
        """Return the rounds the rest of the target takes if each adds `counted` x `per_round`."""
        if per_round is None or per_round <= 0:
            return math.inf
        remaining = self.config.target - self.run.state.accepted
        return math.ceil(remaining / (per_round * counted))

    def _want_more_rounds(self, in_flight: int) -> bool:
        """Avoid paying for rounds that the target will not need (they stay logged anyway)."""
        return in_flight < self._rounds_wanted()

    def _last_wanted_round(self, next_commit: int) -> float:
        """Return the last round the target needs by the latest estimate (as started above).

        Rounds are started on the estimate of their time; the first ones on a guess
        (FIRST_ROUND_YIELD). Those started past this round send nothing until it says they
        are needed: the gate holds them (PriorityGate.hold_above).
        """
        return next_commit + max(1, self._rounds_wanted()) - 1

    def _last_needed_round(self, next_commit: int) -> float:
        """Return the last round the target needs by the latest yield, with no margin.

        The rounds after it, up to _last_wanted_round, are the margin: spares at the gate.
        The latest yield is the lower of the whole run's and the last RECENT_ROUNDS rounds'.
        """
        per_round = self._per_round()
        committed = self.run.state.rounds_committed
        if per_round is not None and committed >= RECENT_ROUNDS:
            since = bisect_left(self._pool_rounds, committed - RECENT_ROUNDS)
            per_round = min(per_round, (len(self._pool_rounds) - since) / RECENT_ROUNDS)
        return next_commit + max(1, self._rounds_to_target(per_round)) - 1

    def _spare_seconds(self) -> float:
        """Return how long after the needed rounds' last request a spare round may go."""
        seconds = self._stage_seconds.get("instructions")
        return math.inf if seconds is None else SPARE_SHARE * seconds

    def _note_latency(self, stage: str, seconds: float) -> None:
        """Fold one answer's latency into its stage's running mean (for head_lead)."""
        mean = self._stage_seconds.setdefault(stage, seconds)
        self._stage_seconds[stage] = mean + STAGE_WEIGHT * (seconds - mean)

    def _window_full(self, started: int, in_flight: dict[int, Any]) -> bool:
        """Say whether the lookahead stops new rounds while the teacher has free slots."""
        gate = self._gate
        return (
            gate is not None
            and started > self.config.window[1]
            and gate.waiting == 0
            and gate.in_use < self._slots()
            and self._want_more_rounds(len(in_flight))
        )

    def _log_spend(self, prefix: str) -> Spend:
        """Return a callback that logs a backend's own paid answers (room probes).

        They are logged like the run's answers, in the round being written, so the budget,
        costs and usage count them; their keys are never asked for, so none is replayed.
        `prefix` marks the judge's, priced at the judge's price.
        """

        def log_spend(stage: str, key: str, answer: Completion) -> None:
            self.run.log_response(key, self.run.state.rounds_committed, prefix + stage, answer)

        return log_spend

    def _slots(self, backend: Backend | None = None) -> int:
        """Return how many requests may be in flight now: the backend's and the config's limit."""
        backend = backend or self.backend
        limits = [backend.concurrency(), self.config.teacher.concurrency]
        numbers = [n for n in limits if isinstance(n, int)]
        slots = min(numbers) if numbers else self.config.teacher.max_concurrency
        # A backend that gathers requests (the Batch API) needs a whole window in flight.
        return max(slots, backend.min_concurrency or 1)

    async def run_until_target(self, *, handle_signals: bool = False) -> Progress:
        """Fetch and apply rounds until the pool reaches the target; resumable at any point.

        With `handle_signals` (the CLI's choice; only in the main thread), SIGINT and
        SIGTERM stop the run gently: nothing more is sent, the requests in flight are
        given up to the request timeout to land in the log, complete rounds are committed,
        and Interrupted is raised. A second signal stops at once (KeyboardInterrupt); what
        was logged is replayed on resume either way.
        """
        start = time.monotonic()
        state = self.run.state
        self._novelty_turn = asyncio.Condition()
        self._gate = PriorityGate(self._slots)
        self._judge_gate = self._gate
        if self.judge_backend is not self.backend:
            # Its own endpoint, its own limit: the judge never waits for the teacher's slots.
            self._judge_gate = PriorityGate(lambda: self._slots(self.judge_backend))
            self.judge_backend.watch_capacity(self._judge_gate.poke)
            self.judge_backend.watch_spend(self._log_spend("judge-"))
        self._stop_event = asyncio.Event()
        self._hold_sends(False)  # a backend held by an earlier run on it sends again
        self.backend.watch_capacity(self._gate.poke)
        self.backend.watch_spend(self._log_spend(""))
        self._open_semantic()
        idle_rounds = 0
        next_commit = state.rounds_committed
        next_start = next_commit
        in_flight: dict[int, asyncio.Task[_RoundResult]] = {}
        stop_waiter = asyncio.ensure_future(self._stop_event.wait())
        restore_signals = self._catch_signals() if handle_signals else None
        restore_collector = _quiet_collector()
        try:
            while state.accepted < self.config.target:
                if self._stopping:
                    raise _Stop
                if self._gate is not None:
                    self._gate.hold_above(self._last_wanted_round(next_commit))
                    self._gate.hold_spares(
                        self._last_needed_round(next_commit), self._spare_seconds()
                    )
                while next_start <= next_commit + self.config.window[1] and (
                    not in_flight or self._want_more_rounds(len(in_flight))
                ):
                    in_flight[next_start] = asyncio.create_task(self._round(next_start))
                    next_start += 1
                if self._gate is not None:
                    # Only timing changes: novelty and commits still go in round order.
                    lead = head_lead(self._commit_times, self._stage_seconds)
                    if next_commit > self.config.window[1] and not self._want_more_rounds(
                        len(in_flight)
                    ):
                        # The last rounds the target needs have all started, and the run
                        # ends with the last of their chains: their instruction requests go
                        # before every other round's later stages. Past the first window
                        # only: a shorter run would hold back its first commits for all of it.
                        lead = math.inf
                    self._gate.lead(CHAIN_HEADS, lead)
                # Said only when it lasts, and past the first window: while the limit is still
                # growing at start-up, free slots beside a full window are not a cap.
                full = self._window_full(next_start - next_commit, in_flight)
                self._window_share += WINDOW_SHARE_WEIGHT * (full - self._window_share)
                self._window_limited = (
                    self._window_share > 0.5 and next_commit > self.config.window[1]
                )
                waiting = in_flight[next_commit]
                while not waiting.done():
                    done, _ = await asyncio.wait(
                        [*in_flight.values(), stop_waiter], return_when=asyncio.FIRST_COMPLETED
                    )
                    if stop_waiter.done():
                        raise _Stop
                    for task in done:
                        if (error := task.exception()) is not None:
                            raise error
                accepted_before = state.accepted
                self._commit(next_commit, in_flight.pop(next_commit).result())
                gc.freeze()  # what the round added joins the frozen heap (_quiet_collector)
                next_commit += 1
                idle_rounds = 0 if state.accepted > accepted_before else idle_rounds + 1
                if idle_rounds >= MAX_IDLE_ROUNDS:
                    raise TeacherError(
                        f"no task accepted in the last {idle_rounds} rounds; the teacher's "
                        "answers are unusable (see rejected.jsonl for why)"
                    )
                if self._progress is not None:
                    self._progress(self._snapshot(start))
            await self._finish(in_flight, stop_waiter, start)
        except (BudgetSpent, _Stop) as stop:
            # Nothing more is sent (every send checks the budget and the stop first, and
            # what waits in the backend for its turn is held): let what is on the wire land
            # in the log, then commit the rounds that completed.
            self._hold_sends()
            if self._stopping:
                drained = await _within(self._drain(in_flight), self.config.teacher.timeout)
                if not drained:
                    log.warning(
                        "%d requests still unanswered after %g s (--timeout); stopping "
                        "without them",
                        self._sending,
                        self.config.teacher.timeout,
                    )
            else:
                await self._drain(in_flight)
            while next_commit in in_flight and _succeeded(in_flight[next_commit]):
                self._commit(next_commit, in_flight.pop(next_commit).result())
                next_commit += 1
            self.run.save_state()  # so `status` shows what was spent, committed or not
            progress = self._snapshot(start)
            if isinstance(stop, BudgetSpent):
                stop.progress = progress
            if state.accepted < self.config.target:
                if self._stopping:
                    raise Interrupted(self._stopping, progress) from None
                raise
        finally:
            if restore_signals is not None:
                restore_signals()
            stop_waiter.cancel()
            tasks = [*in_flight.values(), *self._live, stop_waiter]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            restore_collector()
            if self.semantic is not None:
                self.semantic.close()
        return self._snapshot(start)

    def _catch_signals(self) -> Callable[[], None]:
        """Handle STOP_SIGNALS in the event loop (see _on_signal); return the undo.

        A signal the process ignores stays ignored: `nohup` and background jobs of a shell
        ignore SIGINT on purpose.
        """
        loop = asyncio.get_running_loop()
        caught = [s for s in STOP_SIGNALS if signal.getsignal(s) is not signal.SIG_IGN]
        if threading.current_thread() is not threading.main_thread():
            caught = []  # only the main thread receives signals
        for signum in caught:
            loop.add_signal_handler(signum, self._on_signal, signum)

        def restore() -> None:
            for signum in caught:
                loop.remove_signal_handler(signum)

        return restore

    def _on_signal(self, signum: int) -> None:
        """Stop sending on the first signal; on the second, stop at once."""
        name = signal.Signals(signum).name
        if self._stopping is not None:
            raise KeyboardInterrupt(f"stopped at once by a second {name}")
        self._stopping = name
        self._hold_sends()
        assert self._stop_event is not None
        self._stop_event.set()
        if self._finishing:
            log.warning("%s: exiting without the %d requests still in flight", name, self._sending)
            return
        log.warning(
            "%s: sending nothing more; waiting up to %g s for the %d requests in flight, then "
            "committing complete rounds (%s again stops at once)",
            name,
            self.config.teacher.timeout,
            self._sending,
            name,
        )

    def _open_semantic(self) -> None:
        """Load the semantic index (seeds, then admitted instructions) when it is enabled."""
        threshold = self.config.filters.semantic_threshold
        if threshold is None or self.semantic is not None:
            return
        from selfinstruct.semantic import SemanticIndex

        self.semantic = SemanticIndex(threshold, log=self.run.path / SEMANTIC_LOG)
        self.semantic.load(self._index_texts)

    def _hold_sends(self, held: bool = True) -> None:
        """Have the backends send nothing more (or, with held=False, send again)."""
        if held and self._gate is not None:
            # Rounds held back for want of need now meet the stop (or the finish) and end.
            self._gate.hold_above(math.inf)
            self._gate.hold_spares(math.inf, math.inf)
        self.backend.hold(held)
        if self.judge_backend is not self.backend:
            self.judge_backend.hold(held)

    async def _finish(
        self,
        in_flight: dict[int, asyncio.Task[_RoundResult]],
        stop_waiter: asyncio.Future[Any],
        start: float,
    ) -> None:
        """Let the requests on the wire land in the log once the target is reached.

        They are paid for whether or not the run waits; logged, a longer --target replays
        them instead of paying again. Nothing new is sent and no further round is committed,
        so the pool is the same whatever the timing. A stop signal or --timeout ends the wait.
        """
        self._finishing = True
        self._hold_sends()
        # A batch goes on at OpenAI whether or not the run waits; a later run finds it.
        prompt = self.backend.answers_promptly and self.judge_backend.answers_promptly
        if self._sending and prompt:
            log.info("target reached; letting the %d requests on the wire land", self._sending)
            if self._progress is not None:
                self._progress(dataclasses.replace(self._snapshot(start), landing=self._sending))
            drain = asyncio.ensure_future(self._drain(in_flight))
            try:
                await asyncio.wait(
                    [drain, stop_waiter],
                    timeout=self.config.teacher.timeout,
                    return_when=asyncio.FIRST_COMPLETED,
                )
            finally:
                drain.cancel()
                await asyncio.gather(drain, return_exceptions=True)
        self.run.save_state()  # the record's usage counts what landed after the last commit

    async def _drain(self, in_flight: dict[int, asyncio.Task[_RoundResult]]) -> None:
        """Once the budget is spent or a stop signal came, let the requests on the wire land.

        No new request is sent (every send checks the budget and the stop first), so each
        round either finishes from answers it has, fails with BudgetSpent or _Stop, or waits
        for a novelty turn that an earlier, failed round will never pass on.
        """

        def stuck(round_number: int) -> bool:
            turn_holder = in_flight.get(self._novelty_round)
            return (
                round_number > self._novelty_round
                and turn_holder is not None
                and turn_holder.done()
            )

        while True:
            live = [t for r, t in in_flight.items() if not t.done() and not stuck(r)]
            if live:
                await asyncio.wait(live, return_when=asyncio.FIRST_COMPLETED)
            elif self._sending:
                await asyncio.sleep(0.02)  # a stuck round's request is still on the wire
            else:
                return

    def _snapshot(self, start: float) -> Progress:
        state = self.run.state
        return Progress(
            accepted=state.accepted,
            target=self.config.target,
            rounds=state.rounds_committed,
            rejections=Counter(state.rejections),
            accepted_this_session=state.accepted - self._accepted_at_start,
            elapsed=time.monotonic() - start,
            requests_sent=self._sent,
            requests_replayed=self._replayed,
            window_limited=self._window_limited,
        )


def _quiet_collector() -> Callable[[], None]:
    """Freeze the heap and collect the young generation less often; return the undo.

    The pool and the index only grow and live as long as the run. Left to the cyclic
    collector, every full collection walks all of them (hundreds of thousands of objects:
    ~150-250 ms with the event loop stopped, repeatedly, at 16K tasks), and answers pile up
    meanwhile. Freezing after loading (and, in the loop, after each commit) keeps full
    collections to what is new; nothing is lost, as reference counting still frees frozen
    objects, and the undo unfreezes everything. With hundreds of requests a second, the
    default young-generation threshold (700) also ran a collection every few milliseconds
    that promoted each in-flight request's objects instead of letting them die young
    (3.4 s of 84 s client CPU in a 16K run; 0.7 s with YOUNG_THRESHOLD).
    """
    thresholds = gc.get_threshold()
    gc.collect()
    gc.freeze()
    gc.set_threshold(max(YOUNG_THRESHOLD, thresholds[0]), *thresholds[1:])

    def restore() -> None:
        gc.set_threshold(*thresholds)
        gc.unfreeze()

    return restore


def _succeeded(task: asyncio.Task[_RoundResult]) -> bool:
    return task.done() and not task.cancelled() and task.exception() is None


async def _within(awaitable: Coroutine[Any, Any, None], seconds: float) -> bool:
    """Await `awaitable` for at most `seconds`; say whether it finished."""
    try:
        await asyncio.wait_for(awaitable, seconds)
    except asyncio.TimeoutError:
        return False
    return True


# The sampling fields that every response-log key hashes, by name: the fields of
# SamplingParams when keys were first written (selfinstruct 0.1.0). Never edit this list:
# every logged response of every existing run is found by these keys. A field added to
# SamplingParams later (with a default) enters a key only when a request sets it to
# something other than that default, so requests that do not use it keep their keys.
KEY_FIELDS = (
    "temperature",
    "top_p",
    "max_tokens",
    "presence_penalty",
    "frequency_penalty",
    "stop",
    "seed",
)


def request_digest(prompt: str, params: SamplingParams) -> str:
    """Return the content part of a request's log key: what exactly was asked.

    The prompt and the KEY_FIELDS are hashed as they always were (a JSON list of the
    prompt and a sorted object of the fields); a later field joins that object only when
    it differs from its default, so upgrading never makes a resumed run pay again.
    """
    fields = {name: getattr(params, name) for name in KEY_FIELDS}
    for extra in dataclasses.fields(params):
        if extra.name not in fields:
            value = getattr(params, extra.name)
            if extra.default is not dataclasses.MISSING:
                default: Any = extra.default
            elif extra.default_factory is not dataclasses.MISSING:
                default = extra.default_factory()
            else:
                default = dataclasses.MISSING  # no default: always part of the key
            if value != default:
                fields[extra.name] = value
    payload = json.dumps([prompt, fields], sort_keys=True, default=list)
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def _derived_seed(run_seed: int, round_number: int, slot: int) -> int:
    data = f"{run_seed}:{round_number}:{slot}".encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big") >> 1
