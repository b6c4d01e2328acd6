"""Captions say only what their figure draws: checked against the figure's own artists.

The oracle is the matplotlib Figure: its Line2D styles, its shaded spans (axvspan
polygons), its outlines (LineCollection) and the y-data of the plotted curves. Each
caption is written by interp.reporting.captions from the record the plotting call
left; these tests read the artists directly and compare.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex
from matplotlib.patches import Polygon, Rectangle

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_report import L, positional_model, templates

import interp
from interp.plots._style import class_colour, drawn
from interp.reporting import captions

CLAIMS = {  # word in a caption -> test on the figure's artists
    "dashed": lambda fig: any(_dashed(a) for ax in fig.axes for a in ax.lines + ax.patches),
    "dotted": lambda fig: any(ln.get_linestyle() == ":" for ax in fig.axes for ln in ax.lines),
    "shaded": lambda fig: any(_spans(ax) for ax in fig.axes),
    "outlined": lambda fig: any(
        isinstance(c, LineCollection) for ax in fig.axes for c in ax.collections
    ),
}


def _dashed(artist) -> bool:
    style = artist.get_linestyle()
    return style in ("--", "dashed") or (isinstance(style, tuple) and style[1] is not None)


def _spans(ax) -> list[tuple[float, float, str]]:
    """(x0, x1, colour) of every axvspan (a filled, translucent polygon spanning the axes)."""
    out = []
    for p in ax.patches:
        if isinstance(p, (Polygon, Rectangle)) and p.get_fill() and p.get_alpha() is not None \
                and p.get_alpha() < 1:  # fmt: skip
            xs = p.get_path().transformed(p.get_patch_transform()).vertices[:, 0] \
                if isinstance(p, Rectangle) else np.asarray(p.get_xy())[:, 0]  # fmt: skip
            out.append((float(xs.min()), float(xs.max()), to_hex(p.get_facecolor())))
    return out


def check(caption: str, fig) -> None:
    for word, holds in CLAIMS.items():
        if word in caption:
            assert holds(fig), f"caption says {word!r} but the figure has none: {caption}"
    assert "near their initial values" not in caption


def _model(negative_class: int | None = None):
    model = positional_model()
    if negative_class is not None:
        with torch.no_grad():
            model[3].weight[negative_class] *= -1
    return model


@pytest.fixture(scope="module", params=[None, 1], ids=["positive", "class-1-negative"])
def conn(request):
    x, y = templates(24)
    model = _model(request.param)
    geo = interp.structure(model, x[:1])
    return interp.connectivity(model, geo, x=x, y=y), request.param


def test_profile_caption_matches_the_plotted_curves(conn):
    conn, negative = conn
    fig = conn.plot()
    caption = captions.profiles(conn, drawn(fig))
    check(caption, fig)
    ax = fig.axes[0]  # the signed panel: one curve per class, each footprint shaded
    spans = {colour: (a, b) for a, b, colour in _spans(ax)}
    signs, outside = {}, []
    for k, name in enumerate(conn.classes):
        curve = next(ln for ln in ax.lines if to_hex(ln.get_color()) == to_hex(class_colour(k))
                     and ln.get_label() == repr(name))  # fmt: skip
        x, v = np.asarray(curve.get_xdata(), float), np.asarray(curve.get_ydata(), float)
        a, b = spans[to_hex(class_colour(k))]
        inside = (x >= a) & (x <= b)
        signs[name] = v[inside].mean() > 0
        outside.append(v[~inside])
    for name, up in signs.items():
        part = "positive" if up else "negative"
        sentence = next(s for s in caption.split(". ") if f"'{name}'" in s and
                        ("positive" in s or "negative" in s))  # fmt: skip
        assert part in sentence, (name, caption)
    if negative is not None:
        assert not signs[conn.classes[negative]]
    lo, hi = (float(v) for v in re.search(r"range from (\S+) to (\S+?):", caption).groups())
    values = np.concatenate(outside)
    # 3 significant digits, as printed.
    assert lo == pytest.approx(values.min(), abs=5e-3 * max(1.0, abs(values.min())))
    assert hi == pytest.approx(values.max(), abs=5e-3 * max(1.0, abs(values.max())))


def test_weight_map_caption_names_its_marks(conn):
    conn, _ = conn
    for k, name in enumerate(conn.classes):
        fig = conn.plot_weights(k)
        caption = captions.weight_map(name, drawn(fig))
        check(caption, fig)
        assert "dashed" in caption and "outlined" in caption  # both are drawn in 1D


def test_explanation_caption_says_shaded_not_dashed_footprint():
    x, y = templates(8)
    model = positional_model()
    geo = interp.structure(model, x[:1])
    bare = interp.explain_shift(model, x[1:2], int(y[1]), -12, structure=geo)
    fig = bare.plot()  # no connectivity: no footprint drawn, none named
    data = {"samples": [1], "shift": -12, "per_sample": [bare.to_dict()]}
    caption = captions.explanation(data, 0, None, drawn(fig))
    check(caption, fig)
    assert "footprint" not in caption
    conn = interp.connectivity(model, geo, x=x, y=y)
    e = interp.explain_shift(model, x[1:2], int(y[1]), -12, structure=geo, connectivity=conn)
    fig = e.plot()
    data = {"samples": [1], "shift": -12, "per_sample": [e.to_dict()]}
    caption = captions.explanation(data, 0, None, drawn(fig))
    check(caption, fig)
    assert "shaded footprint" in caption and "dashed footprint" not in caption


def test_sweep_and_equivariance_captions_match_their_marks():
    x, y = templates(24)
    model = positional_model()
    sw = interp.shift_sweep(model, x, y, list(range(-L // 2, L // 2 + 1, 4)))
    fig = sw.plot()
    check(captions.sweep(sw.to_dict(), None, drawn(fig)), fig)
    sw_train = interp.shift_sweep(model, x, y, list(range(-8, 9, 4)), train_range=(-2, 2))
    fig = sw_train.plot()
    caption = captions.sweep(sw_train.to_dict(), None, drawn(fig))
    assert "shaded band" in caption
    check(caption, fig)
    eq = interp.equivariance(model, x[:2], [1, 2])
    fig = eq.plot()
    check(captions.equivariance(eq.to_dict(), drawn(fig)), fig)


def test_overlapping_footprints_keep_their_class_colour_and_hatch(conn):
    """Each class's footprint is outlined and hatched in its own line colour, one hatch per
    class, so four overlapping spans stay apart instead of merging into grey."""
    conn, _ = conn
    ax = conn.plot().axes[0]
    hatched = [p for p in ax.patches if p.get_hatch()]
    with_fp = [k for k, c in enumerate(conn.per_class) if c.footprint is not None]
    assert len(hatched) == len(with_fp)
    edges = [to_hex(p.get_edgecolor()[:3]) for p in hatched]
    assert edges == [to_hex(class_colour(k)) for k in with_fp]
    assert len({p.get_hatch() for p in hatched}) == len(hatched)
