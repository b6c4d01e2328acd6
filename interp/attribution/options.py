"""Defaults and checks for the options of each attribution method.

:func:`resolve` turns the user's ``**options`` into the complete keyword set a
runner in :mod:`interp.attribution.methods` needs, and :func:`settings` into a
JSON-safe summary for reports. Defaults: zero baselines, 50 steps, Captum's
integration rule per method, occlusion windows one receptive field wide, a
noise tunnel with 10 samples at 15% of the input range (Smilkov 2017).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from interp._util import json_float
from interp.attribution.methods import Method
from interp.errors import InterpError
from interp.geometry.core import Structure
from interp.hooks import check_layers, record

# Rows (inputs x steps) one forward/backward may hold: bounds memory, not results.
ROW_BUDGET_BYTES = 1 << 30
NT_TYPES = ("smoothgrad", "smoothgrad_sq", "vargrad")

_DEFAULTS: dict[str, Any] = {
    "baselines": 0.0,
    "n_steps": 50,
    "internal_batch_size": None,
    "abs": True,
    "eps": 1e-10,
    "n_samples": 20,
    "stdevs": 0.0,
    "window": None,
    "strides": None,
    "perturbations_per_eval": 16,
    "relu_attributions": False,
    "layer": None,
    "neuron": None,
    "noise_tunnel": None,
    "nt_samples": 10,
    "nt_stdevs": None,
    "nt_samples_batch_size": None,
}
# Captum's own default rule for each path method.
_INTEGRATION = {"neuron_conductance": "riemann_trapezoid"}


def resolve(
    method: Method,
    model: nn.Module,
    x: torch.Tensor,
    target: torch.Tensor,
    geo: Structure,
    options: dict[str, Any],
) -> dict[str, Any]:
    """All keyword options for ``method`` on inputs like ``x`` (N, C, *S), defaults filled in.

    Runs inside ``inspecting(model, grad=True)``: the default neuron of
    ``neuron_conductance`` needs one forward pass.
    """
    unknown = sorted(set(options) - set(method.options))
    if unknown:
        raise TypeError(
            f"method {method.name!r} takes no option {unknown[0]!r}; it takes: "
            f"{', '.join(method.options) or '(none)'}"
        )
    o = {k: _DEFAULTS.get(k) for k in method.options}
    o["integration"] = _INTEGRATION.get(method.name, "gausslegendre")
    o.update(options)
    spatial = tuple(int(v) for v in x.shape[2:])
    if "n_steps" in o:
        _positive_int(o["n_steps"], "n_steps")
    if "baselines" in o:
        o["baselines"] = _baselines(method, o["baselines"], x)
    if method.layer:
        _layer(o, model, geo)
    if method.name == "occlusion":
        _occlusion(o, x, geo)
    if method.name == "neuron_conductance":
        o["neuron"] = _neuron(o, model, x, target, geo)
    if o.get("noise_tunnel"):
        _noise_tunnel(o, x)
    _batching(method, o, x, geo, spatial)
    return o


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"`{name}` must be a positive int, got {value!r}")
    return value


def _baselines(method: Method, base: Any, x: torch.Tensor) -> Any:
    shape = tuple(x.shape)
    if isinstance(base, (int, float)) and not isinstance(base, bool):
        if method.name == "gradient_shap":  # Captum wants a distribution: one constant baseline
            return torch.full((1, *shape[1:]), float(base), dtype=x.dtype, device=x.device)
        return float(base)
    if not isinstance(base, torch.Tensor):
        raise TypeError(f"`baselines` must be a number or a tensor, got {type(base).__name__}")
    base = base.detach().to(device=x.device, dtype=x.dtype).clone()
    if base.dim() == x.dim() - 1:
        base = base.unsqueeze(0)
    fits = tuple(base.shape[1:]) == shape[1:]
    if method.name == "gradient_shap":
        if not fits:
            raise InterpError(
                f"`baselines` of shape {tuple(base.shape)} does not fit inputs {shape}; "
                f"gradient_shap takes a distribution of baselines shaped (B, {shape[1:]})"
            )
        return base
    if not fits or base.shape[0] not in (1, shape[0]):
        raise InterpError(
            f"`baselines` of shape {tuple(base.shape)} does not fit inputs {shape}; give a "
            f"number, one baseline (1, {', '.join(map(str, shape[1:]))}) or one per sample"
        )
    return base


def _layer(o: dict[str, Any], model: nn.Module, geo: Structure) -> None:
    name = o.get("layer") or geo.head.reads
    if name is None:
        names = ", ".join(lay.name for lay in geo.layers if lay.stride is not None)
        raise InterpError(
            "`layer` is needed: interp found no feature map read by a Linear head; "
            f"pass layer=NAME, one of: {names}"
        )
    o["layer"] = name
    o["layer_module"] = check_layers(model, [name])[name]
    lay = geo.layer(name)
    if lay.stride is None or lay.receptive_field is None or lay.offset is None:
        raise InterpError(
            f"`layer` {name!r} has no positions left (output {lay.output_shape}); "
            "pick a layer before the head's pooling or flattening"
        )
    o["geometry"] = (lay.receptive_field, lay.stride, lay.offset)


def _axis_tuple(value: Any, dims: int, name: str) -> tuple[int, ...]:
    out = (value,) * dims if isinstance(value, int) else tuple(value)
    if len(out) != dims or not all(isinstance(v, int) and v >= 1 for v in out):
        raise ValueError(f"`{name}` must be a positive int or one per spatial axis, got {value!r}")
    return out


def _occlusion(o: dict[str, Any], x: torch.Tensor, geo: Structure) -> None:
    """Window one receptive field of the head's feature map wide, stride half of that."""
    spatial = tuple(int(v) for v in x.shape[2:])
    if o["window"] is None:
        fmap = geo.feature_map
        rf = fmap.receptive_field if fmap is not None else None
        o["window"] = tuple(min(r, n) for r, n in zip(rf, spatial, strict=True)) if rf else \
            tuple(max(1, n // 16) for n in spatial)  # fmt: skip
    window = _axis_tuple(o["window"], len(spatial), "window")
    strides = o["strides"] if o["strides"] is not None else tuple(max(1, w // 2) for w in window)
    strides = _axis_tuple(strides, len(spatial), "strides")
    o["window"] = (int(x.shape[1]), *window)
    o["strides"] = (1, *strides)


def _neuron(o: dict[str, Any], model: nn.Module, x: torch.Tensor, target: torch.Tensor,
            geo: Structure) -> tuple[int, ...]:  # fmt: skip
    """The chosen (kernel, *position) neuron; default: the largest contribution to the target.

    For a positional head reading ``layer`` directly that is the argmax of
    ``W[target, c, p] * A[c, p]`` on the first sample, else the most active neuron.
    """
    shape = geo.layer(o["layer"]).output_shape  # (C, *P)
    if o["neuron"] is not None:
        neuron = tuple(o["neuron"]) if not isinstance(o["neuron"], int) else (o["neuron"],)
        if len(neuron) != len(shape) or not all(
            isinstance(v, int) and 0 <= v < n for v, n in zip(neuron, shape, strict=True)
        ):
            raise InterpError(
                f"`neuron` {o['neuron']!r} is not a (kernel, position) index of layer "
                f"{o['layer']!r} with shape {shape}"
            )
        return neuron
    with torch.no_grad(), record(model, [o["layer"]]) as rec:
        model(x[:1])
    act = rec[o["layer"]][0]  # (C, *P)
    score = act
    weights = head_weights(model, geo)
    if weights is not None and o["layer"] == geo.head.reads and geo.head.kind == "positional":
        score = act * weights[int(target[0])].to(act)
    flat = int(torch.argmax(score))
    out = []
    for size in reversed(score.shape):  # row-major unravel
        flat, rest = divmod(flat, int(size))
        out.append(rest)
    return tuple(reversed(out))


def head_weights(model: nn.Module, geo: Structure) -> torch.Tensor | None:
    """Head Linear weights on the (kernel, *position) grid of the map it reads: (K, C, *P).

    Positional heads: each neuron's own weight. Pooled heads: the one weight per
    kernel, repeated over positions (divided by the positions for mean pooling).
    None when the head is not read exactly.
    """
    head = geo.head
    if not head.exact or head.linear is None or head.channels is None or not head.positions:
        return None
    linear = dict(model.named_modules())[head.linear]
    if not isinstance(linear, nn.Linear):
        return None
    w = linear.weight.detach()
    if head.kind == "positional":
        return w.reshape(w.shape[0], head.channels, *head.positions).clone()
    grid = w.reshape(w.shape[0], head.channels, *([1] * len(head.positions)))
    grid = grid.expand(-1, -1, *head.positions).clone()
    return grid / math.prod(head.positions) if head.pooling == "mean" else grid


def _noise_tunnel(o: dict[str, Any], x: torch.Tensor) -> None:
    kind = "smoothgrad" if o["noise_tunnel"] is True else o["noise_tunnel"]
    if kind not in NT_TYPES:
        raise InterpError(
            f"`noise_tunnel` {o['noise_tunnel']!r} is unknown; use True or one of: "
            f"{', '.join(NT_TYPES)}"
        )
    o["noise_tunnel"] = kind
    _positive_int(o["nt_samples"], "nt_samples")
    if o["nt_stdevs"] is None:
        span = float(x.max() - x.min())
        o["nt_stdevs"] = 0.15 * (span if span > 0 else 1.0)


def _row_bytes(geo: Structure, x: torch.Tensor) -> int:
    """Bytes one input row costs in a forward + backward: every layer output, about 3x."""
    floats = math.prod(x.shape[1:]) + sum(math.prod(lay.output_shape) for lay in geo.layers)
    return 3 * x.element_size() * max(1, floats)


def _batching(method: Method, o: dict[str, Any], x: torch.Tensor, geo: Structure,
              spatial: tuple[int, ...]) -> None:  # fmt: skip
    """Inputs per Captum call (``chunk``) and Captum's ``internal_batch_size``."""
    rows = max(1, ROW_BUDGET_BYTES // _row_bytes(geo, x))
    per_input = o["nt_samples"] if o.get("noise_tunnel") else 1
    if method.name == "deeplift":
        per_input *= 2
    elif method.name == "gradient_shap":
        per_input *= o["n_samples"]
    elif method.name == "occlusion":
        per_input *= o["perturbations_per_eval"]
    floor = 2 if method.name == "layer_conductance" else 1  # Captum needs 2 steps per pass
    o["chunk"] = max(1, rows // (per_input * floor))
    if method.path:
        given = o.get("internal_batch_size")
        if given is not None:
            _positive_int(given, "internal_batch_size")
            o["chunk"] = max(1, given // (per_input * floor))
        inputs = min(o["chunk"], x.shape[0]) * per_input
        o["internal_batch_size"] = max(given or rows, floor * inputs)


def settings(method: Method, o: dict[str, Any]) -> dict[str, Any]:
    """JSON-safe summary of the resolved options (for reports)."""
    out: dict[str, Any] = {}
    for key in method.options:
        value = o.get(key)
        if key in ("internal_batch_size", "nt_samples_batch_size") or (
            key.startswith("nt_") and not o.get("noise_tunnel")
        ):
            continue
        if isinstance(value, torch.Tensor):
            value = f"tensor {tuple(value.shape)}"
        elif isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, float):
            value = json_float(value)
        out[key] = value
    if method.path:
        out["integration"] = o["integration"]
    return out
