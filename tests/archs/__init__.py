"""Small, seeded re-implementations of real architectures, each with its true geometry.

``ARCHS`` maps a case name to its :class:`ArchCase`; ``ARCHS[name].factory(seed=0)`` builds the
eval-mode model. See ``_case.py`` for the conventions behind every number.
"""

from __future__ import annotations

from ._case import ArchCase, FeatureMap
from .blurpool import BLURPOOL_RESNET, BlurPool, blurpool_resnet_like
from .edge_cases import (
    ADAPTIVE8_BINS,
    EDGE_CASES,
    INDEX_POSITION,
    NONDIVISIBLE_BINS,
    adaptive_pool8_model,
    adaptive_pool_nondivisible_model,
    constant_pad_model,
    index_head_model,
    lstm_head_model,
    positional_seed_like,
)
from .eeg import (
    EEG_CASES,
    CombinedConv,
    Ensure4d,
    Expression,
    MaxNorm,
    deep4_like,
    eegnet_like,
    shallow_fbcsp_like,
)
from .mobilenet import MOBILENETV3, SqueezeExcitation, mobilenetv3_like
from .resnet import RESNET18, BasicBlock, resnet18_like
from .timeseries import TIMESERIES_CASES, fcn_like, inception_time_like

ARCHS: dict[str, ArchCase] = {
    case.name: case
    for case in (
        RESNET18,
        MOBILENETV3,
        BLURPOOL_RESNET,
        *EEG_CASES,
        *TIMESERIES_CASES,
        *EDGE_CASES,
    )
}

__all__ = [
    "ADAPTIVE8_BINS",
    "ARCHS",
    "INDEX_POSITION",
    "NONDIVISIBLE_BINS",
    "ArchCase",
    "BasicBlock",
    "BlurPool",
    "CombinedConv",
    "Ensure4d",
    "Expression",
    "FeatureMap",
    "MaxNorm",
    "SqueezeExcitation",
    "adaptive_pool8_model",
    "adaptive_pool_nondivisible_model",
    "blurpool_resnet_like",
    "constant_pad_model",
    "deep4_like",
    "eegnet_like",
    "fcn_like",
    "inception_time_like",
    "index_head_model",
    "lstm_head_model",
    "mobilenetv3_like",
    "positional_seed_like",
    "resnet18_like",
    "shallow_fbcsp_like",
]
