"""Sufficient statistics of a shift sweep: counts and sums that add up exactly over shards.

A :class:`~interp.sweep.result.Sweep` needs, per shift, the number of correct
top-1 predictions per class, the sum of the true-class probability per class, the
confusion counts, the class counts, and the number of ordered pairs of distinct
shifts of one sample that agree on the top-1 class (for consistency). All are sums
over samples, so a sweep over a set of samples is the sum of sweeps over any split
of it: integer counts merge exactly, probability sums (float64) to rounding. The
single-process sweep adds batches into one :class:`SweepStats`; a distributed sweep
merges the workers' with :meth:`SweepStats.merge`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from interp.errors import InterpError


def top1(logits: torch.Tensor) -> torch.Tensor:
    """Predicted class (B, S) of logits (B, S, K); ties go to the lowest class index.

    Logits within 1e-6 of a sample's largest |logit| count as tied (8 float32 ulps of it,
    below what a float32 forward rounds): the exact fast engine, whose float32 FFTs
    leave ~1e-8 relative noise where brute force computes an exact tie (a class reading
    only zeros), and brute force then agree, as ``torch.argmax`` breaks exact ties.
    """
    scale = logits.abs().amax((-2, -1), keepdim=True)  # (B, 1, 1)
    top = logits.amax(-1, keepdim=True)  # (B, S, 1)
    return (logits >= top - 1e-6 * scale).to(torch.uint8).argmax(-1)


@dataclass
class SweepStats:
    """Running sums of a sweep over S shifts and K classes.

    ``correct`` (K, S) and ``prob`` (K, S) are per true class, ``count`` (K,),
    ``confusion`` (S, K, K) is ``[shift][true][predicted]``, ``agree`` counts ordered
    pairs of distinct shifts of one sample predicted as the same class.
    """

    n: int
    correct: torch.Tensor
    prob: torch.Tensor
    count: torch.Tensor
    confusion: torch.Tensor
    agree: int

    @classmethod
    def empty(cls, shifts: int, classes: int) -> SweepStats:
        s, k = shifts, classes
        return cls(
            n=0,
            correct=torch.zeros(k, s, dtype=torch.long),
            prob=torch.zeros(k, s, dtype=torch.float64),
            count=torch.zeros(k, dtype=torch.long),
            confusion=torch.zeros(s, k, k, dtype=torch.long),
            agree=0,
        )

    @classmethod
    def of(cls, logits: torch.Tensor, y: torch.Tensor) -> SweepStats:
        """The statistics of one batch: logits (B, S, K), y (B,)."""
        stats = cls.empty(logits.shape[1], logits.shape[2])
        stats.add(logits, y)
        return stats

    def add(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Add one batch: logits (B, S, K), y (B,) integer labels in ``[0, K)``."""
        b, s, k = logits.shape
        if (s, k) != tuple(self.correct.shape[::-1]):
            raise ValueError(f"logits have {s} shifts and {k} classes, the sums {self.shape}")
        y = y.to(torch.long).cpu()
        bad = ((y < 0) | (y >= k)).nonzero()
        if bad.numel():
            i = int(bad[0, 0])
            raise InterpError(
                f"`y` has label {int(y[i])} at row {i} of a batch, but the model has "
                f"{k} classes (0..{k - 1}); fix the labels"
            )
        prob = torch.softmax(logits.to(torch.float64), -1)  # (B, S, K)
        pred = top1(logits)  # (B, S)
        true_prob = prob.gather(-1, y[:, None, None].expand(b, s, 1))[..., 0]  # (B, S)
        onehot = torch.nn.functional.one_hot(y, k)  # (B, K)
        self.n += b
        self.count += onehot.sum(0)
        self.correct += onehot.T @ (pred == y[:, None]).long()  # (K, S)
        self.prob += onehot.T.to(torch.float64) @ true_prob
        flat = torch.arange(s)[None, :] * k * k + y[:, None] * k + pred  # (B, S)
        self.confusion += torch.bincount(flat.reshape(-1), minlength=s * k * k).view(s, k, k)
        if s > 1:
            c = torch.nn.functional.one_hot(pred, k).sum(1)  # (B, K): shifts predicted as k
            self.agree += int((c * (c - 1)).sum())  # ordered pairs of shifts that agree

    @property
    def shape(self) -> tuple[int, int]:
        """(S shifts, K classes)."""
        k, s = self.correct.shape
        return s, k

    def merge(self, other: SweepStats) -> None:
        """Add another shard's statistics (same shifts and classes) into these."""
        if other.shape != self.shape:
            raise ValueError(f"cannot merge statistics shaped {other.shape} into {self.shape}")
        self.n += other.n
        self.correct += other.correct
        self.prob += other.prob
        self.count += other.count
        self.confusion += other.confusion
        self.agree += other.agree
