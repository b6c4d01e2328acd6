"""Peak memory of a streamed shift sweep, and of a training footprint, for 2,000 and
20,000 samples: does memory stay bounded when the data grows 10x? (issue 8)

Each (analysis, size) runs in a fresh Python subprocess, so one run's high-water
mark cannot hide another's. Peak resident memory is ``resource.getrusage``'s
``ru_maxrss`` (Linux: KiB), read once after setup (model built, one warm-up
batch run) and once at the end; on CUDA, ``torch.cuda.max_memory_allocated`` too.

- sweep: ``interp.sweep.core.shift_sweep_stream`` over batches generated one at a time,
  so nothing in the process needs to grow with the number of samples;
- footprint: ``interp.readout.core.footprint`` takes its data as one tensor, so the
  figure compared is the peak above that tensor's own size.

Target: the compared peak grows by less than 2x for 10x the samples.

    python benchmarks/memory.py              # seed_cnn-sized model, random weights
    python benchmarks/memory.py --small      # a small stand-in (seconds on a laptop)
    python benchmarks/memory.py --device cuda --sizes 2000 20000
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL_LENGTH = 1024


def build(small: bool):
    """A seed_cnn-sized model with seeded random weights, or a small stand-in."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    if not small:
        from interp.zoo.models import build as zoo_build

        return zoo_build("seed_cnn").eval(), 8192
    # Conv1d(1, 16, 32, padding=1): 995 positions; MaxPool1d(16, 2): 490.
    model = nn.Sequential(
        nn.Conv1d(1, 16, 32, padding=1),
        nn.ReLU(),
        nn.MaxPool1d(16, 2),
        nn.Dropout(0.25),
        nn.Flatten(),
        nn.Linear(16 * 490, 4),
    )
    return model.eval(), SMALL_LENGTH


def batches(n: int, length: int, size: int, device: str):
    """Seeded random (x, y) batches, generated one at a time."""
    import torch

    for start in range(0, n, size):
        gen = torch.Generator().manual_seed(start)
        b = min(size, n - start)
        x = torch.rand(b, 1, length, generator=gen)
        yield x.to(device), torch.randint(0, 4, (b,), generator=gen).to(device)


def rss_kib() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def child(args: argparse.Namespace) -> None:
    """Run one analysis on ``args.child`` samples; print one JSON line."""
    import torch

    from interp.shifts import parse_shifts
    from interp.geometry.core import structure
    from interp.sweep.core import shift_sweep_stream

    torch.set_num_threads(args.threads)
    model, length = build(args.small)
    model = model.to(args.device)
    start_kib = rss_kib()  # torch, interp and the model: before any data or analysis
    n = args.child
    geo = structure(model, input_shape=(1, length))
    shifts = parse_shifts(args.shifts or ("-500:500:50" if args.small else "-3000:3000:1500"), 1)
    data_bytes = 0
    if args.what == "sweep":
        warm = next(batches(args.batch, length, args.batch, args.device))
        shift_sweep_stream(model, iter([warm]), shifts, structure=geo)

        def run():
            return shift_sweep_stream(
                model,
                batches(n, length, args.batch, args.device),
                shifts,
                structure=geo,
                batch_size=args.rows,
                engine=args.engine,
            )
    else:
        from interp.readout.core import footprint

        x = torch.empty(n, 1, length, device=args.device)  # filled in place: no 2x copy
        y = torch.empty(n, dtype=torch.long, device=args.device)
        for i, (xb, yb) in enumerate(batches(n, length, 1024, args.device)):
            x[i * 1024 : i * 1024 + len(xb)], y[i * 1024 : i * 1024 + len(yb)] = xb, yb
        data_bytes = x.numel() * x.element_size() + y.numel() * y.element_size()
        footprint(model, x[: args.batch], y[: args.batch], geo, batch_size=args.batch)

        def run():
            return footprint(model, x, y, geo, batch_size=args.batch)

    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    baseline = rss_kib()
    start = time.perf_counter()
    result = run()
    seconds = time.perf_counter() - start
    cuda_peak = torch.cuda.max_memory_allocated() if args.device == "cuda" else None
    extra = {"engine": result.engine} if args.what == "sweep" else {}
    print(
        json.dumps(
            {
                "what": args.what,
                "n": n,
                "start_kib": start_kib,
                "baseline_kib": baseline,
                "peak_kib": rss_kib(),
                "data_bytes": data_bytes,
                "cuda_peak_bytes": cuda_peak,
                "seconds": seconds,
                "shifts": len(shifts),
                **extra,
            }
        )
    )


