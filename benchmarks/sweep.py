"""Shift sweep: interp's exact engine against one forward pass and the best brute force.

Cases (``--case``), each measured side by side in one run:

- ``seed``: trained/seed_cnn.pt (Conv1d(1,64,128) -> ReLU -> MaxPool1d(16,2) -> Flatten ->
  Linear on 8192), 200 samples of its recipe, 4001 shifts, roll;
- ``resnet2d``: the ResNet-18-style test net (tests/archs) on 3x64x64, 64 samples, the
  17x17 grid -8..8;
- ``eeg``: the ShallowFBCSPNet-style net on 22x1000, 128 samples, shifts -200..200;
- ``fcn``: the FCN of Wang et al. 2017 at its published widths 128/256/128 (the test net's
  class, tests/archs, whose own default is 8/16/8) on 1x256, BatchNorm running statistics
  randomised, 128 samples, shifts -128..128 (the json says which widths).

Brute force is the best a user would write: every shift of a batch stacked into one large
forward under ``torch.inference_mode()``, the rows per forward tuned (the fastest of a few
sizes under a memory cap), channels_last for 2D where it is faster, and ``torch.compile``
where it works (both reported; ``brute_s`` is the faster). It is measured, not extrapolated,
on ``--brute-shifts`` shifts (at least 32; all of them when that takes under a minute);
``brute_all_s`` extrapolates it per shift to every shift and is labelled so.

    python benchmarks/sweep.py --case seed [--json] [--device cpu|cuda] [--mode roll]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from interp.shifts import parse_shifts, shift_many  # noqa: E402
from interp.sweep.core import sweep_logits  # noqa: E402

CASES = ("seed", "resnet2d", "eeg", "fcn")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], Any], device: torch.device, repeat: int = 1) -> tuple[float, Any]:
    """Median wall time of ``repeat`` runs (seconds) and the last result."""
    times, out = [], None
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def case_setup(name: str, seed: int) -> tuple[torch.nn.Module, torch.Tensor, str, str, str]:
    """(model, x, shift spec, mode, description) of a benchmark case."""
    gen = torch.Generator().manual_seed(seed)
    if name == "seed":
        path = ROOT / "trained" / "seed_cnn.pt"
        if path.exists():
            from interp.loading.core import load

            model, info = load(path)
            recipe = getattr(info, "recipe", None) or getattr(info, "dataset", None)
            assert recipe is not None
            x, _ = recipe.sample(200, seed=seed)
            return model, x, "-2000:2000", "roll", "trained/seed_cnn.pt, recipe samples"
        from interp.zoo import build

        torch.manual_seed(seed)
        x = torch.randn((200, 1, 8192), generator=gen)
        return build("seed_cnn"), x, "-2000:2000", "roll", "seed_cnn, random weights"
    sys.path.insert(0, str(ROOT))
    from tests.archs import ARCHS

    if name == "fcn":
        return _fcn(seed, gen)
    arch, n, spec = {"resnet2d": ("resnet18_like", 64, "-8:8"),
                     "eeg": ("shallow_fbcsp_like", 128, "-200:200")}[name]  # fmt: skip
    c = ARCHS[arch]
    x = torch.randn((n, *c.input_shape), generator=gen)
    return c.factory(seed=seed), x, spec, "roll", f"tests/archs {arch}, random inputs"


FCN_WIDTHS = (128, 256, 128)  # Wang, Yan & Oates 2017, "Time series classification from
# scratch with deep neural networks: a strong baseline" (IJCNN), Fig. 1
FCN_SAMPLES = 128  # brute force on 32 shifts stays well under a minute on 2 CPU cores


def _fcn(seed: int, gen: torch.Generator) -> tuple[torch.nn.Module, torch.Tensor, str, str, str]:
    """The faithful FCN: widths 128/256/128 and BatchNorm statistics that are not standard."""
    from tests.archs._init import finish
    from tests.archs.timeseries import FCN, INPUT_SHAPE

    model = finish(FCN(1, 3, FCN_WIDTHS), INPUT_SHAPE, seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                sd = m.running_var.sqrt()
                m.running_mean.add_(0.1 * sd * torch.randn(m.num_features, generator=gen))
                m.running_var.mul_(0.5 + 1.5 * torch.rand(m.num_features, generator=gen))
    x = torch.randn((FCN_SAMPLES, *INPUT_SHAPE), generator=gen)
    what = (f"FCN (Wang et al. 2017) widths {'/'.join(map(str, FCN_WIDTHS))}, BatchNorm "
            "running stats calibrated then randomised, random inputs")  # fmt: skip
    return model, x, "-128:128", "roll", what


def border_cost(model: torch.nn.Module, x: torch.Tensor, shifts: list[Any]) -> dict[str, Any]:
    """Why an exact engine cannot beat brute force here: its cost in forwards per shift.

    From the traced structure: per conv call site, the fraction of its output positions
    whose input window (``j*stride - offset ... + receptive_field - 1``) reaches the
    padding; those must be recomputed for every shift. Per stage (the first part of the
    call-site name, ``stem`` for the layers before ``layer1``) the fraction of the stage's
    last map and its share of a forward's multiply-adds. ``borders``: the dirty share of
    all multiply-adds, i.e. forwards per shift of border work even layer by layer;
    ``trunk``: the valid trunk runs once per stride phase on an input extended by the
    shift span, ``phases * extended area / input area / shifts`` forwards per shift.
    Brute force costs 1 forward per shift; an exact engine at least ``borders + trunk``.
    """
    from interp.geometry.core import structure

    geo = structure(model, x[:1])
    modules = dict(model.named_modules())
    sizes = [int(v) for v in x.shape[2:]]
    stages: dict[str, dict[str, float]] = {}
    total = dirty = 0.0
    stage = "stem"
    for lay in geo.layers:
        if not lay.receptive_field or not lay.stride or lay.offset is None:
            continue  # positions have collapsed (the head)
        if lay.name.startswith("layer"):
            stage = lay.name.split(".")[0]  # functional call sites (add) stay in theirs
        clean = 1.0
        for n, rf, st, off, m in zip(sizes, lay.receptive_field, lay.stride, lay.offset,
                                     lay.output_shape[1:], strict=True):  # fmt: skip
            ok = sum(1 for j in range(m) if j * st - off >= 0 and j * st - off + rf <= n)
            clean *= ok / m
        info = stages.setdefault(stage, {"macs": 0.0})
        info["dirty_fraction"] = 1 - clean  # of the stage's last map, in the end
        module = modules.get(lay.name.split("#")[0])
        if isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)):
            macs = float(torch.tensor(lay.output_shape).prod()) * module.weight[0].numel()
            info["macs"] += macs
            total += macs
            dirty += (1 - clean) * macs
        if lay.name == geo.head.reads:
            break  # the head's own layers (global pool) are not trunk
    table = torch.tensor([s if isinstance(s, tuple) else (s,) for s in shifts])
    final = geo.layers[-1].stride if geo.head.reads is None else next(
        lay.stride for lay in geo.layers if lay.name == geo.head.reads)  # fmt: skip
    phases, area = 1, 1.0
    for a, n in enumerate(sizes):
        phases *= len(set(table[:, a].remainder(final[a]).tolist()))
        area *= (n + int(table[:, a].max() - table[:, a].min())) / n
    trunk = phases * area / len(shifts)
    # Even sharing every layer between the phases that agree on it (a layer of cumulative
    # stride s needs one pass per distinct shift residue mod s, not one per final phase)
    # and with no border work at all, the trunk alone costs this many forwards per shift:
    shared = 0.0
    for lay in geo.layers:
        module = modules.get(lay.name.split("#")[0])
        if not isinstance(module, (torch.nn.Conv1d, torch.nn.Conv2d)) or not lay.stride:
            continue
        macs = float(torch.tensor(lay.output_shape).prod()) * module.weight[0].numel()
        need = 1
        for a, st in enumerate(lay.stride):
            need *= len(set(table[:, a].remainder(st).tolist()))
        shared += macs / total * need * area / len(shifts)
    return {
        "stages": {k: {"dirty_fraction": round(v["dirty_fraction"], 4),
                       "macs_share": round(v["macs"] / total, 4)} for k, v in stages.items()},
        "borders_forwards_per_shift": dirty / total, "phases": phases,
        "trunk_forwards_per_shift": trunk,
        "engine_forwards_per_shift_at_least": dirty / total + trunk,
        "trunk_shared_by_phase_forwards_per_shift": shared,
        "brute_forwards_per_shift": 1.0,
    }  # fmt: skip


def _brute(model: torch.nn.Module, x: torch.Tensor, shifts: list[Any], mode: str,
           rows: int, channels_last: bool) -> torch.Tensor:  # fmt: skip
    """What a user writes: stack many shifted copies, one big forward per chunk."""
    per = max(1, rows // x.shape[0])
    out = []
    with torch.inference_mode():
        for start in range(0, len(shifts), per):
            part = shifts[start : start + per]
            xs = shift_many(x, part, mode).flatten(0, 1)  # (N * Sc, C, *spatial)
            if channels_last:
                xs = xs.contiguous(memory_format=torch.channels_last)
            out.append(model(xs).unflatten(0, (x.shape[0], len(part))))
    return torch.cat(out, 1)


def _tune(model: torch.nn.Module, x: torch.Tensor, shifts: list[Any], mode: str,
          device: torch.device, budget: int) -> tuple[int, bool, dict[str, float]]:  # fmt: skip
    """Fastest rows per forward (under ``budget`` bytes of activations) and memory format."""
    with torch.inference_mode():
        acts: list[int] = []
        hooks = [m.register_forward_hook(lambda m, i, o: acts.append(o.numel() * o.element_size())
                                         if isinstance(o, torch.Tensor) else None)
                 for m in model.modules()]  # fmt: skip
        try:
            model(x[:1])
        finally:
            for h in hooks:
                h.remove()
    per_row = 2 * max(acts)  # one layer's input and output alive at once
    cap = max(x.shape[0], budget // per_row)
    tried: dict[str, float] = {}
    formats = [False, True] if x.dim() == 4 else [False]
    best = (float("inf"), x.shape[0], False)
    rows = x.shape[0]
    probe = shifts[: max(1, min(len(shifts), 8))]
    while rows <= cap:
        for cl in formats:
            per_shift = max(1, rows // x.shape[0])
            sample = probe * (-(-per_shift // len(probe)))
            run = lambda r=rows, c=cl, s=sample[:per_shift]: _brute(model, x, s, mode, r, c)  # noqa: E731
            t, _ = _timed(run, device)
            t /= per_shift
            tried[f"rows={rows}{',channels_last' if cl else ''}"] = t
            if t < best[0]:
                best = (t, rows, cl)
        rows *= 4
    return best[1], best[2], tried


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", default="seed", choices=CASES)
    parser.add_argument("--mode", default=None, choices=["roll", "zero", "edge"],
                        help="shift mode (default: the case's, roll)")  # fmt: skip
    parser.add_argument("--brute-shifts", type=int, default=40)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--memory-mb", type=int, default=1024,
                        help="activation memory per brute-force forward")  # fmt: skip
    parser.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch.cuda.is_available() is False on this machine")
    model, x, spec, mode, what = case_setup(args.case, args.seed)
    mode = args.mode or mode
    model, x = model.to(device).eval(), x.to(device)
    shifts = parse_shifts(spec, x.dim() - 2)
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    with torch.inference_mode():
        model(x[:2])
        t_forward, _ = _timed(lambda: model(x), device, repeat=5)
    from interp.geometry.core import structure

    # structure() runs inside sweep_logits too (counted in engine_s); timed alone here so
    # the fixed cost per call is visible next to the per-sample work.
    t_structure, _ = _timed(lambda: structure(model, x[:1]), device)
    # Warm (one small call: allocator, FFT plans), then the median of 3, as the forward
    # pass (median of 5) and brute force (warmed by its tuning) are measured.
    sweep_logits(model, x[:2], shifts, mode=mode)
    t_engine, (fast, engine, reason) = _timed(
        lambda: sweep_logits(model, x, shifts, mode=mode), device, repeat=3)  # fmt: skip
    log(f"{args.case}: {what}; x {tuple(x.shape)}, {len(shifts)} shifts, {mode}; engine "
        f"{engine}: {reason}")  # fmt: skip

    rows, cl, tried = _tune(model, x, shifts, mode, device, args.memory_mb * 2**20)
    count = min(len(shifts), max(32, args.brute_shifts))
    per_shift_guess = min(tried.values())
    if per_shift_guess * len(shifts) < 60:
        count = len(shifts)
    subset = sorted(random.Random(args.seed).sample(range(len(shifts)), count))
    picked = [shifts[i] for i in subset]
    t_eager, brute = _timed(lambda: _brute(model, x, picked, mode, rows, cl), device)
    variants = {"eager": t_eager}
    compile_note = "skipped (--no-compile)"
    if not args.no_compile:
        try:
            start = time.perf_counter()
            compiled = torch.compile(model)
            _brute(compiled, x, picked[:1], mode, rows, cl)  # compile (and warm up)
            compile_s = time.perf_counter() - start
            t_comp, brute_c = _timed(lambda: _brute(compiled, x, picked, mode, rows, cl), device)
            variants["compiled"] = t_comp
            compile_note = f"ok, compiled in {compile_s:.1f} s (not counted)"
            if t_comp < t_eager:
                brute = brute_c
        except Exception as exc:  # any backend failure: report it, keep the eager figure
            compile_note = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    t_brute = min(variants.values())
    brute_all = t_brute / count * len(shifts)
    ref = brute.to(torch.float32).cpu()
    mine = fast[:, subset].to(torch.float32)
    diff = float((mine - ref).abs().max())
    scale = float(ref.abs().max())
    agree = float((mine.argmax(-1) == ref.argmax(-1)).float().mean())
    result = {
        "case": args.case, "mode": mode, "device": str(device), "samples": int(x.shape[0]),
        "shifts": len(shifts), "forward_s": t_forward, "engine_s": t_engine,
        "brute_s": t_brute, "brute_shifts": count, "structure_s": t_structure,
        "brute_all_s": brute_all, "brute_all_s_is": "extrapolated" if count < len(shifts)
        else "measured",
        "brute_variants_s": variants, "brute_rows": rows, "brute_channels_last": cl,
        "brute_tuning_s_per_shift": tried, "compile": compile_note,
        "engine_over_forward": t_engine / t_forward, "brute_over_engine": brute_all / t_engine,
        "max_abs_logit_diff": diff, "max_abs_logit": scale, "argmax_agreement": agree,
        "engine": engine, "engine_reason": reason, "load_average": os.getloadavg()[0],
        "threads": torch.get_num_threads(),
    }  # fmt: skip
    if args.case == "fcn":
        result["fcn_widths"] = list(FCN_WIDTHS)
    if args.case == "resnet2d":
        result["why_brute"] = border_cost(model, x, shifts)
    if args.json:
        print(json.dumps(result, sort_keys=True))
        return
    print(f"\n{'':44s} {'seconds':>10s} {'x forward':>10s}")
    for name, sec in [("one forward pass (N unshifted, median of 5)", t_forward),
                      (f"interp sweep_logits ({engine}), all {len(shifts)}", t_engine),
                      *((f"brute force {k}, {count} shifts (measured)", v)
                        for k, v in variants.items()),
                      (f"brute force, all {len(shifts)} ({result['brute_all_s_is']})",
                       brute_all)]:  # fmt: skip
        print(f"{name:44s} {sec:10.3f} {sec / t_forward:10.1f}")
    print(f"\nbrute force: {rows} rows per forward, channels_last {cl}; "
          f"torch.compile {compile_note}")
    print(f"engine {result['brute_over_engine']:.1f}x faster than brute force; max |diff| "
          f"{diff:.3g} (max |logit| {scale:.3g}); argmax agreement {agree:.4f}; load average "
          f"{result['load_average']:.1f}")  # fmt: skip
    if "why_brute" in result:
        why = result["why_brute"]
        print("\nwhy exactness cannot beat brute force here (window reaches the padding):")
        for name, st in why["stages"].items():
            print(f"  {name:8s} {100 * st['dirty_fraction']:5.1f}% of positions dirty, "
                  f"{100 * st['macs_share']:5.1f}% of a forward's multiply-adds")  # fmt: skip
        print(f"  borders {why['borders_forwards_per_shift']:.2f} forwards per shift + trunk on "
              f"{why['phases']} stride phases {why['trunk_forwards_per_shift']:.2f} = at least "
              f"{why['engine_forwards_per_shift_at_least']:.2f} forwards per shift for an exact "
              "engine, against 1 for brute force")  # fmt: skip
        print(f"  sharing each layer between the phases that agree on it, with no border "
              f"work at all: {why['trunk_shared_by_phase_forwards_per_shift']:.2f} forwards "
              "per shift")  # fmt: skip


if __name__ == "__main__":
    main()
