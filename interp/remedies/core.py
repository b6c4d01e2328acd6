"""Apply each remedy to a copy of the model and measure it beside the original."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from interp.errors import InterpError
from interp.remedies.augment import accuracy, augment, random_shifts, shifted
from interp.remedies.blur import blur, check_blurrable
from interp.remedies.pool_head import check_positional, pool_head
from interp.remedies.result import FixResult, Remedy, Skipped, recommend, worst_in

STRATEGIES = ("pool-head", "augment", "blur")
TRAIN_SAMPLES = 2000  # drawn from a zoo recipe when no training data is given
TEST_SAMPLES = 256
VAL_SHARE = 0.15


def recipe_of(info: Any) -> Any:
    """The zoo recipe carried by ``info`` (``info.recipe``, formerly ``info.dataset``)."""
    for attr in ("recipe", "dataset"):
        value = getattr(info, attr, None)
        if value is not None and hasattr(value, "sample"):
            return value
    return None


def parse_strategies(value: str | Sequence[str]) -> tuple[str, ...]:
    """``"all"``, ``"pool-head,blur"`` or a sequence -> known strategy names, in order given."""
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    if items == ["all"]:
        return STRATEGIES
    bad = [s for s in items if s not in STRATEGIES]
    if bad or not items:
        raise InterpError(
            f"`strategies` {bad[0] if bad else value!r} is not a remedy; use one or more of "
            f"{', '.join(STRATEGIES)}, comma separated, or all"
        )
    return tuple(dict.fromkeys(items))


def _check_data(x: Any, y: Any, name: str, k: int, shape: tuple[int, ...] | None) -> None:
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise TypeError(
            f"`{name}` must be tensors x and y, got {type(x).__name__}, {type(y).__name__}"
        )
    if x.dim() not in (3, 4) or (shape is not None and tuple(x.shape[1:]) != tuple(shape)):
        want = f"(N, {', '.join(map(str, shape))})" if shape else "(N, C, L) or (N, C, H, W)"
        raise InterpError(
            f"`{name}` x has shape {tuple(x.shape)} but the model takes {want}; "
            "pass inputs of that shape"
        )
    if y.shape != (x.shape[0],) or y.dtype.is_floating_point:
        raise InterpError(
            f"`{name}` y must be integer labels of shape ({x.shape[0]},), got "
            f"{tuple(y.shape)} {y.dtype}; pass one class index per row of x"
        )
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= k):
        raise InterpError(
            f"the classes of `{name}` do not match the model: labels {int(y.min())}..{int(y.max())}"
            f" but the model has {k} outputs; labels must be class indices 0..{k - 1}"
        )


def _split(
    x: torch.Tensor, y: torch.Tensor, share: float, seed: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(x_rest, y_rest, x_part, y_part): a seeded random ``share`` held out, at least 1."""
    n = len(x)
    m = max(1, min(n - 1, round(share * n)))
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    part, rest = order[:m].sort().values, order[m:].sort().values
    return x[rest], y[rest], x[part], y[part]


def failing_box(sw: Any, tolerance: float) -> tuple[tuple[int, int], ...] | None:
    """Per axis (lo, hi) of the swept shifts where accuracy fell below acc(0) - tolerance."""
    at0 = sw.unshifted_accuracy
    ref = at0 if at0 is not None else max(sw.accuracy)
    bad = [
        s if isinstance(s, tuple) else (s,)
        for s, a in zip(sw.shifts, sw.accuracy, strict=True)
        if a < ref - tolerance
    ]
    if not bad:
        return None
    return tuple((min(v[i] for v in bad), max(v[i] for v in bad)) for i in range(len(bad[0])))


