"""The content of a report, independent of its format: sections made of blocks.

Both renderers (HTML and Markdown) walk the same blocks, so the two files say
the same thing. Every string in a block is plain text (never markup): the HTML
template escapes it and the Markdown renderer escapes what Markdown would read.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from matplotlib.figure import Figure

CSS_DPI = 100  # CSS px per figure inch: a 5 in figure shows 500 px wide on a desktop
MIN_CSS_PX = 9.0  # the smallest figure text a reader meets, on a phone or a desktop
FIGURE_DPI = 3 * CSS_DPI // 2  # PNGs at 1.5x: sharp text on phones, and with a palette a
# report stays near its 1x size (seed_cnn: 2.4 MB at 2x / 128 colours, ~1.5 MB at 1.5x / 64)
PALETTE_COLOURS = 64  # plots are a few flat colours plus antialiasing


@dataclass(frozen=True)
class Paragraph:
    """A paragraph of generated text; ``strong`` renders it as the lead sentence."""

    text: str
    strong: bool = False
    kind: Literal["paragraph"] = "paragraph"


@dataclass(frozen=True)
class Bullets:
    """A titled list of sentences (reasons, suggestions)."""

    title: str
    items: tuple[str, ...]
    kind: Literal["bullets"] = "bullets"


@dataclass(frozen=True)
class Table:
    """A table of strings; ``highlight`` marks rows to emphasise (by index)."""

    header: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    caption: str = ""
    highlight: tuple[int, ...] = ()
    kind: Literal["table"] = "table"


@dataclass(frozen=True)
class FigureRef:
    """A figure as PNG bytes, written to ``figures/<name>.png``; the caption says what to see."""

    name: str
    caption: str
    png: bytes = field(repr=False)
    width: int = 0  # CSS pixels, for the <img> tag (layout does not jump while loading)
    height: int = 0
    min_points: float = 0.0  # the smallest text in the figure, in points
    width_in: float = 0.0  # the figure's width in inches (text px = pt * shown px / (72 in))
    drawn: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)  # plots.drawn
    kind: Literal["figure"] = "figure"


@dataclass(frozen=True)
class Note:
    """Why something is missing, or what more data would add."""

    text: str
    kind: Literal["note"] = "note"


@dataclass(frozen=True)
class Gallery:
    """Figures side by side (one per model in a comparison); wraps on a narrow screen."""

    figures: tuple[FigureRef, ...]
    kind: Literal["gallery"] = "gallery"

    @property
    def column_px(self) -> int:
        """Narrowest column: where the smallest text of the widest figure is 9 CSS px."""
        need = [f.width_in * 72 * MIN_CSS_PX / f.min_points for f in self.figures
                if f.min_points > 0 and f.width_in > 0]  # fmt: skip
        return math.ceil(max(need, default=400))


Block = Paragraph | Bullets | Table | FigureRef | Note | Gallery


@dataclass(frozen=True)
class Section:
    """One numbered part of a report (``id`` is its HTML anchor)."""

    id: str
    title: str
    blocks: tuple[Block, ...]
    available: bool = True  # False: the analysis could not run; blocks hold the note why

    @property
    def figures(self) -> tuple[FigureRef, ...]:
        out: list[FigureRef] = []
        for block in self.blocks:
            if isinstance(block, FigureRef):
                out.append(block)
            elif isinstance(block, Gallery):
                out.extend(block.figures)
        return tuple(out)


def omitted(id: str, title: str, why: str) -> Section:
    """A section whose analysis is not available, with the reason instead of content."""
    return Section(id, title, (Note(why),), available=False)


def _palette_png(png: bytes) -> bytes:
    """Re-encode a PNG with a :data:`PALETTE_COLOURS` palette: ~3x smaller, no visible change.

    Plots are a few flat colours plus antialiasing; a palette keeps committed
    example reports a few MB. Median cut without dithering is deterministic.
    """
    from PIL import Image  # matplotlib depends on Pillow

    image = Image.open(io.BytesIO(png)).convert("RGB")
    palette = image.quantize(
        colors=PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE
    )
    out = io.BytesIO()
    palette.save(out, format="PNG", optimize=True)
    return out.getvalue()


def figure_ref(name: str, fig: Figure, caption: str | Callable[[dict[str, Any]], str]) -> FigureRef:
    """Render ``fig`` to PNG bytes (deterministic: no software or date metadata).

    ``caption`` may be a function of what the figure drew (:func:`interp.plots._style.drawn`):
    the caption is then written from the figure itself.
    """
    from interp.plots._style import drawn, legible

    facts = drawn(fig)
    min_points = legible(fig)  # no text under 9 pt: >= 9 CSS px on a 390 px phone
    if callable(caption):
        caption = caption(facts)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=FIGURE_DPI, metadata={"Software": None})
    png = _palette_png(buf.getvalue())
    # The PNG header (IHDR) holds the pixel size at bytes 16-24, big-endian; shown at CSS size.
    width, height = struct.unpack(">II", png[16:24])
    scale = CSS_DPI / FIGURE_DPI
    return FigureRef(name, caption, png, round(width * scale), round(height * scale),
                     min_points, float(fig.get_figwidth()), facts)  # fmt: skip
