"""Run the user's model for analysis and leave it exactly as it was.

Every analysis in interp enters :func:`inspecting` before touching a model. It
puts the model in eval mode, stops parameters from collecting gradients, and
in ``finally`` restores training flags, ``requires_grad``, ``.grad``, the hook
dictionaries (removing any hook added inside, by interp or by Captum), torch's
grad mode and its RNG state. Pattern from torchcam ``explain.py`` and captum
``_utils/gradient.py``: save, try, restore in finally.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

# Per-module hook dictionaries that a forward or backward may register into.
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


def bare_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` without any of its hooks, for interp's own computations.

    ``copy.deepcopy`` would copy the user's hooks too, and with them the objects their bound
    methods hold, so a float64 working copy would run copies of the user's callbacks.
    """
    import copy

    memo: dict[int, Any] = {}
    for module in model.modules():
        for attr in _HOOK_DICTS:
            hooks = getattr(module, attr, None)
            if hooks is not None:
                memo[id(hooks)] = type(hooks)()
    return copy.deepcopy(model, memo)


def _snapshot_hooks(model: nn.Module) -> list[tuple[nn.Module, str, dict[Any, Any]]]:
    saved = []
    for module in model.modules():
        for attr in _HOOK_DICTS:
            hooks = getattr(module, attr, None)
            if isinstance(hooks, dict):
                saved.append((module, attr, dict(hooks)))
    return saved


def _restore_hooks(saved: list[tuple[nn.Module, str, dict[Any, Any]]]) -> None:
    for module, attr, before in saved:
        hooks = getattr(module, attr)
        for key in [k for k in hooks if k not in before]:
            del hooks[key]
        for key, value in before.items():
            if key not in hooks:
                hooks[key] = value
        if isinstance(hooks, OrderedDict):
            for key in before:
                hooks.move_to_end(key)


@contextmanager
def inspecting(model: nn.Module, *, grad: bool = False) -> Iterator[nn.Module]:
    """Yield ``model`` in eval mode; restore all of its state afterwards.

    Args:
        model: the user's model. Its weights are never written.
        grad: enable autograd inside the block (attribution needs it);
            parameters still do not require grad, so no ``.grad`` is written.

    >>> with inspecting(model) as m:      # doctest: +SKIP
    ...     logits = m(x)
    """
    modes = [(m, m.training) for m in model.modules()]
    params = list(model.parameters())
    requires = [p.requires_grad for p in params]
    grads = [p.grad for p in params]
    hooks = _snapshot_hooks(model)
    grad_mode = torch.is_grad_enabled()
    rng = torch.get_rng_state()
    try:
        model.eval()
        for p in params:
            p.requires_grad_(False)
        torch.set_grad_enabled(grad)
        yield model
    finally:
        torch.set_grad_enabled(grad_mode)
        torch.set_rng_state(rng)
        _restore_hooks(hooks)
        for p, req, g in zip(params, requires, grads, strict=True):
            p.requires_grad_(req)
            p.grad = g
        for m, training in modes:
            m.training = training
