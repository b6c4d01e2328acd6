"""Figures, sentences and JSON of an AttributionComparison."""

from __future__ import annotations

import json

import matplotlib.pyplot as plt
import pytest
import torch
from matplotlib.figure import Figure

from interp.attribution.core import attribution_across_shifts

AXIS = [{"name": "wavelength", "unit": "nm", "start": 400.0, "step": 0.5}]


@pytest.fixture
def spectra_cmp(positional_1d):
    x = torch.rand(2, 1, 64, generator=torch.Generator().manual_seed(0))
    return attribution_across_shifts(positional_1d, x, [0, 1], [-8, 0, 8], method="saliency",
                                      axis=AXIS)  # fmt: skip


def test_similarity_plot_returns_a_figure_with_units_and_draws_into_a_given_ax(spectra_cmp):
    fig = spectra_cmp.plot()
    assert isinstance(fig, Figure) and plt.get_fignums() == []
    ax = fig.axes[0]
    assert ax.get_xlabel() == "shift (nm)"
    mean_line = ax.lines[2]  # two per-sample lines, then the mean
    assert list(mean_line.get_xdata()) == [-4.0, 0.0, 4.0]
    assert list(mean_line.get_ydata()) == pytest.approx(spectra_cmp.similarity.tolist())
    other = Figure()
    given = other.subplots()
    assert spectra_cmp.plot(ax=given) is other


def test_maps_plot_has_one_row_per_shift_in_axis_units(spectra_cmp):
    fig = spectra_cmp.plot_maps(1)
    rows = [ax for ax in fig.axes if ax.get_title(loc="left")]
    assert len(rows) == 3
    assert rows[-1].get_xlabel() == "wavelength (nm)"
    assert rows[0].get_title(loc="left").startswith("shift -4 nm: Pearson")
    with pytest.raises(ValueError, match="`sample` 2 is out of range for 2 samples"):
        spectra_cmp.plot_maps(2)
    with pytest.raises(ValueError, match="plot_neurons needs a feature-map method"):
        spectra_cmp.plot_neurons()
    assert plt.get_fignums() == []


def test_neurons_plot_shows_the_class_weights_then_each_shift(positional_1d):
    x = torch.rand(1, 1, 64, generator=torch.Generator().manual_seed(1))
    cmp = attribution_across_shifts(positional_1d, x, [2], [0, 4],
                                    method="layer_conductance")  # fmt: skip
    fig = cmp.plot_maps()  # feature-map methods draw the neuron figure
    titles = [ax.get_title(loc="left") for ax in fig.axes if ax.get_title(loc="left")]
    assert titles[0] == "head weights for class 2" and len(titles) == 3
    image = fig.axes[0].images[0].get_array()
    assert image.shape == (4, 29)
    torch.testing.assert_close(torch.tensor(image.data), cmp.weights[0].double())


def test_2d_figures_grid_of_heatmaps_and_similarity_over_dy_dx(positional_2d):
    x = torch.rand(1, 1, 12, 12, generator=torch.Generator().manual_seed(2))
    shifts = [(dy, dx) for dy in (-2, 0, 2) for dx in (-2, 0, 2)]
    cmp = attribution_across_shifts(positional_2d, x, [1], shifts, method="saliency")
    sim = cmp.plot()
    grid = sim.axes[0].images[0].get_array()
    assert grid.shape == (3, 3) and grid[1, 1] == pytest.approx(1.0)
    maps = cmp.plot_maps()
    assert sum(1 for ax in maps.axes if ax.images) == 9
    assert plt.get_fignums() == []


def test_sentences_and_json_come_from_the_numbers(spectra_cmp):
    text = spectra_cmp.sentences()
    sim = spectra_cmp.similarity
    assert f"at {float(sim[[0, 2]].mean()):.2f} on average" in text[1]
    worst = 0 if sim[0] < sim[2] else 2
    assert (
        f"{float(sim[worst]):.2f} at worst, at shift {'-4' if worst == 0 else '+4'} nm" in text[1]
    )
    p0 = float(spectra_cmp.reference_probability.mean())
    assert f"probability is {p0:.2f} unshifted" in text[4]
    data = json.loads(json.dumps(spectra_cmp.to_dict(), allow_nan=False))
    assert data["method"] == "saliency" and data["shifts"] == [-8, 0, 8]
    assert data["aligned_similarity"] == pytest.approx(sim.tolist())
    assert data["sentences"] == text and data["axis"] == AXIS
    assert len(data["pearson"]) == 2 and len(data["pearson"][0]) == 3
