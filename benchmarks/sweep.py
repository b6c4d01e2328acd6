"""Shift sweep: the exact fast engine against one forward pass and against brute force.

On seed_cnn (``--model trained/seed_cnn.pt``, else the same architecture with seeded
random weights), with N samples and every shift of a spec, in one run:

1. one batched forward pass of the N unshifted samples (the unit of cost);
2. interp's sweep of all S shifts: ``interp.sweep.engine.core.fast_logits`` directly, and the
   public ``interp.sweep.core.sweep_logits`` path (which streams samples to it);
3. brute force: a batched PyTorch loop (``model(shift(x, s))`` for all N samples at
   once) over a random subset of shifts, its per-shift cost extrapolated to S;
4. the largest logit difference between interp and brute force on that subset.

Prints the timings side by side and their ratios. Target: the sweep of 4001 shifts
in at most 10x one forward pass (brute force needs about 4001x), exact.

    python benchmarks/sweep.py [--model trained/seed_cnn.pt] [--samples 200]
        [--shifts -2000:2000] [--mode roll] [--brute-shifts 40] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from interp.sweep.engine.core import fast_logits
from interp.shifts import parse_shifts, shift
from interp.geometry.core import structure


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _timed(fn: Callable[[], object], device: torch.device, repeat: int = 1) -> tuple[float, object]:
    """Median wall time of ``repeat`` runs (seconds) and the last result."""
    times, out = [], None
    for _ in range(repeat):
        _sync(device)
        start = time.perf_counter()
        out = fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def _model_and_data(args: argparse.Namespace) -> tuple[torch.nn.Module, torch.Tensor, str]:
    if args.model is not None and Path(args.model).exists():
        from interp.loading.core import load

        model, info = load(args.model)
        what = f"{args.model} (trained)"
        if info.recipe is not None:
            x, _ = info.recipe.sample(args.samples, seed=args.seed)
            return model, x, what + ", samples from its recipe"
        shape = tuple(info.input_shape or (1, 8192))
    else:
        from interp.zoo import build

        torch.manual_seed(args.seed)
        model = build("seed_cnn")
        what = f"seed_cnn architecture, random weights (seed {args.seed})"
        if args.model is not None:
            what += f"; {args.model} not found"
        shape = (1, 8192)
    gen = torch.Generator().manual_seed(args.seed)
    return model, torch.randn((args.samples, *shape), generator=gen), what + ", random inputs"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="trained/seed_cnn.pt")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--shifts", default="-2000:2000")
    parser.add_argument("--mode", default="roll", choices=["roll", "zero", "edge"])
    parser.add_argument("--brute-shifts", type=int, default=40)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-sweep-api", action="store_true",
                        help="time only fast_logits, not interp.sweep.core.sweep_logits")  # fmt: skip
    args = parser.parse_args()

    device = torch.device(args.device)
    model, x, what = _model_and_data(args)
    model = model.to(device).eval()
    x = x.to(device)
    shifts = parse_shifts(args.shifts, x.dim() - 2)
    geo = structure(model, x[:1])
    print(f"model: {what}; input {tuple(x.shape)}, {len(shifts)} shifts ({args.shifts}), "
          f"mode {args.mode}, device {device}, torch threads {torch.get_num_threads()}, "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")  # fmt: skip

    with torch.no_grad():
        model(x[:2])  # warm-up
        t_forward, _ = _timed(lambda: model(x), device, repeat=5)
        t_fast, fast = _timed(lambda: fast_logits(model, geo, x, shifts, args.mode), device)
        assert isinstance(fast, torch.Tensor)
        t_api = None
        if not args.skip_sweep_api:
            from interp.sweep.core import sweep_logits

            t_api, (_, engine, reason) = _timed(  # type: ignore[misc]
                lambda: sweep_logits(model, x, shifts, mode=args.mode, structure=geo), device
            )
        count = min(args.brute_shifts, len(shifts))
        subset = sorted(random.Random(args.seed).sample(range(len(shifts)), count))
        t_brute, brute = _timed(
            lambda: torch.stack([model(shift(x, shifts[i], args.mode)) for i in subset], 1),
            device,
        )
        assert isinstance(brute, torch.Tensor)
    per_shift = t_brute / len(subset)
    diff = (fast[:, subset].to(brute.device) - brute).abs()
    scale = float(brute.abs().max())
    agree = float((fast[:, subset].argmax(-1) == brute.argmax(-1)).float().mean())

    rows = [("one forward pass (N unshifted, median of 5)", t_forward),
            (f"interp fast_logits, all {len(shifts)} shifts", t_fast)]  # fmt: skip
    if t_api is not None:
        rows.append((f"interp sweep_logits ({engine}), all shifts", t_api))
    rows.append((f"brute force, {len(subset)} shifts (measured)", t_brute))
    rows.append((f"brute force, {len(shifts)} shifts (extrapolated)", per_shift * len(shifts)))
    print(f"\n{'':48s} {'seconds':>10s} {'x forward':>10s}")
    for name, sec in rows:
        print(f"{name:48s} {sec:10.3f} {sec / t_forward:10.1f}")
    print(f"\nspeed-up of fast_logits over brute force: {per_shift * len(shifts) / t_fast:.0f}x; "
          f"fast_logits = {t_fast / per_shift:.1f} brute-force forwards (one forward per shift, "
          f"measured {len(subset)} times in the same run)")  # fmt: skip
    print(f"max |logit difference| on the {len(subset)} shifts: {float(diff.max()):.3g} "
          f"(relative to max |logit| {scale:.3g}: {float(diff.max()) / max(scale, 1e-30):.2g}); "
          f"argmax agreement {agree:.4f}")  # fmt: skip
    if t_api is not None:
        print(f"sweep_logits engine: {engine} ({reason})")
    target = t_fast <= 10 * t_forward
    verdict = "met" if target else "NOT met"
    print(f"target (sweep <= 10x one forward, exact): {verdict} "
          f"(load average now {os.getloadavg()[0]:.1f}; shared machines vary)")  # fmt: skip


if __name__ == "__main__":
    main()
