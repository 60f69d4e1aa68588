"""A deterministic synthetic teacher that answers selfinstruct's prompts over HTTP.

It reads the prompt it is given, as a real teacher would, and answers each of
selfinstruct's request kinds (one-stage task lists, instruction lists, classification
questions, input-first and output-first instances) with invented content, so the whole
pipeline (parsing, filters, novelty, resume) runs against the loopback server without a
model. A share of its tasks is made to be rejected:
near copies of the prompt's examples, blacklisted words, too-short instructions and empty
outputs. Answers depend only on the request body, so replays and reruns agree.
Its grammar is wide enough for a full 52,000-task run: at a 52K pool about three in four
of its fresh instructions still pass the ROUGE-L novelty check.
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
# A long run needs tens of thousands of instructions that differ by ROUGE-L: most words of
# each one come from independent single-word slots, so two of them rarely share 70%.
_WIDE_FRAMES = (
    "{verb} a {adj} {noun} about {mod} {head} for {people_mod} {people}, in {n} words.",
    "{verb} how {mod} {head} changed {people_mod} {people} over {n} {period}.",
    "For {people_mod} {people}, {lverb} {n} {adj} ideas on {mod} {head}.",
    "{verb} the {adj} side of {mod} {head} in a {noun} for {people_mod} {people}.",
    "{verb} what {people_mod} {people} should know about {mod} {head} within {n} {period}.",
    "In a {adj} {noun}, {lverb} {mod} {head} to {people_mod} {people} using {n} steps.",
)
_MODS = (
    "coastal", "medieval", "urban", "solar", "alpine", "digital", "ancient", "tropical",
    "volcanic", "nocturnal", "industrial", "wild", "frozen", "floating", "underground",
    "seasonal", "nomadic", "lunar", "electric", "wooden", "silent", "migratory", "salty",
    "hidden", "rural", "royal", "mechanical", "microscopic", "desert", "arctic", "ceramic",
    "orbital", "herbal", "bamboo", "granite", "rainy", "vintage", "robotic", "woolen",
    "copper", "glass", "paper", "marble", "velvet", "iron", "clay", "cotton", "amber",
    "foggy", "windy", "muddy", "sunny", "icy", "leafy", "rocky", "sandy", "misty",
)  # fmt: skip
_HEADS = (
    "bridges", "gardens", "markets", "festivals", "lighthouses", "railways", "orchards",
    "bakeries", "canals", "libraries", "observatories", "vineyards", "harbors", "kitchens",
    "workshops", "theaters", "monasteries", "greenhouses", "windmills", "caves", "reefs",
    "forests", "deserts", "lagoons", "glaciers", "meadows", "swamps", "islands", "valleys",
    "villages", "factories", "schools", "hospitals", "museums", "stadiums", "airports",
    "tunnels", "towers", "farms", "mines", "ships", "clocks", "engines", "kites", "lanterns",
    "quilts", "pottery", "textiles", "spices", "teas", "cheeses", "breads", "soups", "drums",
    "bicycles", "telescopes", "compasses", "satellites", "beehives", "aquariums",
)  # fmt: skip
_PEOPLE_MODS = (
    "curious", "retired", "young", "busy", "nervous", "veteran", "local", "visiting",
    "amateur", "hungry", "sleepy", "thrifty", "patient", "restless", "bilingual", "sporty",
    "shy", "cheerful", "grumpy", "ambitious", "careful", "creative", "elderly", "junior",
    "senior", "remote", "weekend", "volunteer", "rookie", "seasoned", "adventurous", "quiet",
)  # fmt: skip
_PEOPLE = (
    "teachers", "nurses", "farmers", "pilots", "students", "parents", "chefs", "sailors",
    "engineers", "librarians", "gardeners", "tourists", "drivers", "bakers", "painters",
    "miners", "coaches", "doctors", "poets", "carpenters", "plumbers", "lawyers", "monks",
    "dancers", "hikers", "divers", "cyclists", "fishermen", "shopkeepers", "programmers",
    "architects", "astronomers", "beekeepers", "brewers", "tailors", "weavers", "potters",
)  # fmt: skip
_PERIODS = ("days", "weeks", "months", "years", "decades", "centuries", "seasons", "hours")
_BLACKLISTED = ("image", "graph", "file", "map", "video", "diagram", "music")

_NEXT = re.compile(r"### Task (\d+)\s*\nInstruction:\s*$")
_EXAMPLE = re.compile(r"^Instruction: (.+)$", re.M)
_LIST_NEXT = re.compile(r"\n(\d+)\.$")
_LIST_ITEM = re.compile(r"^\d+\. (.+)$", re.M)
_LAST_TASK = re.compile(r"Task: (.+)\n?$")
_CLS_FRAMES = (
    "Classify the {noun} about {mod} {head} by {people_mod} {people} as {adj} or {adj2}.",
    "Decide whether {people_mod} {people} would call {mod} {head} {adj} or {adj2}.",
    "Label the sentiment of {people_mod} {people} toward {mod} {head}: {adj} or {adj2}.",
    "Which of the categories fits the {noun} on {mod} {head} best: {adj}, {adj2} or other?",
)
_CLS_WORDS = ("classify", "label", "decide whether", "which of the categories")
# The judge's verdicts, by score: one sentence each, as prompts/judge.txt asks.
_JUDGE_REASONS = {
    1: "The outputs do not do what the instruction asks.",
    2: "The instruction is vague and most outputs miss its point.",
    3: "The task works, but one output is thin and generic.",
    4: "A clear task with correct outputs that could be a little fuller.",
    5: "A clear, answerable instruction whose outputs are correct and helpful.",
}
# How often each score comes, 1 to 5: most tasks good, a few poor (a spread to summarise).
_JUDGE_WEIGHTS = (0.08, 0.14, 0.26, 0.34, 0.18)


@dataclass(frozen=True)
class SyntheticTeacher:
    """Answer one-stage prompts with invented tasks; a handler for OpenAITestServer."""

    near_duplicate_rate: float = 0.10
    blacklist_rate: float = 0.04
    short_rate: float = 0.03
    empty_output_rate: float = 0.03
    classification_rate: float = 0.15
    garbage_rate: float = 0.02  # unparseable classification answers
    judge_garbage_rate: float = 0.05  # verdicts without a score (the judge then asks again)
    # Share of ordinary instructions from the wide frames; the rest use the short ones,
    # whose tasks resemble each other (0 gives the small, templated grammar alone).
    wide_share: float = 0.85
    latency: float = 0.0  # seconds per request
    tokens_per_second: float = 0.0  # decode rate; 0 means instant

    def __call__(self, request: RecordedRequest) -> Reply:
        """Continue the prompt's task list up to the stop header."""
        text = self.answer(request.prompt, request.body, chat=request.endpoint == "chat")
        delay = self.latency
        if self.tokens_per_second > 0:
            # A server stops decoding at max_tokens (the loopback server cuts the text there).
            words = len(text.split())
            cap = request.body.get("max_completion_tokens", request.body.get("max_tokens"))
            if isinstance(cap, int) and not isinstance(cap, bool) and cap >= 0:
                words = min(words, cap)
            delay += words / self.tokens_per_second
        return Reply(text=text, delay=delay)

    def answer(self, prompt: str, body: dict[str, object], *, chat: bool = False) -> str:
        """Return the completion text for a prompt and request body."""
        digest = hashlib.sha256(
            (prompt + json.dumps(body.get("seed"))).encode("utf-8", "replace")
        ).digest()
        rng = random.Random(digest)
        if prompt.rstrip().endswith("Score:"):
            return self._judge(rng, chat=chat)
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

    def _judge(self, rng: random.Random, *, chat: bool) -> str:
        """Rate a task: a score drawn by the prompt's hash, or now and then no score at all."""
        if rng.random() < self.judge_garbage_rate:
            return " Looks fine to me, nothing to add."
        score = rng.choices(range(1, 6), weights=_JUDGE_WEIGHTS)[0]
        verdict = f"{score}\nReason: {self._judge_reason(score)}\n\nInstruction: next"
        return f"Score: {verdict}" if chat else f" {verdict}"

    def _judge_reason(self, score: int) -> str:
        return _JUDGE_REASONS[score]

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
            frames: tuple[str, ...]
            if rng.random() < self.classification_rate:
                frames = _CLS_FRAMES
            else:
                frames = _WIDE_FRAMES if rng.random() < self.wide_share else _FRAMES
            instruction = rng.choice(frames).format(
                verb=verb,
                lverb=verb.lower(),
                adj=rng.choice(_ADJECTIVES),
                adj2=rng.choice(_ADJECTIVES),
                noun=rng.choice(_NOUNS),
                topic=topic,
                audience=rng.choice(_AUDIENCES),
                mod=rng.choice(_MODS),
                head=rng.choice(_HEADS),
                people_mod=rng.choice(_PEOPLE_MODS),
                people=rng.choice(_PEOPLE),
                period=rng.choice(_PERIODS),
                n=rng.randint(2, 99),
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


def synthetic_handler() -> SyntheticTeacher:
    """Build the default synthetic teacher (for `--handler selfinstruct.testing.teacher:...`)."""
    return SyntheticTeacher()
