"""Measure the whole pipeline against simulated OpenAI-compatible teachers on 127.0.0.1.

Each simulated teacher is the project's loopback server with the synthetic teacher behind
it: deterministic tasks with a tunable share of near duplicates and blacklisted words,
latency = a fixed part + completion tokens / decode rate. Three kinds of teacher
(selfinstruct/testing/simulated.py):

- refusing:     K requests at once, an instant 429 beyond (a gateway in front of a pool);
- queueing:     K slots and a FIFO queue, never a refusal (`vllm serve`, llama.cpp);
- rate-limited: requests and tokens per minute in OpenAI's x-ratelimit-* headers, 429 and
                Retry-After when spent.

The real CLI runs in a subprocess to the target with default settings, so its CPU time
and peak memory are the tool's alone; the simulated servers run in this process.

Prints: time to N and to the first 100 tasks, requests, teacher utilisation (busy-slot
seconds / (K x wall), start-up included), the ramp (when the first answer came and how many
round trips later the teacher was first 90% busy), busy slots by tenth of the run, the
limit the run ended with, client and server CPU seconds (and, under 90% utilisation, which of them
limits the run), where the idle slot-seconds went (before the first request, while the
client's CPU was saturated, the ramp, after the run's last request, after the last answer,
the rest), peak memory, rejections.

    python benchmarks/throughput.py --mode alpaca --capacity 64 --target 1000
    python benchmarks/throughput.py --capacity 256 --target 5000 --teacher queueing
    python benchmarks/throughput.py --teacher rate-limited --rpm 3000 --tpm 2000000
    python benchmarks/throughput.py --capacity 1024 --target 52000 --save

--save also writes the output to benchmarks/results/throughput-<commit>-<options>.txt,
after the command line, the commit and the load average (how busy the machine was).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path

from evidence import add_save_option, saved_output

import selfinstruct
from selfinstruct.testing.server import OpenAITestServer, RecordedRequest, Reply
from selfinstruct.testing.simulated import QueueingTeacher, RateLimitedTeacher, refusing_server
from selfinstruct.testing.teacher import SyntheticTeacher

GOAL = 0.90  # the utilisation goal
FIRST = 100  # "time to the first 100 tasks"
SAMPLE = 0.1  # seconds between samples of the teachers' load
# The client's CPU is judged over spans this long (/proc counts in 10 ms ticks), and called
# saturated at this share of a core: its one event-loop thread cannot do more.
CPU_SPAN = 1.0
SATURATED = 0.9


def main() -> None:
    """Parse the options, run the measurement, print (and with --save keep) the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", type=int, default=1000, help="tasks to reach (N)")
    parser.add_argument("--capacity", type=int, default=64, help="K: requests each teacher serves")
    parser.add_argument("--servers", type=int, default=1, help="simulated teachers (endpoints)")
    parser.add_argument(
        "--teacher", choices=("refusing", "queueing", "rate-limited"), default="refusing"
    )
    parser.add_argument("--rpm", type=int, default=3000, help="rate-limited: requests per minute")
    parser.add_argument("--tpm", type=int, default=2_000_000, help="rate-limited: tokens per min")
    parser.add_argument("--latency", type=float, default=0.3, help="fixed seconds per request")
    parser.add_argument("--decode-rate", type=float, default=50.0, help="tokens per second")
    parser.add_argument("--instant", action="store_true", help="no latency at all")
    parser.add_argument("--near-duplicate-rate", type=float, default=0.10)
    parser.add_argument("--blacklist-rate", type=float, default=0.04)
    parser.add_argument("--mode", default="self-instruct", choices=("self-instruct", "alpaca"))
    parser.add_argument("--concurrency", default="auto", help="auto (default) or a number")
    parser.add_argument("--prompts-per-round", type=int, default=None)
    parser.add_argument("--timeout", type=float, default=None, help="the run's --timeout")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run directory here")
    add_save_option(parser)
    args = parser.parse_args()

    measure(args)


