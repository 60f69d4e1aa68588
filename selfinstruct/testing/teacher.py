"""A deterministic synthetic teacher that answers selfinstruct's prompts over HTTP.

It reads the prompt it is given, as a real teacher would, and answers each of
selfinstruct's request kinds (one-stage task lists, instruction lists, classification
questions, input-first and output-first instances) with invented content, so the whole
pipeline (parsing, filters, novelty, resume) runs against the loopback server without a
model. A share of its tasks is made to be rejected:
near copies of the prompt's examples, blacklisted words, too-short instructions and empty
outputs. Answers depend only on the request body, so replays and reruns agree.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass

from selfinstruct.testing.server import RecordedRequest, Reply

_VERBS = (
    "Explain", "Summarize", "Describe", "Compare", "List", "Suggest", "Outline", "Rewrite",
    "Classify", "Translate", "Evaluate", "Critique", "Design", "Propose", "Estimate",
    "Identify", "Rank", "Convert", "Draft", "Compose", "Plan", "Predict", "Argue", "Defend",
    "Simplify", "Analyze", "Recommend", "Justify", "Sketch out", "Brainstorm",
)  # fmt: skip
_ADJECTIVES = (
    "short", "formal", "playful", "detailed", "persuasive", "neutral", "concise", "vivid",
    "skeptical", "friendly", "technical", "humorous", "balanced", "urgent", "gentle",
    "step-by-step", "beginner-level", "expert-level", "polite", "critical", "hopeful",
    "practical", "surprising", "careful", "bold", "calm", "rigorous", "informal",
)  # fmt: skip
_NOUNS = (
    "essay", "haiku", "email", "checklist", "recipe", "riddle", "proof", "timeline",
    "dialogue", "slogan", "review", "itinerary", "budget", "lesson", "quiz", "limerick",
    "memo", "apology", "toast", "pitch", "report", "sonnet", "definition", "analogy",
    "question", "schedule", "manifesto", "tutorial", "headline", "fable", "joke", "tweet",
)  # fmt: skip
_TOPICS = (
    "volcanoes", "compound interest", "sourdough bread", "the French Revolution",
    "black holes", "recycling plastics", "remote work", "honeybees", "chess openings",
    "sleep hygiene", "public libraries", "bicycle repair", "tax deductions", "tide pools",
    "the immune system", "supply chains", "jazz improvisation", "prime numbers",
    "urban gardening", "glaciers", "cryptography", "job interviews", "marathon training",
    "medieval castles", "electric cars", "photosynthesis", "mountain weather",
    "coffee roasting", "language learning", "board games", "ocean currents", "vaccines",
    "the printing press", "desert ecosystems", "retirement savings", "sorting algorithms",
    "time zones", "solar panels", "ancient Rome", "kitchen safety", "birdwatching",
)  # fmt: skip
_AUDIENCES = (
    "a ten-year-old", "new employees", "retired teachers", "a skeptical investor",
    "first-year students", "busy parents", "a museum visitor", "software engineers",
    "a nervous traveller", "hospital volunteers", "a local newspaper", "farmers",
    "a book club", "city council members", "night-shift nurses", "amateur astronomers",
)  # fmt: skip
_FRAMES = (
    "{verb} a {adj} {noun} about {topic} for {audience}.",
    "{verb} {topic} in the style of a {adj} {noun}.",
    "Given the notes below, {lverb} a {adj} {noun} on {topic}.",
    "How would you {lverb} {topic} to {audience} in a {adj} way?",
    "{verb} three facts about {topic} that {audience} would find {adj2}.",
    "Using {topic} as the theme, {lverb} a {noun} aimed at {audience}.",
    "{verb} why {topic} matters, keeping the tone {adj} and the length short.",
)
# With `names=True` every instruction also names invented people, places or products,
# built from syllables (thousands of distinct words), so tens of thousands of random
# instructions stay below ROUGE-L 0.7 of each other, as a real teacher's do: the pool can
# grow to 52,000 tasks without near duplicates taking over.
_SYLLABLES = (
    "bar", "ven", "tos", "kal", "mir", "dun", "sel", "rho", "pax", "lin", "qua", "zer",
    "nob", "fen", "gri", "tal", "wex", "jor", "mau", "cid", "ost", "ply", "vek", "hum",
)  # fmt: skip
# Named instructions are built from independent parts, each with few fixed words, so
# two of them share little beyond chance.
_NAMED_LEADS = (
    "{verb} a {adj} {noun}", "{verb} {n} {adj} ideas", "{verb} the {noun} {name} sent",
    "Help {name} {lverb} a {noun}", "{name} wants you to {lverb} a {adj} {noun}",
)  # fmt: skip
_NAMED_SUBJECTS = (
    "about {topic}", "on {name2}", "covering {topic} in {name2}", "comparing {name2} with {topic}",
    "on what {name2} knows of {topic}", "about {name2}",
)  # fmt: skip
_NAMED_TAILS = (
    "for {audience}", "for {name3}", "in under {n} words", "mentioning {name3}",
    "with a {adj2} tone", "so {name3} can reply", "",
)  # fmt: skip
_NAMED_CLS = (
    "Classify the {noun} from {name} as {adj} or {adj2}",
    "Decide whether {name} is right about {name2}",
    "Label the {name} {noun} as positive or negative",
)  # fmt: skip
_BLACKLISTED = ("image", "graph", "file", "map", "video", "diagram", "music")

_NEXT = re.compile(r"### Task (\d+)\s*\nInstruction:\s*$")
_EXAMPLE = re.compile(r"^Instruction: (.+)$", re.M)
_LIST_NEXT = re.compile(r"\n(\d+)\.$")
_LIST_ITEM = re.compile(r"^\d+\. (.+)$", re.M)
_LAST_TASK = re.compile(r"Task: (.+)\n?$")
_CLS_FRAMES = (
    "Classify the {noun} about {topic} as {adj} or {adj2}.",
    "Decide whether the statement about {topic} is true or false.",
    "Label the sentiment of the {noun} on {topic} as positive, negative or neutral.",
    "Which of the categories fits the {noun} about {topic} best: {adj}, {adj2} or other?",
)
_CLS_WORDS = ("classify", "label", "decide whether", "which of the categories")


@dataclass(frozen=True)
class SyntheticTeacher:
    """Answer one-stage prompts with invented tasks; a handler for OpenAITestServer."""

    near_duplicate_rate: float = 0.10
    blacklist_rate: float = 0.04
    short_rate: float = 0.03
    empty_output_rate: float = 0.03
    classification_rate: float = 0.15
    garbage_rate: float = 0.02  # unparseable classification answers
    latency: float = 0.0  # seconds per request
    tokens_per_second: float = 0.0  # decode rate; 0 means instant
    names: bool = False  # invented names in every instruction: a far larger vocabulary

    def __call__(self, request: RecordedRequest) -> Reply:
        """Continue the prompt's task list up to the stop header."""
        text = self.answer(request.prompt, request.body, chat=request.endpoint == "chat")
        delay = self.latency
        if self.tokens_per_second > 0:
            delay += len(text.split()) / self.tokens_per_second
        return Reply(text=text, delay=delay)

    def answer(self, prompt: str, body: dict[str, object], *, chat: bool = False) -> str:
        """Return the completion text for a prompt and request body."""
        digest = hashlib.sha256(
            (prompt + json.dumps(body.get("seed"))).encode("utf-8", "replace")
        ).digest()
        rng = random.Random(digest)
        if prompt.endswith("Classification:"):
            return self._classify(rng, prompt)
        if (task := _LAST_TASK.search(prompt)) is not None and "\nLabel: " in prompt:
            return self._labelled(rng, task.group(1))
        if task is not None and "\nExample 1\n" in prompt:
            return self._examples(rng, task.group(1))
        if (item := _LIST_NEXT.search(prompt)) is not None:
            return self._listing(rng, prompt, int(item.group(1)), body, chat=chat)
        return self._one_stage(rng, prompt, body, chat=chat)

    def _stop_number(self, body: dict[str, object], default: int, pattern: str) -> int:
        stops = body.get("stop") or []
        for stop in [stops] if isinstance(stops, str) else list(stops):  # type: ignore[call-overload]
            if m := re.fullmatch(pattern, str(stop)):
                return int(m.group(1)) - 1
        return default

    def _listing(
        self, rng: random.Random, prompt: str, first: int, body: dict[str, object], *, chat: bool
    ) -> str:
        last = self._stop_number(body, first + 7, r"\n(\d+)\.")
        examples = _LIST_ITEM.findall(prompt)
        parts = []
        for number in range(first, last + 2):  # one past the end: the stop sequence cuts it
            instruction = self._task(rng, examples)[0]
            parts.append(
                f" {instruction}\n"
                if number == first and not chat
                else f"{number}. {instruction}\n"
            )
        return ("Here are some more:\n" if chat else "") + "".join(parts)

    def _classify(self, rng: random.Random, prompt: str) -> str:
        if rng.random() < self.garbage_rate:
            return " Perhaps"
        instruction = prompt.rsplit("Task: ", 1)[-1].lower()
        return " Yes" if any(w in instruction for w in _CLS_WORDS) else " No"

    def _labelled(self, rng: random.Random, instruction: str) -> str:
        labels = rng.sample(_ADJECTIVES, rng.randint(2, 3))
        out = []
        for label in labels:
            topic = rng.choice(_TOPICS)
            out.append(f"Label: {label.capitalize()}\nInput: A {label} remark about {topic}.\n")
        return "".join(out) + "\nTask: next"

    def _examples(self, rng: random.Random, instruction: str) -> str:
        out: list[str] = []
        count = rng.randint(1, 4)
        for n in range(1, count + 1):
            topic = rng.choice(_TOPICS)
            task_input = "(no input)" if rng.random() < 0.3 else f"Some notes on {topic}."
            roll = rng.random()
            if roll < self.empty_output_rate:
                output = ""
            elif roll < self.empty_output_rate + 0.05 and n > 1:
                out.append(out[-1].replace(f"Example {n - 1}", f"Example {n}"))
                continue
            else:
                output = f"A {rng.choice(_ADJECTIVES)} answer about {topic}, number {n}."
            out.append(f"Example {n}\nInput: {task_input}\nOutput: {output}\n")
        return "".join(out) + "\nTask: next"

    def _one_stage(
        self, rng: random.Random, prompt: str, body: dict[str, object], *, chat: bool
    ) -> str:
        match = _NEXT.search(prompt)
        first = int(match.group(1)) if match else 1
        last = self._stop_number(body, first + 7, r"### Task (\d+)")
        examples = _EXAMPLE.findall(prompt)
        parts = []
        for number in range(first, last + 2):  # one past the end: the stop sequence cuts it
            instruction, task_input, output = self._task(rng, examples)
            body_text = f"{instruction}\nInput: {task_input or '(no input)'}\nOutput: {output}\n\n"
            if number == first and not chat:
                parts.append(" " + body_text)
            else:
                parts.append(f"### Task {number}\nInstruction: {body_text}")
        prefix = "Sure! Here are more tasks.\n\n" if chat else ""
        return prefix + "".join(parts)

    def _task(self, rng: random.Random, examples: list[str]) -> tuple[str, str, str]:
        roll = rng.random()
        topic = rng.choice(_TOPICS)
        if roll < self.near_duplicate_rate and examples:
            words = rng.choice(examples).split()
            words[rng.randrange(len(words))] = rng.choice(_ADJECTIVES)
            instruction = " ".join(words)
        elif roll < self.near_duplicate_rate + self.blacklist_rate:
            instruction = f"Describe the {rng.choice(_BLACKLISTED)} that best shows {topic}."
        elif roll < self.near_duplicate_rate + self.blacklist_rate + self.short_rate:
            instruction = f"{rng.choice(_VERBS)} {topic.split()[0]}."
        else:
            verb = rng.choice(_VERBS)
            classification = rng.random() < self.classification_rate
            frames: tuple[str, ...]
            if self.names:
                lead = rng.choice(_NAMED_CLS if classification else _NAMED_LEADS)
                parts = (lead, rng.choice(_NAMED_SUBJECTS), rng.choice(_NAMED_TAILS))
                frames = (" ".join(p for p in parts if p) + ".",)
            else:
                frames = _CLS_FRAMES if classification else _FRAMES
            frame = rng.choice(frames)
            # Drawn only when asked for, so the default teacher's answers stay as they were.
            named = (
                {
                    "name": _name(rng),
                    "name2": _name(rng),
                    "name3": _name(rng),
                    "n": rng.randint(2, 60),
                }
                if self.names
                else {}
            )
            instruction = frame.format(
                **named,
                verb=verb,
                lverb=verb.lower(),
                adj=rng.choice(_ADJECTIVES),
                adj2=rng.choice(_ADJECTIVES),
                noun=rng.choice(_NOUNS),
                topic=topic,
                audience=rng.choice(_AUDIENCES),
            )
        task_input = ""
        if rng.random() < 0.4:
            task_input = f"Notes: {topic}; {rng.choice(_ADJECTIVES)}; {rng.randint(2, 99)} items."
        output = ""
        if rng.random() >= self.empty_output_rate:
            output = (
                f"A {rng.choice(_ADJECTIVES)} {rng.choice(_NOUNS)} on {topic} "
                f"({rng.randint(100, 999)} words), ending with a {rng.choice(_ADJECTIVES)} note."
            )
        return instruction, task_input, output


def _name(rng: random.Random) -> str:
    return "".join(rng.choice(_SYLLABLES) for _ in range(rng.randint(2, 3))).capitalize()


def synthetic_handler() -> SyntheticTeacher:
    """Build the default synthetic teacher (for `--handler selfinstruct.testing.teacher:...`)."""
    return SyntheticTeacher()
