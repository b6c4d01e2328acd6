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

With ``--case NAME[,NAME...]`` (``--case`` alone or ``--case all``: seed, resnet2d, eeg,
fcn) the sweep is measured on the cases of ``benchmarks/sweep.py`` instead: per (case,
size) a fresh process builds the model with ``case_setup``, then streams batches drawn like
its ``x`` (same sample shape; seeded normal noise with x's mean and spread; seeded random
labels) through ``shift_sweep_stream`` over the case's shifts, mode and the engine interp
picks, for 32 and 320 samples by default. ``ru_maxrss`` is read after setup (model built,
one warm-up batch swept: 256 samples, the batch interp re-cuts every stream into, so the
set-up already holds the working set of the largest batch a run forms) and at the end; the
target is on the working memory, peak RSS minus the start (the issue's "peak working
memory"), and the growth after setup (what accumulates with the number of samples, floored
at 1 MiB at N so that a run that does not grow is not divided by zero) is printed beside
it: a few MiB over that floor read as a large ratio of nothing; ``--json`` adds one JSON
object per case on stdout.
``--mmap-threshold 131072`` fixes glibc's mmap threshold in the children, so that freed
large blocks go back to the system and RSS follows live tensors rather than the heap's
retention: a growth that stays with it is a buffer kept alive, one that goes is the
allocator's.

    python benchmarks/memory.py              # seed_cnn-sized model, random weights
    python benchmarks/memory.py --small      # a small stand-in (seconds on a laptop)
    python benchmarks/memory.py --device cuda --sizes 2000 20000
    python benchmarks/memory.py --case seed,eeg,fcn,resnet2d --json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMALL_LENGTH = 1024
CASES = ("seed", "resnet2d", "eeg", "fcn")  # benchmarks/sweep.py's, in its order
CASE_SIZES = (32, 320)
CASE_BATCH = 16  # samples per streamed batch in --case runs: N = 2 batches, 10N = 20
FLOOR_KIB = 1024  # growth at N below 1 MiB counts as 1 MiB in the ratio


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


def case_batches(n: int, shape: tuple[int, ...], mean: float, std: float, classes: int,
                 size: int, device: str):  # fmt: skip
    """Seeded (x, y) batches shaped like a case's ``x``, generated one at a time."""
    import torch

    for start in range(0, n, size):
        gen = torch.Generator().manual_seed(start)
        b = min(size, n - start)
        x = torch.randn((b, *shape), generator=gen).mul_(std).add_(mean)
        yield x.to(device), torch.randint(0, classes, (b,), generator=gen).to(device)


def case_child(args: argparse.Namespace) -> None:
    """Sweep ``args.child`` streamed samples of benchmark case ``args.case``; one JSON line."""
    import torch

    from benchmarks.sweep import case_setup
    from interp._batches import BATCH
    from interp.shifts import parse_shifts
    from interp.sweep.core import shift_sweep_stream

    torch.set_num_threads(args.threads)
    model, x, spec, mode, what = case_setup(args.case, args.seed)
    model = model.to(args.device).eval()
    shape, mean, std = tuple(x.shape[1:]), float(x.mean()), float(x.std())
    with torch.inference_mode():
        classes = int(model(x[:1].to(args.device)).shape[-1])
    del x
    shifts = parse_shifts(spec, len(shape) - 1)
    total_shifts = len(shifts)
    if args.max_shifts and len(shifts) > args.max_shifts:  # evenly spaced, ends included
        k = args.max_shifts
        shifts = [shifts[round(i * (len(shifts) - 1) / max(k - 1, 1))] for i in range(k)]
    start_kib = rss_kib()  # torch, interp, the model and case_setup's x
    n, size = args.child, args.batch or CASE_BATCH

    def stream(count: int):
        return case_batches(count, shape, mean, std, classes, size, args.device)

    options = {"mode": mode, "engine": args.engine, "batch_size": args.rows}
    # Warm-up: one full batch as interp re-cuts the stream (BATCH rows), so that "setup"
    # holds the working set of the largest batch any run forms; growth after it is what
    # accumulates with the number of samples.
    shift_sweep_stream(model, stream(BATCH), shifts, **options)
    if args.device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    setup_kib = rss_kib()
    t0 = time.perf_counter()
    result = shift_sweep_stream(model, stream(n), shifts, **options)
    seconds = time.perf_counter() - t0
    assert result.n == n, (result.n, n)
    print(
        json.dumps(
            {
                "case": args.case, "what": what, "n": n, "batch": size,
                "warmup": BATCH, "sample_shape": list(shape), "shifts": len(shifts),
                "case_shifts": total_shifts, "spec": spec, "mode": mode,
                "engine": result.engine, "reason": result.engine_reason,
                "start_kib": start_kib, "setup_kib": setup_kib, "peak_kib": rss_kib(),
                "cuda_peak_bytes": torch.cuda.max_memory_allocated()
                if args.device == "cuda" else None,
                "seconds": seconds, "threads": torch.get_num_threads(),
            }
        )
    )  # fmt: skip


