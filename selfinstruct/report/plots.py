"""Draw the one-run figures: verbs, novelty, lengths, rejections, usage, classification."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from selfinstruct.costs import usd
from selfinstruct.report.draw import figure as _figure
from selfinstruct.report.draw import no_data as _no_data
from selfinstruct.report.draw import png as _png
from selfinstruct.report.stats import Lengths
from selfinstruct.report.verbs import TOP_OBJECTS, VerbStats

# Characters of a verb or object label in the verbs figure: our choice, what a ring slot
# holds at the label sizes used.
LABEL_MAX_CHARS = 24


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
