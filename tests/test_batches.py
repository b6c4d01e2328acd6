"""interp._batches.rebatch: batches of any sizes re-cut into fixed-size ones."""

from __future__ import annotations

import pytest
import torch

from interp._batches import rebatch
from interp.errors import InterpError


@pytest.mark.parametrize("sizes", [[5, 1, 7, 3], [16], [4, 4, 4, 4], [1] * 9, [30, 2]])
def test_rebatch_keeps_every_row_in_order_in_batches_of_size(sizes):
    """Law: the output concatenated is the input concatenated; every batch but the last
    has ``size`` rows."""
    rows = torch.arange(sum(sizes) * 3, dtype=torch.float32).view(-1, 3)
    parts, start = [], 0
    for n in sizes:
        parts.append((rows[start : start + n].clone(), torch.arange(start, start + n)))
        start += n
    out = list(rebatch(iter(parts), size=4))
    assert torch.equal(torch.cat([x for x, _ in out]), rows)
    assert torch.equal(torch.cat([y for _, y in out]), torch.arange(len(rows)))
    assert [len(x) for x, _ in out[:-1]] == [4] * (len(out) - 1) and 0 < len(out[-1][0]) <= 4


def test_rebatch_refuses_a_batch_of_another_shape():
    parts = [(torch.zeros(2, 3), torch.zeros(2)), (torch.zeros(2, 4), torch.zeros(2))]
    with pytest.raises(InterpError, match="use one shape"):
        list(rebatch(iter(parts), size=4))
