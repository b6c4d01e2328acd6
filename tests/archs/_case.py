"""The record each test architecture ships with: its hand-computed geometry.

Conventions used by every case:

* Axes are negative indices into *batched* tensors. ``ArchCase.shift_axes`` are the input's
  translation axes; ``FeatureMap.axes`` are the matching axes of a feature map, in the same order.
* A feature map's ``site`` is the qualified module name (``model.named_modules()``) whose forward
  output it is; ``call`` picks one call of a reused module (``-1``: the last one).
* ``stride``, ``receptive_field`` and ``start`` are per shift axis, in input positions: position
  ``j`` of the map depends on input positions ``j * stride + start`` to
  ``j * stride + start + receptive_field - 1`` (``start < 0`` means the first positions read
  padding). This is the interior geometry; near borders the padding clips it.
* Logits are the model's output. For the braindecode-style nets that end in ``LogSoftmax`` the
  output is log-probabilities and the head is ``log_softmax(affine(A))``: positional, NOT affine.
  Their ``*_no_logsoftmax`` variants end at the affine classifier.
* ``head_sites`` lists the head's call sites in order; functional ops in a ``forward`` are written
  ``"<owner>.forward: <expr>"`` (``"forward: ..."`` for the root module).
* ``break_layer`` is the head's first position-mixing op (the first place shift equivariance
  breaks); ``collapse`` is the first op whose output has no position axis left (a Flatten, a
  global pool, a full-kernel conv, an index). They coincide except for Flatten -> Linear heads
  (collapse at the Flatten, break at the Linear) and recurrent heads.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from torch import nn


@dataclass(frozen=True)
class FeatureMap:
    """A shift-equivariant feature map and its geometry, worked out by hand.

    Attributes:
        site: Qualified module name whose output is the map.
        shape: ``(C, *positions)`` at the case's input shape, no batch axis.
        axes: Axes of the batched map carrying the input's shift axes, in ``shift_axes`` order.
        stride: Input positions between neighbouring map positions, per shift axis.
        receptive_field: Input positions one interior map position depends on, per shift axis.
        start: First input index in the receptive field of map position 0, per shift axis.
        call: Which call of a reused module produces the map (``-1``: the last).
        after: A functional op the forward applies to the site's output before the head reads
            it (e.g. ``"F.relu"``); pointwise, so it does not change the geometry.
    """

    site: str
    shape: tuple[int, ...]
    axes: tuple[int, ...]
    stride: tuple[int, ...]
    receptive_field: tuple[int, ...]
    start: tuple[int, ...]
    call: int = -1
    after: str = ""


@dataclass(frozen=True)
class ArchCase:
    """One small re-implementation of a real architecture, with its true geometry.

    Attributes:
        name: Registry key.
        factory: ``factory(seed=0) -> nn.Module`` in eval mode with seeded weights.
        input_shape: Input shape without the batch axis.
        num_classes: Logits per example.
        family: ``"resnet"``, ``"mobilenet"``, ``"blurpool"``, ``"eeg"``, ``"timeseries"`` or
            ``"edge"``.
        shift_axes: Axes of the batched input that are translation axes.
        feature_map: The last shift-equivariant feature map: what the head reads.
        head_kind: ``"positional"`` if the logits depend on where features sit in the map,
            ``"pooled"`` if any permutation of positions leaves them unchanged.
        head_affine: Whether the map from ``feature_map`` to the logits is affine.
        head_sites: The head's call sites, in call order.
        break_layer: The head's first position-mixing op.
        collapse: The first op whose output has no position axis left.
        stages: Earlier feature maps with hand-computed geometry (e.g. ResNet stage ends).
        nonshift_axes: ``(input axis, feature-map axis)`` pairs for input axes that are NOT
            shift axes but survive as a (size-1) feature-map axis, e.g. EEG electrodes.
        call_sites: Modules called more than once per forward, with their call counts.
        uncalled: Modules never called by the forward (their weights are used functionally).
        global_sites: Trunk modules that mix *all* positions (squeeze-excite): the true
            dependency set of later maps is the whole input; ``receptive_field`` is then the
            local (conv-path) receptive field.
        probe_lengths: Longer per-shift-axis input lengths at which the trunk's geometry is the
            same (fully convolutional trunks only); ``None``: probe at ``input_shape``.
        fx_traceable: Whether ``torch.fx.symbolic_trace`` succeeds on the model.
        notes: Anything a reader of the numbers should know.
    """

    name: str
    factory: Callable[..., nn.Module]
    input_shape: tuple[int, ...]
    num_classes: int
    family: str
    shift_axes: tuple[int, ...]
    feature_map: FeatureMap
    head_kind: Literal["positional", "pooled"]
    head_affine: bool
    head_sites: tuple[str, ...]
    break_layer: str
    collapse: str
    stages: tuple[FeatureMap, ...] = ()
    nonshift_axes: tuple[tuple[int, int], ...] = ()
    call_sites: tuple[tuple[str, int], ...] = ()
    uncalled: tuple[str, ...] = ()
    global_sites: tuple[str, ...] = ()
    probe_lengths: tuple[int, ...] | None = None
    fx_traceable: bool = True
    notes: str = ""

    @property
    def feature_maps(self) -> tuple[FeatureMap, ...]:
        """Every stated map: the stages, then the head's input."""
        return (*self.stages, self.feature_map)
