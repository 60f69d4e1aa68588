"""The bootstrap pipeline: the one place with concurrency.

Rounds are fetched concurrently but applied strictly in round order, and round r samples
machine examples only from rounds < r - lookahead, so the pool depends on round numbers and
teacher answers alone, never on timing, concurrency or interruptions.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from bisect import bisect_left
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, overload

from selfinstruct.backends.base import Backend
from selfinstruct.config import RunConfig
from selfinstruct.filters import InstructionFilters, check_output
from selfinstruct.parse import Unparsed, parse_alpaca
from selfinstruct.prompts import PromptSet, render_alpaca
from selfinstruct.records import Completion, Instance, Request, SamplingParams, Task
from selfinstruct.sampling import choose_examples, rng_for
from selfinstruct.seeds import SeedSet
from selfinstruct.similarity import NoveltyIndex
from selfinstruct.store import RunDir


@dataclass(frozen=True)
class Progress:
    """A snapshot for progress displays, taken after each committed round."""

    accepted: int
    target: int
    rounds: int
    rejections: Counter[str]
    accepted_this_session: int
    elapsed: float
    requests_sent: int
    requests_replayed: int


@dataclass
class RunSummary:
    """What a bootstrap invocation did."""

    accepted: int
    target: int
    rounds: int
    rejections: Counter[str] = field(default_factory=Counter)
    accepted_this_session: int = 0
    requests_sent: int = 0
    requests_replayed: int = 0
    seconds: float = 0.0


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


def header_for(config: RunConfig, seeds: SeedSet, prompts: PromptSet) -> dict[str, Any]:
    """Return config.json's content: identity (with content digests) and the full config."""
    from selfinstruct import __version__
    from selfinstruct.config import identity
    from selfinstruct.store import FORMAT

    ident = identity(config)
    ident["seeds.sha256"] = seeds.digest
    ident["prompts.sha256"] = prompts.digest
    return {
        "format": FORMAT,
        "selfinstruct": __version__,
        "identity": ident,
        "config": config.model_dump(mode="json"),
    }


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
    ) -> None:
        from selfinstruct.store import load_pool

        self.config = config
        self.backend = backend
        self.run = run
        self.seeds = seeds
        self.prompts = prompts
        self._progress = progress
        self._filters = InstructionFilters(config.filters, english=config.language == "en")
        self.pool: list[Task] = load_pool(run.path)
        self._pool_rounds = [t.round if t.round is not None else -1 for t in self.pool]
        self.index = NoveltyIndex(config.filters.rouge_threshold, config.filters.tokenizer)
        self.index.add_many(t.instruction for t in seeds.tasks)
        self.index.add_many(t.instruction for t in self.pool)
        self._sent = 0
        self._replayed = 0
        self._accepted_at_start = run.state.accepted

    # -- requests ------------------------------------------------------------------------

    def _instruction_request(self, round_number: int, slot: int) -> Request:
        cfg = self.config
        eligible = bisect_left(self._pool_rounds, round_number - cfg.lookahead)
        examples = choose_examples(
            self.seeds.tasks,
            _Prefix(self.pool, eligible),
            total=cfg.num_examples,
            from_machine=cfg.num_machine_examples,
            rng=rng_for(cfg.seed, round_number, slot),
        )
        prompt = render_alpaca(self.prompts, examples)
        last = cfg.num_examples + cfg.new_per_prompt
        params = SamplingParams(
            temperature=cfg.teacher.temperature,
            top_p=cfg.teacher.top_p,
            max_tokens=cfg.teacher.max_tokens,
            presence_penalty=cfg.teacher.presence_penalty,
            stop=(f"### Task {last + 1}",),
            seed=_derived_seed(cfg.seed, round_number, slot),
        )
        digest = hashlib.sha256(
            json.dumps([prompt, params.__dict__], sort_keys=True, default=list).encode()
        ).hexdigest()[:24]
        return Request(
            f"r{round_number}/p{slot}/instructions/{digest}", "instructions", prompt, params
        )

    async def _answer(self, round_number: int, request: Request) -> Completion:
        cached = self.run.replay.get(request.key)
        if cached is not None:
            self._replayed += 1
            return cached
        (completion,) = await self.backend.complete([request])
        self._sent += 1
        self.run.log_response(request.key, round_number, request.stage, completion)
        return completion

    async def _fetch_round(self, round_number: int) -> list[Completion]:
        requests = [
            self._instruction_request(round_number, slot)
            for slot in range(self.config.prompts_per_round)
        ]
        return list(await asyncio.gather(*(self._answer(round_number, r) for r in requests)))

    # -- applying a round ----------------------------------------------------------------

    def _apply_round(self, round_number: int, completions: Sequence[Completion]) -> None:
        tasks: list[Task] = []
        rejections: list[dict[str, Any]] = []

        def reject(reason: str, instruction: str, detail: str = "", **extra: str | None) -> None:
            rejections.append(
                {
                    "stage": "instructions",
                    "reason": reason,
                    "instruction": instruction,
                    "detail": detail,
                    **extra,
                }
            )

        for completion in completions:
            items = parse_alpaca(completion.text, truncated=completion.finish_reason == "length")
            for item in items:
                if isinstance(item, Unparsed):
                    reject(item.reason, "", item.text)
                    continue
                extra = {"input": item.input, "output": item.output}
                verdict = self._filters.check(item.instruction) or check_output(
                    item.input, item.output
                )
                if verdict is not None:
                    reject(verdict.reason, item.instruction, verdict.detail, **extra)
                    continue
                match = self.index.first_above(item.instruction)
                if match is not None:
                    # Which match an early exit finds depends on the index's internals;
                    # the nearest one does not, so the log is the same after a resume.
                    match = self.index.nearest(item.instruction) or match
                    detail = f"ROUGE-L {match.score:.3f} with: {match.text}"
                    reject("near_duplicate", item.instruction, detail, **extra)
                    continue
                self.index.add(item.instruction)
                assert item.output is not None  # check_output rejected None
                tasks.append(
                    Task(
                        id=f"task_{len(self.pool) + len(tasks) + 1:06d}",
                        instruction=item.instruction,
                        instances=[Instance(input=item.input, output=item.output.strip())],
                        is_classification=None,
                        round=round_number,
                    )
                )
        self.run.commit_round(round_number, tasks, rejections)
        self.pool.extend(tasks)
        self._pool_rounds.extend([round_number] * len(tasks))

    # -- the loop ------------------------------------------------------------------------

    def _want_more_rounds(self, in_flight: int) -> bool:
        """Avoid paying for rounds that the target will not need (they stay logged anyway)."""
        state = self.run.state
        if state.rounds_committed == 0 or state.accepted == 0:
            return True
        per_round = state.accepted / state.rounds_committed
        # 25% headroom: a round short of the target costs a full round-trip of latency.
        return state.accepted + in_flight * per_round * 0.8 < self.config.target

    async def run_until_target(self) -> RunSummary:
        """Fetch and apply rounds until the pool reaches the target; resumable at any point."""
        start = time.monotonic()
        state = self.run.state
        next_commit = state.rounds_committed
        next_start = next_commit
        in_flight: dict[int, asyncio.Task[list[Completion]]] = {}
        try:
            while state.accepted < self.config.target:
                while next_start <= next_commit + self.config.lookahead and (
                    not in_flight or self._want_more_rounds(len(in_flight))
                ):
                    in_flight[next_start] = asyncio.create_task(self._fetch_round(next_start))
                    next_start += 1
                waiting = in_flight[next_commit]
                while not waiting.done():
                    done, _ = await asyncio.wait(
                        in_flight.values(), return_when=asyncio.FIRST_COMPLETED
                    )
                    for task in done:
                        if task.exception() is not None:
                            raise task.exception()  # type: ignore[misc]  # checked not None
                completions = in_flight.pop(next_commit).result()
                self._apply_round(next_commit, completions)
                next_commit += 1
                if self._progress is not None:
                    self._progress(self._snapshot(start))
        finally:
            for task in in_flight.values():
                task.cancel()
            await asyncio.gather(*in_flight.values(), return_exceptions=True)
        return RunSummary(
            accepted=state.accepted,
            target=self.config.target,
            rounds=state.rounds_committed,
            rejections=Counter(state.rejections),
            accepted_this_session=state.accepted - self._accepted_at_start,
            requests_sent=self._sent,
            requests_replayed=self._replayed,
            seconds=time.monotonic() - start,
        )

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
        )


def _derived_seed(run_seed: int, round_number: int, slot: int) -> int:
    data = f"{run_seed}:{round_number}:{slot}".encode()
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big") >> 1