class _Watched:
    """Pass requests to the teacher; count room probes, note when the first answer is due.

    A room probe asks for one answer token (the client's start-up question: is there a
    free slot?); it is no answer to the run's work, so the ramp is timed from the first
    answer to a real request: its arrival plus its service time (the first served are not
    queued).
    """

    def __init__(self, handler: SyntheticTeacher) -> None:
        self.handler = handler
        self._lock = threading.Lock()
        self.probes = 0
        self.first_answer: float | None = None  # time.monotonic()
        self.first_request: float | None = None
        self.last_request = 0.0  # when the run's last request (not a probe) came
        self.last_answer = 0.0  # when the last answer was due

    def __call__(self, request: RecordedRequest) -> Reply:
        reply = self.handler(request)
        with self._lock:
            now = time.monotonic()
            self.first_request = min(now, self.first_request or now)
            self.last_answer = max(self.last_answer, now + reply.delay)
            if request.body.get("max_tokens") == 1:
                self.probes += 1
            else:
                self.last_request = now
                due = time.monotonic() + reply.delay
                self.first_answer = min(due, self.first_answer or due)
        return reply


class _Counter:
    """Count a growing file's lines, reading only what was appended since the last call."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.lines = 0

    def __call__(self) -> int:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except OSError:
            return self.lines
        self.offset += len(data)
        self.lines += data.count(b"\n")
        return self.lines


def measure(args: argparse.Namespace) -> None:
    """Start the teachers, run the bootstrap to the target, print the figures."""
    # Start-up is timed as a user's: pip compiles an installed package's modules, and an
    # editable install's first run writes them. With PYTHONDONTWRITEBYTECODE set where the
    # benchmark runs, every run would compile the CLI's modules again (~0.15 s on 2 cores).
    compileall.compile_dir(Path(selfinstruct.__file__).parent, quiet=2)
    latency, rate = (0.0, 0.0) if args.instant else (args.latency, args.decode_rate)
    synthetic = SyntheticTeacher(
        latency=latency,
        tokens_per_second=rate,
        near_duplicate_rate=args.near_duplicate_rate,
        blacklist_rate=args.blacklist_rate,
    )
    watched = _Watched(synthetic)
    queues: list[QueueingTeacher] = []
    limiters: list[RateLimitedTeacher] = []
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        out = args.keep or tmp / "run"
        servers = []
        for _ in range(args.servers):
            if args.teacher == "refusing":
                server = refusing_server(watched, args.capacity)
            elif args.teacher == "queueing":
                queue = QueueingTeacher(watched, args.capacity)
                queues.append(queue)
                server = OpenAITestServer(queue, history=0)
            else:
                limiter = RateLimitedTeacher(watched, requests=args.rpm, tokens=args.tpm)
                limiters.append(limiter)
                server = OpenAITestServer(limiter, history=0)
            servers.append(stack.enter_context(server))
        for queue in queues:  # closed before the servers stop, so their threads end at once
            stack.callback(queue.close)
        command = [
            sys.executable, "-m", "selfinstruct", "bootstrap", "--mode", args.mode,
            "--model", "synthetic", "--out", str(out), "--target", str(args.target),
            "--concurrency", args.concurrency,
        ]  # fmt: skip
        for server in servers:
            command += ["--base-url", server.base_url]
        if args.prompts_per_round is not None:
            command += ["--prompts-per-round", str(args.prompts_per_round)]
        if args.timeout is not None:
            command += ["--timeout", str(args.timeout)]
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        before = [s.stats() for s in servers]
        busy_before = [q.busy_seconds for q in queues]
        server_cpu_before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.monotonic()
        log = (tmp / "stderr.txt").open("wb")
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=log)
        # Every SAMPLE s: (seconds since start, slots serving, requests answered or admitted).
        samples: list[tuple[float, int, int]] = []
        cpu_samples: list[tuple[float, float]] = []  # (seconds since start, client CPU s)
        first_at: float | None = None
        reached_at: float | None = None  # when the pool held the target
        pool = _Counter(out / "pool.jsonl")
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            now = time.monotonic() - start
            serving = sum(s.in_flight for s in servers) - sum(q.waiting for q in queues)
            if limiters:
                done = sum(limiter.admitted for limiter in limiters)
            else:
                done = sum(s.stats().answered for s in servers)
            samples.append((now, serving, done))
            cpu = _process_cpu(proc.pid)
            if cpu is not None:
                cpu_samples.append((now, cpu))
            if reached_at is None:
                tasks = pool()
                if first_at is None and tasks >= FIRST:
                    first_at = now
                if tasks >= args.target:
                    reached_at = now
            time.sleep(SAMPLE)
        wall = time.monotonic() - start
        server_cpu_after = resource.getrusage(resource.RUSAGE_SELF)
        after = [s.stats() for s in servers]
        busy_after = [q.busy_seconds for q in queues]
        log.close()
        assert proc.stdout is not None
        stdout = proc.stdout.read().decode()
        stderr = (tmp / "stderr.txt").read_text(errors="replace")
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"bootstrap failed:\n{stdout}{stderr}")
        state = json.loads((out / "state.json").read_text())
        limits_path = out / "limits.json"
        limits = json.loads(limits_path.read_text()) if limits_path.exists() else {}
        if first_at is None and state["accepted"] >= FIRST:
            first_at = wall  # reached between the last sample and the end

    accepted = state["accepted"]
    answered = sum(a.answered - b.answered for a, b in zip(after, before, strict=True))
    refused = sum(
        a.rejected_over_capacity - b.rejected_over_capacity
        for a, b in zip(after, before, strict=True)
    ) + sum(limiter.refused for limiter in limiters)
    if queues:  # service time only: a queued request does not occupy a slot
        busy = sum(a - b for a, b in zip(busy_after, busy_before, strict=True))
    else:
        busy = sum(a.busy_seconds - b.busy_seconds for a, b in zip(after, before, strict=True))
    slots = args.capacity * args.servers
    client_cpu = usage.ru_utime + usage.ru_stime
    server_cpu = (server_cpu_after.ru_utime - server_cpu_before.ru_utime) + (
        server_cpu_after.ru_stime - server_cpu_before.ru_stime
    )
    teacher_desc = "instant" if args.instant else f"{latency}s + tokens/{rate:g} per s"
    kind = args.teacher
    if kind == "rate-limited":
        kind += f" ({args.rpm} requests, {args.tpm} tokens per minute)"
    print(
        f"mode {args.mode}; {args.servers} {kind} teacher(s), K={args.capacity} each; "
        f"latency {teacher_desc}; concurrency {args.concurrency}"
    )
    print(f"bootstrap: {stdout.strip()}")
    print(f"time to {args.target}: {wall:.1f} s ({accepted} tasks accepted)")
    if reached_at is not None:
        # The run reaches the target when the round that crosses it commits; it then lets
        # the requests still on the wire (paid for already) land in the log before exiting.
        print(
            f"target reached at {reached_at:.1f} s; then {wall - reached_at:.1f} s for the "
            "requests still on the wire to land in the log"
        )
    print(
        f"time to the first {FIRST} tasks: "
        + (f"{first_at:.1f} s" if first_at is not None else "not reached")
    )
    print(
        f"requests: {answered} answered, {refused} refused (429); "
        f"{watched.probes} of them room probes (one answer token)"
    )
    if (logged := re.search(r"(\d+) requests", stdout)) is not None:
        # Each request the run logged was answered once; any more answers were to requests
        # it had cut off (--timeout) and sent again: paid twice.
        again = answered - watched.probes - int(logged.group(1))
        print(f"answers paid twice (cut off by the timeout, sent again): {max(0, again)}")
    first = None if watched.first_answer is None else watched.first_answer - start
    if watched.first_request is not None:
        # The client process's own overhead: interpreter, imports, run-directory set-up
        # before the first request; the last write and exit after the last answer.
        print(
            f"process: first request at {watched.first_request - start:.2f} s, the last "
            f"(probes aside) at {watched.last_request - start:.2f} s; "
            f"exit {wall - (watched.last_answer - start):.2f} s after the last answer"
        )
    print("ramp: " + _ramp(args, samples, busy / max(answered, 1), limiters, first))
    if args.teacher == "rate-limited":
        # What the limits allowed over the run: a full minute's worth at the start (the
        # buckets start full, as OpenAI's do), then their refill; the tighter of the two.
        shares = []
        for limiter in limiters:
            per_minute = 1.0 + wall / 60.0
            shares.append(limiter.admitted / (args.rpm * per_minute))
            shares.append(limiter.admitted_tokens / (args.tpm * per_minute))
        utilisation = max(shares, default=0.0)
        print(
            f"rate-limit utilisation: {utilisation:.1%} of what {args.rpm} requests and "
            f"{args.tpm} tokens per minute allowed (a full minute at the start, then refill)"
        )
        lowest = min((limiter.lowest_remaining for limiter in limiters), default=(0, 0))
        print(f"lowest remaining: {lowest[0]:.0f} requests, {lowest[1]:.0f} tokens")
    else:
        utilisation = busy / (slots * wall) if wall > 0 else 0.0
        print(
            f"teacher utilisation: {utilisation:.1%} "
            f"(busy-slot seconds {busy:.0f} / (K {slots} x wall {wall:.1f} s))"
        )
    if queues:
        sojourns = [s for q in queues for s in q.sojourns]
        service = sorted(s.service for s in sojourns)
        total = sorted(s.wait + s.service for s in sojourns)
        if total:
            p50, unloaded = total[len(total) // 2], service[len(service) // 2]
            peak = max(q.peak_waiting for q in queues)
            longest = max(s.wait for s in sojourns)
            print(
                f"latency p50: {p50:.2f} s against {unloaded:.2f} s unloaded; peak queue "
                f"{peak}; longest wait in it {longest:.1f} s"
            )
    load = [serving for _, serving, _ in samples]
    tenths = [load[len(load) * i // 10 : len(load) * (i + 1) // 10] for i in range(10)]
    print(
        "busy slots by tenth of the run: "
        + " ".join(f"{sum(t) / len(t):.0f}" if t else "-" for t in tenths)
    )
    if limits:
        print(f"learned limit: {limits.get('limit')} (ceiling {limits.get('ceiling')})")
    progress = [line for line in stderr.splitlines() if " tasks | " in line]
    flagged = sum("limited by the lookahead window" in line for line in progress)
    window = flagged * 2 > len(progress)  # most progress lines said so
    print(f"progress lines naming the lookahead window: {flagged} of {len(progress)}")
    print(f"client CPU: {client_cpu:.1f} s ({client_cpu / wall:.0%} of a core), "
          f"{client_cpu / max(accepted, 1) * 1000:.2f} ms per accepted task")  # fmt: skip
    print(f"simulated server CPU: {server_cpu:.1f} s ({server_cpu / wall:.0%} of a core)")
    sent_at = None if watched.first_request is None else watched.first_request - start
    saturated = _saturated(cpu_samples, samples, slots, sent_at or 0.0)
    idle: list[tuple[str, float]] = []
    if saturated is not None:
        share, idle_then = saturated
        print(
            f"client CPU at {SATURATED:.0%}+ of a core (its event loop saturated): "
            f"{share:.0%} of the run after the first request"
        )
    else:
        idle_then = 0.0
    if args.teacher != "rate-limited" and sent_at is not None:
        span = (sent_at, watched.last_request - start, watched.last_answer - start)
        idle = _idle(slots, wall, busy, span, samples, idle_then)
        total = sum(seconds for _, seconds in idle)
        print(
            f"idle slot-seconds: {total:.0f} in all: "
            + ", ".join(f"{name} {sec:.0f} ({sec / total:.0%})" for name, sec in idle)
        )
    if utilisation < GOAL:
        print("under 90%: " + _limited_by(client_cpu / wall, server_cpu / wall, window, idle))
    print(f"peak memory (bootstrap process RSS): {usage.ru_maxrss / 1024:.0f} MiB")
    rejected = state["rejections"]
    print(
        f"rejections: {sum(rejected.values())} "
        + ", ".join(f"{k} {v}" for k, v in sorted(rejected.items(), key=lambda kv: -kv[1])[:6])
    )
    for stage, figures in sorted(state["usage"].items()):
        print(f"  {stage:<14}{figures['requests']:>8} requests")


def _ramp(
    args: argparse.Namespace,
    samples: list[tuple[float, int, int]],
    round_trip: float,
    limiters: list[RateLimitedTeacher],
    first: float | None,
) -> str:
    """Say when the first answer came and how many round trips later the teacher was full.

    Full: 90% of the slots serving (refusing and queueing teachers), or, for a rate-limited
    one, requests admitted over the last round trip (at least a second) at 90% of the rate
    its limits allow for the run's requests. A round trip is the mean service time.
    """
    if first is None:
        return "no answer came"
    if limiters:
        admitted = sum(limiter.admitted for limiter in limiters)
        tokens = sum(limiter.admitted_tokens for limiter in limiters)
        per_request = tokens / max(admitted, 1)
        rate = min(args.rpm, args.tpm / max(per_request, 1.0)) * args.servers / 60.0
        span = max(round_trip, 1.0)
        full_at, level, back = None, 0.0, 0
        for t, _, done in samples:
            while samples[back + 1][0] <= t - span:
                back += 1  # the latest sample at least a span before this one
            then, _, done_then = samples[back]
            if t - then >= span:
                level = max(level, (done - done_then) / (t - then))
                if full_at is None and level >= GOAL * rate:
                    full_at = t
        what = f"{GOAL:.0%} of the {rate:.1f} requests/s its limits allow"
        peak = f"at most {level / rate:.0%} of it"
    else:
        slots = args.capacity * args.servers
        full_at = _full_at(samples, slots)
        what = f"{GOAL:.0%} of the {slots} slots serving"
        peak = f"at most {max(serving for _, serving, _ in samples)} serving"
    head = f"first answer at {first:.1f} s; {what}"
    if full_at is None:
        return f"{head}: never ({peak})"
    if full_at <= first:
        return f"{head} at {full_at:.1f} s, before the first answer"
    trips = (full_at - first) / round_trip if round_trip > 0 else 0.0
    return (
        f"{head} at {full_at:.1f} s, {trips:.1f} round trips (mean service "
        f"{round_trip:.2f} s) after the first answer"
    )


def _full_at(samples: list[tuple[float, int, int]], slots: int) -> float | None:
    """Return when GOAL of the slots first served (seconds since start); None if never."""
    return next((t for t, serving, _ in samples if serving >= GOAL * slots), None)


def _process_cpu(pid: int) -> float | None:
    """Return a running process's CPU seconds so far (Linux /proc), else None."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime + stime