def spawn(args: argparse.Namespace, what: str, n: int) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--child",
        str(n),
        "--what",
        what,
        "--batch",
        str(args.batch),
        "--device",
        args.device,
        "--threads",
        str(args.threads),
    ]
    cmd += ["--small"] if args.small else []
    cmd += ["--engine", args.engine]
    cmd += ["--shifts", args.shifts] if args.shifts else []
    cmd += ["--rows", str(args.rows)] if args.rows else []
    out = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def mib(kib_or_bytes: float, unit: str = "kib") -> str:
    value = kib_or_bytes / 1024 if unit == "kib" else kib_or_bytes / 2**20
    return f"{value:,.0f} MiB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", action="store_true", help="small stand-in model")
    parser.add_argument("--sizes", type=int, nargs=2, default=[2000, 20000])
    parser.add_argument("--shifts", help="shift spec (default: 5 shifts, 21 with --small)")
    parser.add_argument("--batch", type=int, default=256, help="samples per streamed batch")
    parser.add_argument("--rows", type=int, default=None, help="sweep batch_size (model inputs)")
    parser.add_argument("--engine", default="auto", choices=["auto", "fast", "brute"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--no-footprint", action="store_true", help="measure the sweep only")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--what", default="sweep", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.child is not None:
        child(args)
        return
    whats = ["sweep"]
    try:
        from interp.readout.core import footprint  # noqa: F401

        whats += [] if args.no_footprint else ["footprint"]
    except ImportError:
        print("(interp.readout.core.footprint not found: sweep only)")
    size = "small stand-in" if args.small else "seed_cnn-sized (random weights)"
    print(
        f"model: {size}; device {args.device}; batches of {args.batch} samples; "
        f"{args.threads} torch thread(s); fresh process per run"
    )
    print(
        f"{'analysis':<10} {'samples':>8} {'start':>9} {'data held':>10} {'peak RSS':>10} "
        f"{'working':>9} {'cuda peak':>10} {'seconds':>8}"
    )
    print("  (start: torch + interp + model; working = peak RSS - start - data held)")
    for what in whats:
        rows = [spawn(args, what, n) for n in args.sizes]
        for r in rows:
            r["working_kib"] = r["peak_kib"] - r["start_kib"] - r["data_bytes"] / 1024
            cuda = mib(r["cuda_peak_bytes"], "bytes") if r["cuda_peak_bytes"] is not None else "-"
            print(
                f"{what:<10} {r['n']:>8,} {mib(r['start_kib']):>9} "
                f"{mib(r['data_bytes'], 'bytes'):>10} {mib(r['peak_kib']):>10} "
                f"{mib(r['working_kib']):>9} {cuda:>10} {r['seconds']:>8.1f}"
            )
        small, large = rows
        grow = large["n"] / small["n"]
        for key, label in (("working_kib", "working memory"), ("peak_kib", "peak RSS")):
            ratio = large[key] / max(small[key], 1)
            verdict = "OK" if ratio < 2 else "OVER TARGET"
            print(f"  {what}: {label} x{ratio:.2f} for x{grow:g} samples (target < 2x): {verdict}")
        if what == "sweep":
            print(f"  sweep engine: {small.get('engine')}")
        if large.get("cuda_peak_bytes") and small.get("cuda_peak_bytes"):
            print(f"  {what}: cuda peak x{large['cuda_peak_bytes'] / small['cuda_peak_bytes']:.2f}")


if __name__ == "__main__":
    main()
