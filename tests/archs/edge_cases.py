"""Tiny 1D models that each isolate one awkward trait of a head or a padding scheme."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ._case import ArchCase, FeatureMap
from ._init import finish, keeps_global_rng

INDEX_POSITION = 100
# AdaptiveAvgPool1d bins as [start, end) of its input: bin i = [floor(i L / n), ceil((i+1) L / n)).
ADAPTIVE8_BINS = tuple((32 * i, 32 * i + 32) for i in range(8))  # L = 256: uniform
# L = 100, n = 7: starts 0 14 28 42 57 71 85 (steps 14 14 14 15 14 14), lengths 15 15 15 16 15 15
# 15, neighbouring bins overlap by one position: not a strided pool.
NONDIVISIBLE_BINS = ((0, 15), (14, 29), (28, 43), (42, 58), (57, 72), (71, 86), (85, 100))


@keeps_global_rng
def constant_pad_model(seed: int = 0) -> nn.Module:
    """ConstantPad1d(3) -> Conv1d k7 -> ReLU -> circular Conv1d k5 -> ReLU -> global max -> Linear.

    Input (N, 1, 64).
    """
    model = nn.Sequential(
        nn.ConstantPad1d((3, 3), 0.0),  # (N, 1, 70)
        nn.Conv1d(1, 4, 7),  # (N, 4, 64)
        nn.ReLU(),
        nn.Conv1d(4, 4, 5, padding=2, padding_mode="circular"),  # (N, 4, 64)
        nn.ReLU(),
        nn.AdaptiveMaxPool1d(1),  # (N, 4, 1)
        nn.Flatten(),
        nn.Linear(4, 3),
    )
    return finish(model, (1, 64), seed)


@keeps_global_rng
def adaptive_pool8_model(seed: int = 0) -> nn.Module:
    """Conv1d k7 p3 -> ReLU -> AdaptiveAvgPool1d(8) -> Flatten -> Linear(32, 3). (N, 1, 256)."""
    model = nn.Sequential(
        nn.Conv1d(1, 4, 7, padding=3),  # (N, 4, 256)
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(8),  # (N, 4, 8): at L = 256 exactly AvgPool1d(32, 32)
        nn.Flatten(),  # (N, 32)
        nn.Linear(32, 3),
    )
    return finish(model, (1, 256), seed)


class IndexHead(nn.Module):
    """``fc(relu(conv(x))[:, :, 100])``: the head reads exactly one position."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, 8, 9, padding=4)
        self.fc = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (N, 1, 256) -> (N, 8, 256) -> (N, 8) -> (N, 3)
        return self.fc(F.relu(self.conv(x))[:, :, INDEX_POSITION])


@keeps_global_rng
def index_head_model(seed: int = 0) -> nn.Module:
    """Conv1d(1, 8, 9, padding=4), functional ReLU, index position 100, Linear. (N, 1, 256)."""
    return finish(IndexHead(), (1, 256), seed)