def fix(
    model: nn.Module,
    x_train: torch.Tensor | None = None,
    y_train: torch.Tensor | None = None,
    *,
    x_test: torch.Tensor | None = None,
    y_test: torch.Tensor | None = None,
    strategies: str | Sequence[str] = STRATEGIES,
    shifts: Sequence[Any] | None = None,
    mode: str = "roll",
    seed: int = 0,
    epochs: int = 0,
    progress: bool = False,
    info: Any = None,
    out: str | Path | None = None,
    train_classes: Sequence[str] | None = None,
) -> FixResult:
    """Apply each remedy to a copy of ``model`` and sweep it beside the original.

    Args:
        model: the trained classifier; never changed (every remedy works on a copy).
        x_train, y_train: training examples (N, C, *spatial) and labels; None uses the
            zoo recipe in ``info`` (training offsets, recipe seed).
        x_test, y_test: held-out examples for the sweeps; None: the zoo recipe's held-out
            draw, or a seeded 20% of the training data.
        strategies: any of "pool-head", "augment", "blur" (or "all").
        shifts: shifts swept; None: :func:`interp.shifts.default_shifts`.
        mode: ``roll``, ``zero`` or ``edge``, for the sweeps and for augmentation.
        seed: seeds the splits, the shifts drawn and the training (local generators).
        epochs: whole-model epochs of augment after its head-only phase.
        progress: progress bars on stderr.
        info: the ``ModelInfo`` from :func:`interp.load` (recipe, axis, classes, file name).
        out: folder where each fixed model is saved as ``<stem>-<remedy>.pt``.
        train_classes: class names stored with the training data, checked against the model.

    A remedy that does not apply to the model (pool-head on a head that already pools,
    blur without a strided pooling layer) is skipped: ``FixResult.skipped`` names it
    with its one-line reason, and the others run as they would alone.

    Raises:
        InterpError: no training data, classes that do not match the model, or none of
            ``strategies`` applies (one asked for: its own refusal, e.g. "nothing to
            blur: ..."; several: each one's reason, in one line).

    >>> res = fix(model, x_train, y_train, strategies="pool-head")   # doctest: +SKIP
    >>> res.remedy("pool-head").worst_accuracy                        # doctest: +SKIP
    0.965
    """
    # New layers are initialised from torch's global RNG before being fitted: fork it, so the
    # caller's random state is as it was.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return _fix(
            model,
            x_train,
            y_train,
            x_test,
            y_test,
            strategies,
            shifts,
            mode,
            seed,
            epochs,
            progress,
            info,
            out,
            train_classes,
        )


def _fix(
    model: nn.Module,
    x_train: torch.Tensor | None,
    y_train: torch.Tensor | None,
    x_test: torch.Tensor | None,
    y_test: torch.Tensor | None,
    strategies: str | Sequence[str],
    shifts: Sequence[Any] | None,
    mode: str,
    seed: int,
    epochs: int,
    progress: bool,
    info: Any,
    out: str | Path | None,
    train_classes: Sequence[str] | None,
) -> FixResult:
    from interp.geometry import structure
    from interp.shifts import check_mode, default_shifts, normalize_shifts
    from interp.sweep import shift_sweep

    if not isinstance(model, nn.Module):
        raise TypeError(f"`model` must be an nn.Module, got {type(model).__name__}")
    check_mode(mode)
    names = parse_strategies(strategies)
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 0:
        raise InterpError(f"`epochs` must be a whole number >= 0, got {epochs!r}")
    label = str(getattr(info, "path", None) or "the model")
    recipe = recipe_of(info)
    data = "given"
    if x_train is None or y_train is None:
        if recipe is None:
            raise InterpError(
                f"no training data for {label}: the remedies are fitted on training examples; "
                "pass x_train and y_train (interp fix MODEL --train-data FILE)"
            )
        x_train, y_train = recipe.sample(TRAIN_SAMPLES, seed=recipe.seed)
        data = "recipe"
        if x_test is None:
            x_test, y_test = recipe.sample(TEST_SAMPLES)
    shape = tuple(getattr(info, "input_shape", None) or ()) or None
    if not isinstance(x_train, torch.Tensor) or x_train.dim() not in (3, 4) or len(x_train) < 2:
        raise InterpError(
            f"`x_train` must hold at least 2 examples (N, C, L) or (N, C, H, W), got "
            f"{tuple(getattr(x_train, 'shape', ()))}"
        )
    geo = structure(model, x_train[:1], input_shape=shape)
    k = geo.num_classes or 0
    _check_data(x_train, y_train, "x_train", k, shape)
    assert y_train is not None
    model_classes = list(getattr(info, "classes", None) or []) or None
    if train_classes is not None and model_classes and list(train_classes) != model_classes:
        raise InterpError(
            f"the classes of the training data ({', '.join(train_classes)}) do not match the "
            f"model's ({', '.join(model_classes)}); relabel the data in the model's order"
        )
    missing = sorted(set(range(k)) - set(y_train.tolist()))
    if missing:
        names_missing = ", ".join(
            f"{c} ({model_classes[c]})" if model_classes else str(c) for c in missing[:5]
        )
        raise InterpError(
            f"the classes of the training data do not match the model: no example of class "
            f"{names_missing} among {len(y_train)}; give training examples of all {k} classes"
        )
    if x_test is None or y_test is None:
        x_train, y_train, x_test, y_test = _split(x_train, y_train, 0.2, seed)
        data += ", held out: a seeded 20% of it"
    _check_data(x_test, y_test, "x_test", k, tuple(x_train.shape[1:]))
    x_fit, y_fit, x_val, y_val = _split(x_train, y_train, VAL_SHARE, seed + 1)
    meta = dict(getattr(info, "meta", None) or {})
    axis = meta.get("axis") if isinstance(meta.get("axis"), list) else None
    classes = model_classes or [str(i) for i in range(k)]
    shift_list = normalize_shifts(
        shifts if shifts is not None else default_shifts(tuple(x_train.shape[1:])), geo.spatial_dims
    )
    train_range = getattr(recipe, "train_shift_range", None)

    def sweep(m: nn.Module) -> Any:
        return shift_sweep(
            m,
            x_test,
            y_test,
            shift_list,
            mode=mode,
            axis=axis,
            train_range=train_range,
            classes=classes,
            progress=progress,
        )

    # A zoo recipe draws fresh training examples for augment; a person's data is reused.
    draw, spread = None, 0
    if data == "recipe":
        spread = int(getattr(recipe, "train_shift_range", 0) or 0)

        def draw(n: int, s: int) -> tuple[torch.Tensor, torch.Tensor]:
            return recipe.sample(n, seed=recipe.seed + s)

    # Before any sweep: a remedy that cannot apply is skipped, and when none applies the
    # refusal comes at once.
    refused: dict[str, InterpError] = {}
    for name, check in (
        ("pool-head", lambda: check_positional(geo, label)),
        ("blur", lambda: check_blurrable(model, label)),
    ):
        if name in names:
            try:
                check()
            except InterpError as err:
                refused[name] = err
    _refuse_if_none(names, refused, label)
    original = sweep(model)
    box = failing_box(original, original.tolerance)
    whole = _whole_range(tuple(x_train.shape[2:]))
    remedies = []
    for name in names:
        if name in refused:
            continue
        try:
            ran = _run(
                name,
                model,
                geo,
                x_fit,
                y_fit,
                x_val,
                y_val,
                box or whole,
                mode=mode,
                seed=seed,
                epochs=epochs,
                progress=progress,
                label=label,
                k=k,
                sweep=sweep,
                box=box,
                draw=draw,
                spread=spread,
            )
        except InterpError as err:  # a remedy that finds out while fitting that it cannot
            refused[name] = err
            continue
        remedies.append(ran)
    _refuse_if_none(names, refused, label)
    skipped = tuple(Skipped(n, _reason(refused[n], label)) for n in names if n in refused)
    if out is not None:
        remedies = [_save(r, Path(out), info, meta, tuple(x_train.shape[1:])) for r in remedies]
    result = FixResult(
        original=original,
        original_worst=worst_in(original, box),
        failing_range=box,
        remedies=tuple(remedies),
        mode=mode,
        n_train=len(x_train),
        n_test=len(x_test),
        data=data,
        recommendation="",
        skipped=skipped,
    )
    text = recommend(result.remedies, result.original_at_0, result.range_text())
    return FixResult(**{**result.__dict__, "recommendation": text})


