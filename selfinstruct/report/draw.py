"""Draw and lay out what every report page shares: bare figures, PNG bytes, tables, images.

Matplotlib (the ``[report]`` extra) is imported only inside `figure`, so importing the report
package costs nothing when no page is drawn.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Collection, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from selfinstruct import __version__
from selfinstruct.errors import ConfigError
from selfinstruct.store import atomic_write

REPORT_INSTALL_HINT = (
    'pip install "selfinstruct[report]" (in a checkout: pip install -e ".[report]")'
)


def figure(width: float, height: float) -> Any:
    """Return a bare matplotlib Figure of this size in inches, or say how to install it."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise ConfigError(f"selfinstruct report needs matplotlib: {REPORT_INSTALL_HINT}") from None
    # A bare Figure needs no pyplot and no GUI backend: it renders with Agg on savefig.
    return Figure(figsize=(width, height), dpi=100, layout="constrained")


def png(fig: Any) -> bytes:
    """Render a figure as PNG bytes."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": f"selfinstruct {__version__}"})
    return buf.getvalue()


def no_data(ax: Any, message: str) -> None:
    """Replace an empty panel's axes by a grey message."""
    ax.text(0.5, 0.5, message, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_axis_off()


def plain(label: str) -> str:
    """Escape a label for matplotlib, so a "$" in a run's name never starts mathtext."""
    return label.replace("$", r"\$")


CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1240px; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; margin-bottom: 0.2rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.92rem; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25rem 0.8rem; text-align: left; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; }
td.text { max-width: 40rem; overflow-wrap: anywhere; }
figure { margin: 1rem 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9rem; max-width: 60rem; }
.grid { display: flex; flex-wrap: wrap; gap: 2rem; align-items: flex-start; }
.grid figure { max-width: 620px; }
.note { color: #555; font-size: 0.9rem; max-width: 60rem; }
"""


def table(
    head: Sequence[str],
    rows: Iterable[Sequence[object]],
    numeric: Collection[int],
    wrap: Collection[int] = (),
) -> str:
    """Lay out an HTML table; columns in `numeric` align right, those in `wrap` break anywhere."""

    def cell(tag: str, i: int, value: object) -> str:
        cls = ' class="n"' if i in numeric else (' class="text"' if i in wrap else "")
        return f"<{tag}{cls}>{html.escape(str(value))}</{tag}>"

    out = ["<table><tr>" + "".join(cell("th", i, h) for i, h in enumerate(head)) + "</tr>"]
    out += ["<tr>" + "".join(cell("td", i, v) for i, v in enumerate(r)) + "</tr>" for r in rows]
    return "\n".join(out) + "</table>"


def img(name: str, data: bytes, alt: str, caption: str) -> str:
    """Embed a PNG as a data URI in a captioned figure; `caption` is HTML already escaped."""
    encoded = base64.b64encode(data).decode("ascii")
    return (
        f'<figure id="{name}"><img src="data:image/png;base64,{encoded}" '
        f'alt="{html.escape(alt)}"><figcaption>{caption}</figcaption></figure>'
    )


def write_page(
    out_dir: Path, name: str, page: str, pngs: Mapping[str, bytes]
) -> tuple[Path, list[Path]]:
    """Write a page and its figures as PNGs into `out_dir`; return the page's and PNGs' paths.

    Each file is replaced atomically, so a page being regenerated is never seen half written.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for figure_name, data in pngs.items():
        path = out_dir / f"{figure_name}.png"
        atomic_write(path, data)
        paths.append(path)
    html_path = out_dir / name
    atomic_write(html_path, page.encode("utf-8"))
    return html_path, paths
