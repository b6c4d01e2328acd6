"""Predicted classes: ties within float32 rounding of the logits go to the lowest index."""

from __future__ import annotations

import torch

from interp.sweep.stats import top1


def test_exact_and_rounding_level_ties_go_to_the_lowest_class() -> None:
    # Sample scale 2: 2e-8 (the noise float32 FFTs leave on an exact tie) is a tie, as is
    # 1.9e-6 (< 1e-6 * 2); 3e-6 and 1e-3 are not.
    logits = torch.tensor([[[0.0, 0.0, -1.0], [0.0, 2e-8, 0.0], [2.0, 2.0 + 1.9e-6, 0.0],
                            [2.0, 2.0 + 3e-6, 0.0], [0.5, 0.501, -2.0]]])  # fmt: skip
    assert top1(logits).tolist() == [[0, 0, 0, 1, 1]]
    # The scale is each sample's own: a small sample's near-tie is not merged by a large one.
    pair = torch.tensor([[[1e-3, 1e-3 + 1e-8]], [[100.0, 0.0]]])
    assert top1(pair).tolist() == [[1], [0]]