def child(args: argparse.Namespace) -> None:
    """Run one analysis on ``args.child`` samples; print one JSON line."""
    import torch

    from interp.geometry.core import structure
    from interp.shifts import parse_shifts
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


def spawn_case(args: argparse.Namespace, case: str, n: int) -> dict:
    cmd = [sys.executable, __file__, "--child", str(n), "--case", case, "--seed", str(args.seed),
           "--device", args.device, "--threads", str(args.threads), "--engine", args.engine,
           "--max-shifts", str(args.max_shifts)]  # fmt: skip
    cmd += ["--batch", str(args.batch)] if args.batch else []
    cmd += ["--rows", str(args.rows)] if args.rows else []
    env = dict(os.environ)
    if args.mmap_threshold:  # glibc: a fixed threshold returns every large block on free
        env["MALLOC_MMAP_THRESHOLD_"] = str(args.mmap_threshold)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        sys.exit(f"memory.py: case {case}, {n} samples failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def run_cases(args: argparse.Namespace, cases: list[str]) -> None:
    """Peak growth of a streamed sweep for N and 10N samples, per benchmark case."""
    log = (lambda *a: print(*a, file=sys.stderr, flush=True)) if args.json else print
    sizes = args.sizes or list(CASE_SIZES)
    log(f"benchmarks/sweep.py cases; device {args.device}; batches of "
        f"{args.batch or CASE_BATCH} samples; {args.threads} torch thread(s); engine "
        f"{args.engine}; fresh process per (case, size)"
        + (f"; MALLOC_MMAP_THRESHOLD_={args.mmap_threshold}" if args.mmap_threshold
           else ""))  # fmt: skip
    log(f"{'case':<9} {'samples':>8} {'shifts':>9} {'engine':>7} {'start':>10} "
        f"{'setup':>10} {'peak RSS':>10} {'growth':>9} {'seconds':>8}")  # fmt: skip
    log(
        "  (start: torch + interp + model; setup: + one warm-up batch of 256 samples swept; "
        "growth = peak RSS - setup)"
    )
    for case in cases:
        rows = [spawn_case(args, case, n) for n in sizes]
        for r in rows:
            r["growth_kib"] = r["peak_kib"] - r["setup_kib"]
            shifts = f"{r['shifts']}/{r['case_shifts']}"
            log(f"{case:<9} {r['n']:>8,} {shifts:>9} {r['engine']:>7} "
                f"{r['start_kib'] / 1024:>6.0f} MiB {r['setup_kib'] / 1024:>6.0f} MiB "
                f"{r['peak_kib'] / 1024:>6.0f} MiB {r['growth_kib'] / 1024:>5.1f} MiB "
                f"{r['seconds']:>8.1f}")  # fmt: skip
        small, large = rows
        ratio = max(large["growth_kib"], 0) / max(small["growth_kib"], FLOOR_KIB)
        work = [r["peak_kib"] - r["start_kib"] for r in rows]  # the sweep's whole footprint
        # The target is the working memory's growth; the growth after setup (what
        # accumulates with N) is the diagnostic, and MiB-scale noise over a 1 MiB floor.
        working_ratio = work[1] / max(work[0], 1)
        met = working_ratio < 2
        note = (
            ""
            if small["shifts"] == small["case_shifts"]
            else (f"; {small['shifts']} of the case's {small['case_shifts']} shifts (--max-shifts)")
        )
        log(f"  {case}: working memory (peak RSS - start) {work[0] / 1024:.0f} -> "
            f"{work[1] / 1024:.0f} MiB, x{working_ratio:.2f} for x{large['n'] / small['n']:g} "
            f"samples (target < 2x): {'OK' if met else 'OVER TARGET'}; engine "
            f"{small['engine']}{note}")  # fmt: skip
        log(f"  {case}: growth after setup {small['growth_kib'] / 1024:.1f} -> "
            f"{large['growth_kib'] / 1024:.1f} MiB, x{ratio:.2f} over a 1 MiB floor")  # fmt: skip
        if args.json:
            print(json.dumps({
                "case": case, "samples_small": small["n"], "samples_large": large["n"],
                "peak_small_mb": small["growth_kib"] / 1024,
                "peak_large_mb": large["growth_kib"] / 1024,
                "ratio": ratio, "target_met": met,
                "peak_is": "growth of ru_maxrss from after setup to the end, MiB; ratio "
                "floors the small growth at 1 MiB",
                "working_small_mb": work[0] / 1024, "working_large_mb": work[1] / 1024,
                "working_ratio": working_ratio, "target_is": "working_ratio < 2",
                "malloc_mmap_threshold": args.mmap_threshold or None,
                "rss_small_mb": {k: small[f"{k}_kib"] / 1024 for k in ("start", "setup", "peak")},
                "rss_large_mb": {k: large[f"{k}_kib"] / 1024 for k in ("start", "setup", "peak")},
                "shifts": small["shifts"], "case_shifts": small["case_shifts"],
                "spec": small["spec"], "mode": small["mode"], "engine": small["engine"],
                "engine_reason": small["reason"], "batch": small["batch"],
                "warmup": small["warmup"],
                "sample_shape": small["sample_shape"], "device": args.device,
                "threads": small["threads"],
                "seconds": {"small": small["seconds"], "large": large["seconds"]},
                "cuda_peak_bytes": {"small": small["cuda_peak_bytes"],
                                    "large": large["cuda_peak_bytes"]},
            }), flush=True)  # fmt: skip


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
    parser.add_argument("--sizes", type=int, nargs=2, default=None,
                        help="N and 10N (default: 2000 20000; 32 320 with --case)")  # fmt: skip
    parser.add_argument("--shifts", help="shift spec (default: 5 shifts, 21 with --small)")
    parser.add_argument("--case", nargs="?", const="all", default=None,
                        help="NAME[,NAME...] of benchmarks/sweep.py's cases (alone or 'all': "
                        f"{', '.join(CASES)})")  # fmt: skip
    parser.add_argument("--seed", type=int, default=0, help="case_setup's seed (--case)")
    parser.add_argument("--max-shifts", type=int, default=0,
                        help="--case: at most this many of a case's shifts, evenly spaced "
                        "(0: all)")  # fmt: skip
    parser.add_argument("--mmap-threshold", type=int, default=0,
                        help="--case: run the children with glibc's MALLOC_MMAP_THRESHOLD_ "
                        "fixed at this many bytes, so that RSS tracks live memory")  # fmt: skip
    parser.add_argument(
        "--json",
        action="store_true",
        help="--case: one JSON object per case on stdout, the table on stderr",
    )
    parser.add_argument(
        "--batch",
        type=int,
        default=None,
        help=f"samples per streamed batch (default 256; {CASE_BATCH} with --case)",
    )
    parser.add_argument("--rows", type=int, default=None, help="sweep batch_size (model inputs)")
    parser.add_argument("--engine", default="auto", choices=["auto", "fast", "brute"])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run")
    parser.add_argument("--no-footprint", action="store_true", help="measure the sweep only")
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--what", default="sweep", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    if args.case is not None:
        names = list(CASES) if args.case == "all" else [c for c in args.case.split(",") if c]
        unknown = [c for c in names if c not in CASES]
        if args.shifts:
            parser.error("--shifts is for the seed_cnn/--small runs; --case uses each case's "
                         "own shifts (--max-shifts thins them)")  # fmt: skip
        if unknown or not names:
            parser.error(f"--case: unknown {', '.join(unknown) or '(none)'}; "
                         f"choose from {', '.join(CASES)} or all")  # fmt: skip
        if args.child is not None:
            case_child(args)
        else:
            run_cases(args, names)
        return
    args.sizes = args.sizes or [2000, 20000]
    args.batch = args.batch or 256
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