def _saturated(
    cpu: list[tuple[float, float]],
    samples: list[tuple[float, int, int]],
    slots: int,
    after: float,
) -> tuple[float, float] | None:
    """Return the share of the run the client's CPU was saturated, and slots idle then.

    Judged per CPU_SPAN from `after` (the first request: before it the process is starting
    up, which is counted apart): a whole run's average hides the bursts (many answers
    landing at once) in which the one event-loop thread is the bottleneck. None without
    /proc.
    """
    cpu = [(t, seconds) for t, seconds in cpu if t >= after]
    if len(cpu) < 2:
        return None
    spans = saturated = 0
    idle = 0.0
    start = 0
    for end in range(1, len(cpu)):
        if cpu[end][0] - cpu[start][0] < CPU_SPAN and end < len(cpu) - 1:
            continue
        seconds = cpu[end][0] - cpu[start][0]
        spans += 1
        if seconds > 0 and (cpu[end][1] - cpu[start][1]) / seconds >= SATURATED:
            saturated += 1
            load = [n for t, n, _ in samples if cpu[start][0] <= t < cpu[end][0]]
            if load:
                idle += (slots - sum(load) / len(load)) * seconds
        start = end
    return saturated / max(spans, 1), idle


def _idle(
    slots: int,
    wall: float,
    busy: float,
    span: tuple[float, float, float],
    samples: list[tuple[float, int, int]],
    cpu_bound: float,
) -> list[tuple[str, float]]:
    """Split the idle slot-seconds (K x wall - busy) by where in the run they fell.

    `span` holds the first request's, the last request's (probes aside) and the last
    answer's seconds since start; `samples` the sampled load; `cpu_bound` the slot-seconds
    idle while the client's CPU was saturated. The ramp runs from the first request until
    90% of the slots first served; the last round trip from the run's last request to the
    last answer: no work came then, only answers left. Both are sampled (every SAMPLE s).
    """
    first, last_sent, last = span
    total = max(slots * wall - busy, 0.0)
    before = slots * first
    after = slots * max(0.0, wall - last)
    full_at = _full_at(samples, slots)
    if full_at is None:
        full_at = last

    def sampled(start: float, end: float) -> float:
        return sum((slots - n) * SAMPLE for t, n, _ in samples if start <= t < end)

    ramp = sampled(first, min(full_at, last_sent))
    tail = sampled(max(last_sent, full_at), last)
    rest = total - before - after - cpu_bound
    # Sampled parts may overshoot the exact remainder by a sample's worth: keep the sum.
    ramp = min(ramp, max(rest, 0.0))
    tail = min(tail, max(rest - ramp, 0.0))
    return [
        ("before the first request", before),
        ("with the client's CPU saturated", cpu_bound),
        ("the ramp (until 90% of the slots served)", ramp),
        ("after the run's last request (its last round trip)", tail),
        ("after the last answer", after),
        ("the rest (round structure, the limiter)", max(0.0, rest - ramp - tail)),
    ]


