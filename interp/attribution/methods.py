"""Captum attribution methods by name: one thin call each, no re-implementation.

Every runner builds the Captum object for its method and calls ``attribute``
with the options resolved by :mod:`interp.attribution.options`. What interp adds
around Captum is only bookkeeping: chunking a large batch so memory stays
bounded, the Grad-CAM upsampling onto input positions (by receptive-field
centre, so a shifted input gives a shifted map), and the guards in
:func:`captum_safe` for what Captum users trip on.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from captum import attr as ca
from torch import nn

from interp._util import METHOD_NAMES
from interp.errors import InterpError

Output = Literal["input", "feature map"]


@dataclass(frozen=True)
class Method:
    """One attribution method: its Captum class and what it returns.

    ``output`` is ``"input"`` (a map shaped like the input, ``(N, 1, ...)`` for
    Grad-CAM) or ``"feature map"`` (``(N, C, *P)`` on the layer the head reads).
    ``path`` methods integrate along a path (``n_steps``, ``internal_batch_size``);
    ``complete`` ones report a convergence delta; ``noise_tunnel`` says whether
    the ``noise_tunnel`` option is accepted.
    """

    name: str
    captum: str
    output: Output
    summary: str
    options: tuple[str, ...]
    path: bool = False
    complete: bool = False
    noise_tunnel: bool = True
    layer: bool = False


_NT = ("noise_tunnel", "nt_samples", "nt_stdevs", "nt_samples_batch_size")
_PATH = ("baselines", "n_steps", "integration", "internal_batch_size")

METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method("integrated_gradients", "IntegratedGradients", "input",
               "integrated gradients (Sundararajan 2017)", (*_PATH, *_NT),
               path=True, complete=True),
        Method("saliency", "Saliency", "input", "gradient magnitude", ("abs", *_NT)),
        Method("input_x_gradient", "InputXGradient", "input", "input x gradient", _NT),
        Method("deeplift", "DeepLift", "input", "DeepLift (Shrikumar 2017)",
               ("baselines", "eps", *_NT), complete=True),
        Method("gradient_shap", "GradientShap", "input", "gradient SHAP (its own noise: stdevs)",
               ("baselines", "n_samples", "stdevs"), noise_tunnel=False),
        Method("occlusion", "Occlusion", "input", "occlusion",
               ("window", "strides", "baselines", "perturbations_per_eval", *_NT)),
        Method("guided_backprop", "GuidedBackprop", "input", "guided backpropagation", _NT),
        Method("layer_gradcam", "LayerGradCam", "input",
               "Grad-CAM on the feature map, upsampled to the input",
               ("layer", "relu_attributions"), noise_tunnel=False, layer=True),
        Method("layer_integrated_gradients", "LayerIntegratedGradients", "feature map",
               "integrated gradients per (kernel, position) neuron", ("layer", *_PATH),
               path=True, complete=True, noise_tunnel=False, layer=True),
        Method("layer_conductance", "LayerConductance", "feature map",
               "conductance per (kernel, position) neuron", ("layer", *_PATH),
               path=True, complete=True, noise_tunnel=False, layer=True),
        Method("neuron_conductance", "NeuronConductance", "input",
               "conductance of the input through one feature-map neuron",
               ("layer", "neuron", *_PATH), path=True, noise_tunnel=False, layer=True),
    )
}  # fmt: skip
if tuple(METHODS) != METHOD_NAMES:  # the command line offers METHOD_NAMES without captum
    raise ImportError("interp._util.METHOD_NAMES must list interp.attribution.METHODS in order")


def get_method(name: object) -> Method:
    """The :class:`Method` called ``name``; InterpError listing the names otherwise."""
    if not isinstance(name, str):
        raise TypeError(f"`method` must be a method name (str), got {type(name).__name__}")
    if name not in METHODS:
        raise InterpError(f"`method` {name!r} is unknown; use one of: {', '.join(METHODS)}")
    return METHODS[name]


# Captum's notes about hooks it sets and removes itself: true and not actionable.
_CAPTUM_CHATTER = (
    r"Input Tensor \d+ did not already require gradients",
    r"Setting forward, backward hooks and attributes on non-linear",
    r"Setting backward hooks on ReLU activations",
)


@contextmanager
def captum_safe(model: nn.Module) -> Iterator[None]:
    """Turn off ``inplace`` flags for the block (restored after), and quiet Captum.

    Captum's layer hooks replace a layer's output with a tensor that requires
    grad; an in-place ReLU after that layer then fails ("a leaf Variable that
    requires grad is being used in an in-place operation"), and DeepLift's and
    guided backprop's module hooks can read an input that was overwritten. An
    in-place activation computes the same values out of place, so the flags are
    flipped for the duration and put back in ``finally`` (the weights are never
    touched). Captum's gradient SHAP draws from numpy's global RNG: its state is
    restored too, as :func:`inspecting` restores torch's. Use inside ``inspecting``.
    """
    flipped = [m for m in model.modules() if getattr(m, "inplace", None) is True]
    np_rng = np.random.get_state()
    try:
        for module in flipped:
            module.inplace = False  # type: ignore[assignment]
        with warnings.catch_warnings():
            for pattern in _CAPTUM_CHATTER:
                warnings.filterwarnings("ignore", message=pattern, category=UserWarning)
            yield
    finally:
        np.random.set_state(np_rng)
        for module in flipped:
            module.inplace = True  # type: ignore[assignment]


def run(
    method: Method, model: nn.Module, x: torch.Tensor, target: torch.Tensor, opts: dict[str, Any]
) -> torch.Tensor:
    """Attribute ``x`` (B, C, *S) for ``target`` (B,), ``opts["chunk"]`` inputs per Captum call.

    Returns:
        the map: (B, C, *S), (B, 1, *S) for Grad-CAM, or (B, C', *P) for layer methods.
    """
    chunk = int(opts["chunk"])
    maps: list[torch.Tensor] = []
    for start in range(0, x.shape[0], chunk):
        rows = slice(start, start + chunk)
        part = dict(opts)
        base = opts.get("baselines")
        if isinstance(base, torch.Tensor) and method.name != "gradient_shap" and base.shape[0] > 1:
            part["baselines"] = base[rows]
        try:
            attr = _RUNNERS[method.name](model, x[rows], target[rows], part)
        except RuntimeError as err:
            raise _explain_failure(method, err) from err
        maps.append(attr.detach())
    return maps[0] if len(maps) == 1 else torch.cat(maps)


def _explain_failure(method: Method, err: RuntimeError) -> Exception:
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if "in-place" in text or "inplace" in text:
        return InterpError(
            f"`method` {method.name!r} fails because the model changes a tensor in place in its "
            f"forward ({text}); replace functional in-place ops (F.relu(x, inplace=True), x += y) "
            "with out-of-place ones, or use `method` 'saliency'"
        )
    return err


def _nt(algo: Any, x: torch.Tensor, kw: dict[str, Any], o: dict[str, Any]) -> torch.Tensor:
    """Call ``algo`` directly, or through Captum's NoiseTunnel when asked."""
    if o.get("noise_tunnel"):
        tunnel = ca.NoiseTunnel(algo)
        return tunnel.attribute(
            x, nt_type=o["noise_tunnel"], nt_samples=o["nt_samples"], stdevs=o["nt_stdevs"],
            nt_samples_batch_size=o["nt_samples_batch_size"], **kw,
        )  # fmt: skip
    return algo.attribute(x, **kw)


def _path_kw(o: dict[str, Any]) -> dict[str, Any]:
    return {
        "baselines": o["baselines"],
        "n_steps": o["n_steps"],
        "method": o["integration"],
        "internal_batch_size": o["internal_batch_size"],
    }


def _integrated_gradients(model, x, t, o):
    kw = {"target": t, **_path_kw(o)}
    return _nt(ca.IntegratedGradients(model), x, kw, o)


def _saliency(model, x, t, o):
    return _nt(ca.Saliency(model), x, {"target": t, "abs": o["abs"]}, o)


def _input_x_gradient(model, x, t, o):
    return _nt(ca.InputXGradient(model), x, {"target": t}, o)


def _deeplift(model, x, t, o):
    algo = ca.DeepLift(model, eps=o["eps"])
    return _nt(algo, x, {"target": t, "baselines": o["baselines"]}, o)


def _gradient_shap(model, x, t, o):
    kw = {"target": t, "baselines": o["baselines"], "n_samples": o["n_samples"],
          "stdevs": o["stdevs"]}  # fmt: skip
    return _nt(ca.GradientShap(model), x, kw, o)


def _occlusion(model, x, t, o):
    kw = {"target": t, "sliding_window_shapes": o["window"], "strides": o["strides"],
          "baselines": o["baselines"], "perturbations_per_eval": o["perturbations_per_eval"],
          }  # fmt: skip
    return _nt(ca.Occlusion(model), x, kw, o)


def _guided_backprop(model, x, t, o):
    return _nt(ca.GuidedBackprop(model), x, {"target": t}, o)


def _layer_gradcam(model, x, t, o):
    algo = ca.LayerGradCam(model, o["layer_module"])
    cam = algo.attribute(x, target=t, relu_attributions=o["relu_attributions"])  # (B, 1, *P)
    return upsample(cam, o["geometry"], tuple(x.shape[2:]))


def _layer_integrated_gradients(model, x, t, o):
    algo = ca.LayerIntegratedGradients(model, o["layer_module"])
    return algo.attribute(x, target=t, **_path_kw(o))


def _layer_conductance(model, x, t, o):
    algo = ca.LayerConductance(model, o["layer_module"])
    return algo.attribute(x, target=t, **_path_kw(o))


def _neuron_conductance(model, x, t, o):
    algo = ca.NeuronConductance(model, o["layer_module"])
    return algo.attribute(x, neuron_selector=o["neuron"], target=t, **_path_kw(o))


_RUNNERS: dict[str, Callable[..., torch.Tensor]] = {name: globals()[f"_{name}"] for name in METHODS}


Geometry = tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]


def centres(geometry: Geometry, sizes: tuple[int, ...]) -> list[torch.Tensor]:
    """Input position at the centre of each feature-map position's receptive field, per axis.

    ``geometry`` is (receptive_field, stride, offset) per axis; position ``j`` covers
    ``j*stride - offset ... + receptive_field - 1``.
    """
    rf, stride, offset = geometry
    return [
        torch.arange(n, dtype=torch.float64) * s - o + (r - 1) / 2
        for n, r, s, o in zip(sizes, rf, stride, offset, strict=True)
    ]


def upsample(cam: torch.Tensor, geometry: Any, size: tuple[int, ...]) -> torch.Tensor:
    """Feature-map values (B, 1, *P) -> input positions (B, 1, *size), linear between centres.

    Each feature-map value sits at its receptive field's centre and is linearly
    interpolated in between (held constant beyond the first and last centre), so an
    input shift by a multiple of the stride moves the upsampled map by exactly that
    shift; stretching the map to the input length (Captum's ``interpolate``) would not.
    """
    out = cam.to(torch.float64)
    grids = centres(geometry, tuple(cam.shape[2:]))
    for axis, (grid, n_in) in enumerate(zip(grids, size, strict=True)):
        dim = 2 + axis
        pos = torch.arange(n_in, dtype=torch.float64, device=cam.device)
        step = float(grid[1] - grid[0]) if len(grid) > 1 else 1.0
        u = ((pos - float(grid[0])) / step).clamp(0, len(grid) - 1)  # fractional index
        lo = u.floor().long()
        hi = (lo + 1).clamp(max=len(grid) - 1)
        w = (u - lo).reshape([-1 if d == dim else 1 for d in range(out.dim())])
        out = out.index_select(dim, lo) * (1 - w) + out.index_select(dim, hi) * w
    return out.to(cam.dtype)