class LSTMHead(nn.Module):
    """conv -> ReLU -> (N, L, H) -> LSTM -> last step -> Linear, hidden size == channels == 8."""

    def __init__(self, hidden: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv1d(1, hidden, 5)
        self.relu = nn.ReLU()
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.fc = nn.Linear(hidden, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(self.conv(x))  # (N, 8, 124)
        x = x.permute(0, 2, 1)  # (N, 124, 8)
        out, _ = self.lstm(x)  # (N, 124, 8): same channel count as the conv map
        return self.fc(out[:, -1])  # (N, 3)


@keeps_global_rng
def lstm_head_model(seed: int = 0) -> nn.Module:
    """Conv1d(1, 8, 5) -> ReLU -> LSTM(8, 8) -> last step -> Linear. Input (N, 1, 128)."""
    return finish(LSTMHead(8), (1, 128), seed)


@keeps_global_rng
def positional_seed_like(seed: int = 0) -> nn.Module:
    """Conv1d(1, 8, 16) -> ReLU -> MaxPool1d(4, 2) -> Dropout -> Flatten -> Linear. (N, 1, 512)."""
    model = nn.Sequential(
        nn.Conv1d(1, 8, 16),  # (N, 8, 497)
        nn.ReLU(),
        nn.MaxPool1d(4, 2),  # (N, 8, 247)
        nn.Dropout(0.25),
        nn.Flatten(),  # (N, 1976)
        nn.Linear(8 * 247, 3),
    )
    return finish(model, (1, 512), seed)


@keeps_global_rng
def adaptive_pool_nondivisible_model(seed: int = 0) -> nn.Module:
    """Conv1d k5 p2 -> ReLU -> AdaptiveAvgPool1d(7) on length 100 -> Flatten -> Linear(28, 3)."""
    model = nn.Sequential(
        nn.Conv1d(1, 4, 5, padding=2),  # (N, 4, 100)
        nn.ReLU(),
        nn.AdaptiveAvgPool1d(7),  # (N, 4, 7): bins NONDIVISIBLE_BINS
        nn.Flatten(),
        nn.Linear(28, 3),
    )
    return finish(model, (1, 100), seed)


def _fm(site: str, shape: tuple[int, ...], s: int, rf: int, start: int, **kw: str) -> FeatureMap:
    return FeatureMap(site, shape, (-1,), (s,), (rf,), (start,), **kw)


EDGE_CASES = (
    # pad 3 + k7: rf 7, start -3; circular k5 p2: rf 11, start -5. Interior only: the circular
    # conv wraps, so position 0 reads input 59..63 as well as 0..5 (its hull spans 64).
    ArchCase(
        name="constant_pad_model",
        factory=constant_pad_model,
        input_shape=(1, 64),
        num_classes=3,
        family="edge",
        shift_axes=(-1,),
        feature_map=_fm("4", (4, 64), 1, 11, -5),
        stages=(_fm("1", (4, 64), 1, 7, -3),),
        head_kind="pooled",
        head_affine=False,
        head_sites=("5", "6", "7"),
        break_layer="5",
        collapse="5",
        notes="Zero padding (a ConstantPad1d module) then circular padding: the net is neither "
        "zero-padded nor circular, and border positions depend on the opposite border.",
    ),
    # k7 p3: rf 7, start -3; AdaptiveAvgPool1d(8) at L = 256 is AvgPool(32, 32):
    # rf 7 + 31 = 38, stride 32, start -3. Only at L = 256: probe at the input shape.
    ArchCase(
        name="adaptive_pool8_model",
        factory=adaptive_pool8_model,
        input_shape=(1, 256),
        num_classes=3,
        family="edge",
        shift_axes=(-1,),
        feature_map=_fm("2", (4, 8), 32, 38, -3),
        stages=(_fm("1", (4, 256), 1, 7, -3),),
        head_kind="positional",
        head_affine=True,
        head_sites=("3", "4"),
        break_layer="4",
        collapse="3",
        notes="The adaptive pool is itself shift-equivariant here (uniform bins of 32), so the "
        "last equivariant map is its output (8 positions), not the conv's.",
    ),
    # k9 p4: rf 9, start -4; the head reads relu(conv) at position 100 only, so the logits
    # depend on input positions 96..104 and nothing else.
    ArchCase(
        name="index_head_model",
        factory=index_head_model,
        input_shape=(1, 256),
        num_classes=3,
        family="edge",
        shift_axes=(-1,),
        feature_map=_fm("conv", (8, 256), 1, 9, -4, after="F.relu"),
        head_kind="positional",
        head_affine=True,
        head_sites=(f"forward: [:, :, {INDEX_POSITION}]", "fc"),
        break_layer=f"forward: [:, :, {INDEX_POSITION}]",
        collapse=f"forward: [:, :, {INDEX_POSITION}]",
        notes="The map the head reads is F.relu(conv(x)), which has no module call site; the "
        "nearest hookable site is 'conv'. head_affine refers to relu(conv) -> index -> fc; from "
        "the conv output itself the head is relu-index-fc, not affine.",
    ),
    # k5, no padding: rf 5, start 0, 124 positions.
    ArchCase(
        name="lstm_head_model",
        factory=lstm_head_model,
        input_shape=(1, 128),
        num_classes=3,
        family="edge",
        shift_axes=(-1,),
        feature_map=_fm("relu", (8, 124), 1, 5, 0),
        head_kind="positional",
        head_affine=False,
        head_sites=("forward: x.permute(0, 2, 1)", "lstm", "forward: out[:, -1]", "fc"),
        break_layer="lstm",
        collapse="forward: out[:, -1]",
        notes="Hidden size == channel count == 8: the LSTM output (N, 124, 8) has the conv "
        "map's channel count on its last axis; the permute moves positions to axis 1.",
    ),
    # k16: rf 16; MaxPool(4, 2): rf 16 + 3 = 19, stride 2; no padding: start 0. 497 -> 247.
    ArchCase(
        name="positional_seed_like",
        factory=positional_seed_like,
        input_shape=(1, 512),
        num_classes=3,
        family="edge",
        shift_axes=(-1,),
        feature_map=_fm("3", (8, 247), 2, 19, 0),
        stages=(_fm("1", (8, 497), 1, 16, 0), _fm("2", (8, 247), 2, 19, 0)),
        head_kind="positional",
        head_affine=True,
        head_sites=("4", "5"),
        break_layer="5",
        collapse="4",
    ),
    # k5 p2: rf 5, start -2; then AdaptiveAvgPool1d(7) on 100 positions: non-uniform bins.
    ArchCase(
        name="adaptive_pool_nondivisible_model",
        factory=adaptive_pool_nondivisible_model,
        input_shape=(1, 100),
        num_classes=3,
        family="edge",
        shift_axes=(-1,),
        feature_map=_fm("1", (4, 100), 1, 5, -2),
        head_kind="positional",
        head_affine=True,
        head_sites=("2", "3", "4"),
        break_layer="2",
        collapse="3",
        notes="7 does not divide 100: the bins (NONDIVISIBLE_BINS) have steps 14 or 15 and "
        "lengths 15 or 16, so the pool is not a strided op; equivariance ends before it.",
    ),
)
