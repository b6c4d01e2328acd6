"""Figure PNGs: drawn above 1x for phones, shown at CSS size, a small palette (report size)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from interp.plots._style import new_figure
from interp.reporting.blocks import CSS_DPI, FIGURE_DPI, PALETTE_COLOURS, figure_ref


def test_a_figure_is_drawn_at_1_5x_and_shown_at_its_css_size():
    fig, axes = new_figure(1, 1, height=3.0)
    ax = axes[0, 0]
    for k in range(6):  # several colours and antialiased lines, like a real plot
        ax.plot(range(50), [((i * (k + 1)) % 17) / 17 for i in range(50)], lw=1.6)
    ax.imshow([[i * j for j in range(40)] for i in range(30)], extent=(0, 49, 0, 1))
    w_in, h_in = fig.get_figwidth(), fig.get_figheight()
    ref = figure_ref("t", fig, "a caption")
    image = Image.open(io.BytesIO(ref.png))
    # Oracle: matplotlib's figure size in inches times the dots per inch asked for.
    assert image.size == (round(w_in * FIGURE_DPI), round(h_in * FIGURE_DPI))
    assert (ref.width, ref.height) == (round(w_in * CSS_DPI), round(h_in * CSS_DPI))
    assert FIGURE_DPI / CSS_DPI == pytest.approx(1.5)
    assert image.mode == "P"
    assert len(image.convert("RGB").getcolors(1 << 24)) <= PALETTE_COLOURS