def _refuse_if_none(names: Sequence[str], refused: dict[str, InterpError], label: str) -> None:
    """Raise when every remedy asked for was refused: a single one's own refusal, or one
    line with each one's reason."""
    if any(n not in refused for n in names):
        return
    if len(names) == 1:
        raise refused[names[0]]
    others = [s for s in STRATEGIES if s not in names]
    advice = (
        f"use {' or '.join(others)} instead"
        if others
        else "retrain it with global pooling and shift augmentation"
    )
    raise InterpError(
        f"no remedy applies to {label}: "
        + "; ".join(f"{n}: {_reason(refused[n], label)}" for n in names)
        + f"; {advice}"
    )


def _reason(err: InterpError, label: str) -> str:
    """A refusal as a skip reason: about "the model" (no file path, so the sentence holds
    no digits of a path), without its advice to use another remedy."""
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    if label and label != "the model":
        text = text.replace(label, "the model")
    return re.sub(r"; use [^;]*$", "", text)


def _whole_range(spatial: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    return tuple((-(n // 2), n // 2) for n in spatial)


def _run(
    name: str,
    model: nn.Module,
    geo: Any,
    x: torch.Tensor,
    y: torch.Tensor,
    x_val: torch.Tensor,
    y_val: torch.Tensor,
    train_box: tuple[tuple[int, int], ...],
    *,
    mode: str,
    seed: int,
    epochs: int,
    progress: bool,
    label: str,
    k: int,
    sweep: Any,
    box: tuple[tuple[int, int], ...] | None,
    draw: Any = None,
    spread: int = 0,
) -> Remedy:
    extra: dict[str, Any] = {}
    notes: list[str] = []
    if name == "pool-head":
        cands = pool_head(model, geo, x, y, k, label=label)
        gen = torch.Generator().manual_seed(seed + 2)
        xv = shifted(x_val, random_shifts(len(x_val), train_box, gen), mode)
        scored = [
            (min(accuracy(c.model, x_val, y_val), accuracy(c.model, xv, y_val)), c) for c in cands
        ]
        _score, best = max(scored, key=lambda t: t[0])
        fixed, seconds = best.model, best.seconds
        detail = "global max pooling" if best.variant == "max" else "global average pooling"
        extra["validation"] = {c.variant: s for s, c in scored}
        notes.append(
            "pool-head: chose "
            + detail
            + " by held-out accuracy ("
            + ", ".join(f"{c.variant} {100 * s:.1f}%" for s, c in scored)
            + ")"
        )
        if best.note:
            notes.append(best.note)
    elif name == "augment":
        # A test pattern at shift s sits at s plus its own offset, and a recipe's patterns
        # already vary by +-train_shift_range: widen the shifts by that, or the edges of
        # the failing range are trained on half their pattern positions only.
        if box is not None and spread:
            train_box = tuple((lo - spread, hi + spread) for lo, hi in box)
        fixed, seconds, notes, fits = augment(
            model,
            geo,
            x,
            y,
            x_val,
            y_val,
            train_box,
            mode=mode,
            seed=seed,
            epochs=epochs,
            progress=progress,
            draw=draw,
        )
        lo_hi = ", ".join(f"{lo}..{hi}" for lo, hi in train_box)
        detail = "head only" + (f" + {epochs} whole-model epochs" if epochs else "")
        detail += f", shifts {lo_hi}"
        if box is not None and spread:
            detail += f" (the failing range widened by the data's own offsets, +-{spread})"
        detail += ", fresh recipe examples" if draw else ""
        extra["train_range"] = [list(b) for b in train_box]
        extra["training"] = fits
    else:
        fixed, seconds, notes, fits = blur(
            model, geo, x, y, x_val, y_val, label=label, seed=seed, progress=progress
        )
        extra["training"] = fits
        detail = "anti-aliased pooling, head refitted"
        extra["aliasing"] = _aliasing(model, fixed, x_val)
        a = extra["aliasing"]
        notes.append(
            f"blur: largest per-layer aliasing error {_pct(a['before'])} before, "
            f"{_pct(a['after'])} after"
        )
    sw = sweep(fixed)
    return Remedy(
        name=name,
        detail=detail,
        sweep=sw,
        accuracy_at_0=sw.unshifted_accuracy,
        worst_accuracy=worst_in(sw, box),
        consistency=sw.consistency,
        seconds=seconds,
        path=None,
        notes=tuple(notes),
        extra=extra,
        model=fixed,
    )


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _aliasing(model: nn.Module, fixed: nn.Module, x: torch.Tensor) -> dict[str, Any]:
    """Largest per-layer aliasing error of both models (interp.equivariance), on 8 samples."""
    from interp.sweep import equivariance

    spatial = x.dim() - 2
    base = [-5, -3, -1, 1, 3, 5]
    shifts: list[Any] = base if spatial == 1 else [(0, s) for s in base] + [(s, 0) for s in base]
    out: dict[str, Any] = {}
    for key, m in (("before", model), ("after", fixed)):
        eq = equivariance(m, x[:8], shifts)
        vals = [lay.aliasing_error for lay in eq.layers if lay.aliasing_error is not None]
        out[key] = max(vals) if vals else None
        out[f"{key}_per_layer"] = {
            lay.name: lay.aliasing_error for lay in eq.layers if lay.aliasing_error is not None
        }
    return out


def _save(
    r: Remedy, out: Path, info: Any, meta: dict[str, Any], input_shape: Sequence[int]
) -> Remedy:
    from dataclasses import replace

    from interp.loading import save

    stem = Path(str(getattr(info, "path", None) or meta.get("name") or "model")).stem
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{stem}-{r.name}.pt"
    new_meta = {
        **meta,
        "name": f"{stem}-{r.name}",
        "fix": {
            "remedy": r.name,
            "detail": r.detail,
            "from": {"path": getattr(info, "path", None), "sha256": getattr(info, "sha256", None)},
            "seconds": round(r.seconds, 3),
        },
    }
    if getattr(info, "classes", None) and "classes" not in new_meta:
        new_meta["classes"] = list(info.classes)
    if "input_shape" not in new_meta:
        new_meta["input_shape"] = list(input_shape)
    assert r.model is not None
    try:
        save(r.model, path, meta=new_meta)
    except InterpError as err:
        why = (
            f"{r.name}: not saved: {err} (the fixed model of a model that is not an "
            "nn.Sequential is an interp.remedies wrapper class; interp.save stores it once "
            "checkpoints accept importable classes)"
        )
        return replace(r, notes=(*r.notes, why))
    return replace(r, path=str(path))
