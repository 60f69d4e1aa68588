"""Chinese runs (--language zh): defaults, filters, parsing, prompts, seeds, end to end."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from browser import check_page, find_chromium
from conftest import REPO, bootstrap_args, run_cli

from selfinstruct.config import (
    DEFAULT_BLACKLIST,
    ZH_BLACKLIST,
    FilterConfig,
    RunConfig,
    identity,
    load_config,
)
from selfinstruct.errors import ConfigError
from selfinstruct.filters import InstructionFilters, Verdict, count_words
from selfinstruct.parse import (
    ParsedInstance,
    parse_alpaca,
    parse_instances,
    parse_instruction_list,
    parse_yes_no,
)
from selfinstruct.prompts import (
    TEMPLATE_VARIABLES,
    Example,
    default_prompts_dir,
    load_prompts,
    render_alpaca,
    render_classify,
    render_instances,
    render_instruction_list,
)
from selfinstruct.records import Candidate, Instance, Task
from selfinstruct.seedcheck import seed_stats
from selfinstruct.seeds import default_seeds_path, load_seeds
from selfinstruct.similarity import rouge_l
from selfinstruct.testing.server import OpenAITestServer
from selfinstruct.testing.teacher_zh import ChineseSyntheticTeacher

SECRET = "sk-test-secret-0123456789"
CJK = re.compile(r"[\u4e00-\u9fff]")
ZH_FILTERS = InstructionFilters(load_config(None, {"language": "zh"}).filters, english=False)


# -- config ---------------------------------------------------------------------------------


def test_zh_selects_its_filter_defaults() -> None:
    filters = load_config(None, {"language": "zh"}).filters
    assert filters.blacklist == list(ZH_BLACKLIST)
    assert filters.tokenizer == "unicode"
    assert (filters.min_words, filters.max_words) == (6, 300)
    assert filters.rouge_threshold == 0.7  # the paper's threshold holds for every language


def test_en_defaults_are_unchanged_and_unset() -> None:
    config = RunConfig()
    assert config.filters == FilterConfig()
    assert config.filters.blacklist == list(DEFAULT_BLACKLIST)
    assert config.filters.tokenizer == "rouge"
    # Resolving the English defaults marks nothing as set by the user.
    assert config.filters.model_fields_set == set()


def test_explicit_settings_beat_the_language(tmp_path: Path) -> None:
    path = tmp_path / "run.toml"
    path.write_text(
        'language = "zh"\n[filters]\ntokenizer = "rouge"\nblacklist = ["菜谱"]\n', encoding="utf-8"
    )
    filters = load_config(path, {"filters": {"min_words": 2}}).filters
    assert filters.tokenizer == "rouge"
    assert filters.blacklist == ["菜谱"]
    assert filters.min_words == 2
    assert filters.max_words == 300  # not given: still the language's


def test_language_is_part_of_the_identity() -> None:
    before, after = identity(RunConfig()), identity(load_config(None, {"language": "zh"}))
    changed = {k for k in before if before[k] != after[k]}
    assert changed == {
        "language",
        "filters.blacklist",
        "filters.min_words",
        "filters.max_words",
        "filters.tokenizer",
    }


def test_unknown_language_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"command line: language: Input should be 'en' or 'zh'"):
        load_config(None, {"language": "fr"})


# -- filters --------------------------------------------------------------------------------

ZH_CASES: list[tuple[str, str, Verdict | None]] = [
    ("accepted", "给即将退休的同事写一段祝福语。", None),
    ("accepted_first_char_not_ascii", "请把下面的句子翻译成英文。", None),
    ("accepted_title_mark_start", "《红楼梦》的作者是谁？请简单介绍他。", None),
    ("accepted_open_quote_start", "“春眠不觉晓”的下一句是什么？", None),
    ("accepted_kehua_is_not_draw", "用几句话刻画一个老教师的形象。", None),
    ("accepted_python_function", "写一个Python函数，判断一个数是不是质数。", None),
    ("accepted_exactly_6_characters", "说出三种原色", None),
    ("accepted_exactly_300_characters", "好" * 300, None),
    ("too_short_5_characters", "说三种颜色。", Verdict("too_short", "5 words < 6")),
    ("too_short_punctuation_not_counted", "翻译：好！", Verdict("too_short", "3 words < 6")),
    ("too_long_301_characters", "好" * 301, Verdict("too_long", "301 words > 300")),
    ("blacklisted_inside_a_phrase", "描述这张图片里的人物。", Verdict("blacklisted_word", "图片")),
    (
        "blacklisted_prefix_of_a_word",
        "帮我整理电脑里的文件夹结构。",
        Verdict("blacklisted_word", "文件"),
    ),
    ("blacklisted_draw", "画出一只正在睡觉的小猫。", Verdict("blacklisted_word", "画出")),
    ("blacklisted_web", "访问网站并告诉我今天的头条。", Verdict("blacklisted_word", "访问网站")),
    ("write_a_program_zh", "编写一个程序，计算1到100的和。", Verdict("write_a_program")),
    ("write_a_program_zh_please", "请写程序统计每个单词出现的次数。", Verdict("write_a_program")),
    ("write_a_program_en_still", "Write a program that prints primes.", Verdict("write_a_program")),
    (
        "starts_with_fullwidth_comma",
        "，然后把结果翻译成英文。",
        Verdict("starts_with_punctuation", "，"),
    ),
    (
        "starts_with_ascii_quote",
        '"春眠不觉晓"的下一句是什么？',
        Verdict("starts_with_punctuation", '"'),
    ),
]


@pytest.mark.parametrize(
    ("instruction", "expected"), [c[1:] for c in ZH_CASES], ids=[c[0] for c in ZH_CASES]
)
def test_zh_filters(instruction: str, expected: Verdict | None) -> None:
    assert ZH_FILTERS.check(instruction) == expected


@pytest.mark.parametrize("english", [True, False])
def test_latin_entry_matches_next_to_chinese(english: bool) -> None:
    filters = InstructionFilters(FilterConfig(blacklist=["video"]), english=english)
    assert filters.check("Add 旁白 for this video脚本 please.") == Verdict(
        "blacklisted_word", "video"
    )
    assert filters.check("Add 旁白 for these videos脚本 please.") is None  # a longer word
    assert filters.check("Describe the video in detail.") == Verdict("blacklisted_word", "video")


COUNT_CASES = [
    ("Give three tips.", True, 3),
    ("给出三条建议。", False, 6),
    ("用Python写代码", False, 5),  # 用 python 写 代 码
    ("用 Python 和 SQL 各写一句", False, 8),
    ("，。！", False, 0),
]


@pytest.mark.parametrize(("text", "english", "expected"), COUNT_CASES)
def test_count_words(text: str, english: bool, expected: int) -> None:
    assert count_words(text, english=english) == expected


# -- parsing --------------------------------------------------------------------------------

ZH_YES_NO: list[tuple[str, bool | None]] = [
    ("是", True),
    (" 是。", True),
    ("是的，它的答案只有两个标签。", True),
    ("“是”", True),
    ("**否**", False),
    ("否", False),
    ("否。", False),
    ("不是", False),
    ("不是。", False),
    ("Classification：是", True),
    ("是否", None),  # "whether", not an answer
    ("是/否", None),
    ("不是分类任务", None),  # a sentence, read as cautiously as "Not a classification task."
    ("也许吧", None),
]


@pytest.mark.parametrize(("text", "expected"), ZH_YES_NO)
def test_parse_yes_no_in_chinese(text: str, expected: bool | None) -> None:
    assert parse_yes_no(text) is expected


def test_fullwidth_colons_and_chinese_no_input() -> None:
    text = (
        " 写一首关于秋天的短诗。\nInput：无\nOutput：落叶满长街。\n\n"
        "### Task 10\nInstruction：翻译这句话。\nInput:（无输入）\nOutput:Hello."
    )
    assert parse_alpaca(text, truncated=False) == [
        Candidate("写一首关于秋天的短诗。", "", "落叶满长街。"),
        Candidate("翻译这句话。", "", "Hello."),
    ]


def test_chinese_enumeration_comma_items() -> None:
    text = " 写一段祝福语。\n10、比较两种出行方式。\n11、解释什么是复利。\n"
    assert parse_instruction_list(text, continued=True, truncated=False) == [
        "写一段祝福语。",
        "比较两种出行方式。",
        "解释什么是复利。",
    ]


def test_instances_with_fullwidth_colons() -> None:
    text = "Example 1\nInput：(无)\nOutput：今天天气很好。\nExample 2\nInput：雨\nOutput：雨停了。"
    assert parse_instances(text, output_first=False, truncated=False) == [
        ParsedInstance("", "今天天气很好。"),
        ParsedInstance("雨", "雨停了。"),
    ]


# -- prompts --------------------------------------------------------------------------------


def test_zh_prompts_load_and_differ_from_english() -> None:
    zh, en = load_prompts(language="zh"), load_prompts()
    assert zh.source == default_prompts_dir("zh")
    assert set(zh.templates) == set(TEMPLATE_VARIABLES)
    assert zh.digest != en.digest
    # The prose is Chinese; only the labels the parser reads stay English.
    for name in ("alpaca.txt", "si_instructions.txt", "si_classify.txt", "si_instances.txt"):
        assert len(CJK.findall(zh.templates[name].template)) > 30, name
    for label in ("Instruction:", "Input:", "Output:"):
        assert label in zh.templates["alpaca_task.txt"].template


def test_zh_alpaca_prompt_reads_back_as_its_examples() -> None:
    examples = [
        Example("给新开的面包店起一个名字。", Instance(input="", output="麦香小站")),
        Example(
            "判断这条评价的情感。", Instance(input="汤是凉的，服务员也不理人。", output="负面")
        ),
    ]
    prompt = render_alpaca(load_prompts(language="zh"), examples)
    assert prompt.endswith("### Task 3\nInstruction:")
    items = parse_alpaca(prompt, truncated=False)
    assert items[:2] == [
        Candidate("给新开的面包店起一个名字。", "", "麦香小站"),
        Candidate("判断这条评价的情感。", "汤是凉的，服务员也不理人。", "负面"),
    ]


def test_zh_stage_prompts_keep_the_parser_labels() -> None:
    zh = load_prompts(language="zh")
    listing = render_instruction_list(zh, ["写一首诗。", "解释复利。"])
    assert listing.endswith("1. 写一首诗。\n2. 解释复利。\n3.")
    classify = render_classify(zh, [("判断情感。", True)], "写一首诗。")
    assert "Task: 判断情感。\nClassification: Yes\n" in classify
    assert classify.endswith("Task: 写一首诗。\nClassification:")
    instances = render_instances(
        zh,
        [("翻译成英文。", [Instance(input="你好", output="Hello")])],
        "写一首诗。",
        output_first=False,
    )
    assert "Example 1\nInput: 你好\nOutput: Hello\n" in instances


# -- seeds ----------------------------------------------------------------------------------


def test_zh_seed_set() -> None:
    seeds = load_seeds(language="zh")
    assert seeds.path == default_seeds_path("zh")
    tasks = seeds.tasks
    assert len(tasks) >= 100
    assert len({t.id for t in tasks}) == len(tasks)
    share = sum(t.is_classification is True for t in tasks) / len(tasks)
    assert 0.10 <= share <= 0.20
    instances = [i for t in tasks for i in t.instances]
    assert any(not i.input for i in instances) and any(i.input for i in instances)
    assert all(1 <= len(t.instances) <= 5 for t in tasks)
    assert all(CJK.search(t.instruction) for t in tasks)
    # Our seeds obey the rules generated Chinese tasks must pass.
    assert [t.id for t in tasks if ZH_FILTERS.check(t.instruction) is not None] == []


def test_zh_seeds_are_pairwise_novel() -> None:
    stats = seed_stats(load_seeds(language="zh").tasks, english=False, tokenizer="unicode")
    assert stats.closest is not None and stats.closest.score <= 0.7
    assert stats.near_duplicates == []
    assert stats.duplicate_instructions == []
    # The same check with rouge-score's tokenizer is blind: it keeps only ASCII words.
    a, b = stats.closest.first.instruction, stats.closest.second.instruction
    assert rouge_l(a, b, "rouge") == 0.0 < rouge_l(a, b, "unicode")


# -- end to end -----------------------------------------------------------------------------


def _bootstrap(server: OpenAITestServer, out: Path, *extra: str) -> list[str]:
    return bootstrap_args(server, out, "--target", "40", *extra)


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _unicode_near_pairs(tasks: list[Task]) -> int:
    return len(seed_stats(tasks, english=False, tokenizer="unicode").near_duplicates)


def test_chinese_bootstrap_rejects_near_duplicates(tmp_path: Path) -> None:
    out = tmp_path / "run"
    with OpenAITestServer(ChineseSyntheticTeacher()) as server:
        done = run_cli(*_bootstrap(server, out, "--language", "zh"), api_key=SECRET)
        assert done.returncode == 0, done.stderr
        prompts = [r.prompt for r in server.requests]
        # Changing the language of an existing run is refused, naming the setting.
        again = run_cli(*_bootstrap(server, out, "--language", "en"), api_key=SECRET)
    assert again.returncode != 0 and "language" in again.stderr
    assert "Traceback" not in again.stderr

    header = json.loads((out / "config.json").read_text(encoding="utf-8"))
    assert header["identity"]["language"] == "zh"
    assert header["identity"]["filters.tokenizer"] == "unicode"
    assert header["identity"]["filters.blacklist"] == list(ZH_BLACKLIST)
    # The teacher saw the Chinese templates and the Chinese seeds.
    zh_seeds = {t.instruction for t in load_seeds(language="zh").tasks}
    listing = [p for p in prompts if p.endswith(".") and "编号清单" in p]
    assert listing and any(s in listing[0] for s in zh_seeds)

    pool = _lines(out / "pool.jsonl")
    assert len(pool) >= 40
    assert all(CJK.search(str(t["instruction"])) for t in pool)
    # The teacher answers 是/否: both kinds of task made it in.
    assert {t["is_classification"] for t in pool} == {True, False}

    rejected = _lines(out / "rejected.jsonl")
    near = [r for r in rejected if r["reason"] == "near_duplicate"]
    assert len(near) >= 3
    blind = 0
    for r in near:
        match = re.fullmatch(r"ROUGE-L ([0-9.]+) with: (.+)", str(r["detail"]), re.S)
        assert match is not None
        instruction, other = str(r["instruction"]), match.group(2)
        assert rouge_l(instruction, other, "unicode") > 0.7
        if not re.search("[A-Za-z0-9]", instruction + other):
            assert rouge_l(instruction, other, "rouge") == 0.0  # invisible to rouge-score
            blind += 1
    assert blind >= 3
    reasons = {r["reason"] for r in rejected}
    assert {"blacklisted_word", "too_short"} <= reasons

    # Nothing in the pool is a near duplicate of the seeds or of another pool task.
    tasks = [Task.model_validate(t) for t in pool]
    assert _unicode_near_pairs([*load_seeds(language="zh").tasks, *tasks]) == 0


def test_rouge_tokenizer_lets_chinese_near_duplicates_in(tmp_path: Path) -> None:
    config = tmp_path / "rouge.toml"
    config.write_text('[filters]\ntokenizer = "rouge"\n', encoding="utf-8")
    out = tmp_path / "run"
    with OpenAITestServer(ChineseSyntheticTeacher()) as server:
        done = run_cli(
            *_bootstrap(server, out, "--language", "zh", "--config", str(config)), api_key=SECRET
        )
    assert done.returncode == 0, done.stderr
    tasks = [Task.model_validate(t) for t in _lines(out / "pool.jsonl")]
    # The same teacher, the rouge tokenizer: its one-character edits of the seeds got in.
    assert _unicode_near_pairs([*load_seeds(language="zh").tasks, *tasks]) >= 3


# -- report ---------------------------------------------------------------------------------

ZH_VERB_OBJECT_CASES = [
    ("写一首七言绝句，描写江南的春雨。", ("写", "绝句")),
    ("请比较火山和冰川的异同，不超过两百字。", ("比较", "异同")),
    ("把下面的英文句子翻译成通顺的中文。", ("翻译", "句子")),
    ("为一家三口设计一份营养均衡的周末晚餐菜单，包括两菜一汤。", ("设计", "菜单")),
    ("以“秋天的车站”为题，写一首四句的五言小诗。", ("写", "小诗")),
    ("同事很沮丧，帮我想几句安慰他的话。", ("想", "话")),
    ("介绍一下端午节的主要习俗。", ("介绍", "习俗")),
    ("根据下面的笔记，围绕黑洞写一份精炼演讲稿。", ("写", "讲稿")),  # a long noun is cut
    ("判断这篇关于茶叶的短文是正式还是随意。", ("判断", "短文")),  # cut at the copula
    ("判断下面的动物属于哺乳动物还是鸟类。", ("判断", "动物")),
    ("Python里的列表和元组有什么区别？", (None, None)),  # a question: no instruction verb
]


@pytest.mark.parametrize(("text", "expected"), ZH_VERB_OBJECT_CASES)
def test_chinese_verb_object_heuristic(text: str, expected: tuple[str, str] | None) -> None:
    from selfinstruct.report import heuristic_verb_object_zh

    assert heuristic_verb_object_zh(text) == expected


def test_chinese_run_report(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="needs the [report] extra")
    out = tmp_path / "run"
    with OpenAITestServer(ChineseSyntheticTeacher()) as server:
        done = run_cli(*_bootstrap(server, out, "--language", "zh"), api_key=SECRET)
    assert done.returncode == 0, done.stderr
    done = run_cli("report", str(out), "-o", str(tmp_path / "rep"))
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    page = (tmp_path / "rep" / "report.html").read_text(encoding="utf-8")
    # The page names the parser and says what it is.
    assert "verb/object parser</td><td>Chinese heuristic" in page
    assert "Parser: Chinese heuristic (no spaCy Chinese pipeline installs from PyPI" in page
    # The verb table (rank, verb, tasks, objects) holds Chinese verbs and objects.
    table = page.split("<th>top objects</th></tr>", 1)[1].split("</table>", 1)[0]
    rows = re.findall(
        r"<tr><td class=\"n\">\d+</td><td>([^<]+)</td>.*?<td>([^<]*)</td></tr>", table
    )
    assert len(rows) >= 5
    assert all(CJK.search(verb) for verb, _ in rows)
    assert sum(bool(CJK.search(objects)) for _, objects in rows) >= 5
    # The figure either draws the Chinese words in a font that has them or says it cannot.
    assert ("are drawn in" in page) != ("No installed font has these words" in page)
    # The English seeds were not used for the novelty replay: every score is under 0.7.
    assert "none above the threshold 0.7" in page
    assert "each CJK character is a word" in page  # the lengths figure's unit
    # Asking for spaCy on a Chinese run says why there is none, in one line.
    refused = run_cli("report", str(out), "-o", str(tmp_path / "rep2"), "--parser", "spacy")
    assert refused.returncode != 0 and "no spaCy Chinese pipeline installs from PyPI" in (
        refused.stderr
    )
    assert "Traceback" not in refused.stderr


def test_verb_figure_without_a_cjk_font_numbers_the_verbs() -> None:
    pytest.importorskip("matplotlib", reason="needs the [report] extra")
    import warnings

    from selfinstruct.report import Glyphs, VerbStats, glyphs_for, plot_verbs

    stats = VerbStats(3, 3, [("写", 2, [("诗", 1), ("信", 1)]), ("翻译", 1, [("句子", 1)])])
    assert glyphs_for(["write", "poem"]) == Glyphs()
    assert glyphs_for(["写", "诗"]).missing
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib warns of every glyph it cannot draw
        png = plot_verbs(stats, Glyphs(missing=True, font=None))
        assert png.startswith(b"\x89PNG")
        found = glyphs_for(["写", "诗", "信", "翻译", "句子"])
        # Matplotlib's own Last Resort font maps every character to a box: never chosen.
        assert not (found.font or "").startswith("Last Resort")
        if found.font is not None:  # where a CJK font is installed, it draws every word
            assert plot_verbs(stats, found).startswith(b"\x89PNG")


@pytest.mark.skipif(
    find_chromium() is None, reason="no chromium on PATH (apt-get install chromium)"
)
def test_chinese_report_renders_in_headless_chromium(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib", reason="needs the [report] extra")
    from selfinstruct.report import FIGURES, build_report

    out = tmp_path / "run"
    with OpenAITestServer(ChineseSyntheticTeacher()) as server:
        done = run_cli(*_bootstrap(server, out, "--language", "zh"), api_key=SECRET)
    assert done.returncode == 0, done.stderr
    result = build_report(out, tmp_path / "rep")
    chromium = find_chromium()
    assert chromium is not None
    checked = check_page(chromium, result.html)
    assert checked.loaded and checked.errors == []
    assert len(checked.images) == len(FIGURES)
    assert all(img["complete"] and img["width"] > 300 for img in checked.images)


def test_report_counts_chinese_lengths_as_the_filters_do() -> None:
    from selfinstruct.report import lengths

    task = Task(
        id="t1",
        name="t1",
        instruction="写一首关于秋天的诗。",
        instances=[Instance(input="秋天 落叶", output="秋风起，落叶飞。")],
        is_classification=False,
    )
    # Chinese has no spaces: one CJK character is one word, punctuation none (count_words).
    sizes = lengths([task], english=False)
    assert (sizes.instructions, sizes.inputs, sizes.outputs) == ([9], [4], [6])
    assert lengths([task]).instructions == [1]  # whitespace words, as for English


def test_chinese_run_end_to_end(tmp_path: Path) -> None:
    """Bootstrap, dry run, status, every export, report and dedup of one Chinese run."""
    pytest.importorskip("pyarrow", reason="needs the [hf] extra")
    out = tmp_path / "run"
    first_line = (
        (REPO / "prompts" / "zh" / "si_instructions.txt").read_text(encoding="utf-8").split("\n")[0]
    )
    with OpenAITestServer(ChineseSyntheticTeacher()) as server:
        done = run_cli(*_bootstrap(server, out, "--language", "zh"), api_key=SECRET)
        assert done.returncode == 0, done.stderr
        sent = len(server.requests)
        # The dry run of the same command checks the run as the run would, and shows the
        # Chinese prompts.
        plan = run_cli(
            *bootstrap_args(server, out, "--target", "80", "--language", "zh", "--dry-run"),
            api_key=SECRET,
        )
        assert len(server.requests) == sent  # a dry run sends nothing
    assert plan.returncode == 0, plan.stderr
    assert first_line in plan.stdout
    status = run_cli("status", "--out", str(out))
    assert status.returncode == 0, status.stderr
    assert "40" in status.stdout

    exports = {}
    for fmt in ("alpaca", "jsonl", "sharegpt", "openai", "tasks", "parquet", "hf"):
        suffix = {"alpaca": ".json", "parquet": ".parquet", "hf": ""}.get(fmt, ".jsonl")
        target = tmp_path / f"export-{fmt}{suffix}"
        done = run_cli("export", "--out", str(out), "-f", fmt, "-o", str(target))
        assert done.returncode == 0, (fmt, done.stderr)
        exports[fmt] = target
    for fmt in ("alpaca", "jsonl", "sharegpt", "openai", "tasks"):
        text = exports[fmt].read_text(encoding="utf-8")
        assert CJK.search(text), fmt
    import pyarrow.parquet as pq

    records = len(json.loads(exports["alpaca"].read_text(encoding="utf-8")))
    assert pq.read_table(exports["parquet"]).num_rows == records

    done = run_cli("report", str(out), "-o", str(tmp_path / "rep"))
    assert done.returncode == 0, done.stderr

    # dedup of our own exports keeps every record: the CJK-aware tokenizer is chosen.
    for fmt in ("alpaca", "jsonl", "sharegpt", "openai", "tasks"):
        kept = tmp_path / f"kept-{fmt}{exports[fmt].suffix}"
        done = run_cli("dedup", str(exports[fmt]), "-o", str(kept))
        assert done.returncode == 0, (fmt, done.stderr)
        assert "unicode tokenizer" in done.stdout, done.stdout
        assert kept.read_bytes() == exports[fmt].read_bytes(), fmt
    # ... and drops a Chinese near duplicate, which the rouge tokenizer cannot see at all.
    data = json.loads(exports["alpaca"].read_text(encoding="utf-8"))
    copy = dict(data[0], instruction=data[0]["instruction"] + "。")
    noisy = tmp_path / "noisy.json"
    noisy.write_text(json.dumps([*data, copy], ensure_ascii=False), encoding="utf-8")
    done = run_cli("dedup", str(noisy), "-o", str(tmp_path / "clean.json"))
    assert done.returncode == 0, done.stderr
    assert len(json.loads((tmp_path / "clean.json").read_text(encoding="utf-8"))) == len(data)
    rouge = run_cli("dedup", str(noisy), "-o", str(tmp_path / "blind.json"), "--tokenizer", "rouge")
    assert rouge.returncode == 0, rouge.stderr
    assert len(json.loads((tmp_path / "blind.json").read_text(encoding="utf-8"))) == len(data) + 1