def _limited_by(client: float, server: float, window: bool, idle: list[tuple[str, float]]) -> str:
    """Name what holds the run back, from each process's share of a core and the window.

    With the idle slot-seconds split (`idle`), the largest share names the cause when it
    is the start-up or the client's saturated CPU.
    """
    cores = os.cpu_count() or 1
    # The client is one asyncio thread; the simulated server is Python threads under one
    # GIL: either saturates at about one core, and both together at the machine's cores.
    if client >= 0.85:
        return f"the client's CPU (its one event-loop thread at {client:.0%} of a core)"
    if server >= 0.85:
        return f"the simulated server's CPU (one GIL at {server:.0%} of a core)"
    if client + server >= 0.85 * cores:
        return f"the machine's {cores} cores (client {client:.0%} + server {server:.0%})"
    if window:
        return "the lookahead window (the progress line said so): raise --prompts-per-round"
    if idle:
        name, seconds = max(idle, key=lambda part: part[1])
        share = seconds / max(sum(s for _, s in idle), 1e-9)
        if name == "before the first request":
            return (
                f"start-up: {share:.0%} of the idle slot-seconds fell before the first "
                "request (interpreter, imports, run directory)"
            )
        if name == "with the client's CPU saturated":
            return (
                f"the client's CPU at times: {share:.0%} of the idle slot-seconds fell in "
                "seconds its event loop was saturated"
            )
        if name.startswith("after the run's last request"):
            return (
                f"the last round trip: {share:.0%} of the idle slot-seconds fell after the "
                "run's last request, with fewer requests left than slots (a longer run "
                "spreads it thinner)"
            )
    return (
        f"neither CPU (client {client:.0%}, server {server:.0%} of a core): start-up, the "
        "round structure or the limiter"
    )


if __name__ == "__main__":
    with saved_output("--save" in sys.argv, __file__):
        main()
