"""Single process vs Ray with 1 and 2 workers on this machine, and the merge cost.

What it measures, in one run (issue 17):

- the same brute-force sweep (a seed_cnn-like positional 1D CNN, random weights,
  ``engine="brute"`` so the work is model forwards) in this process and on a local
  Ray with 1 and 2 workers; for Ray both the first sweep (workers start and load the
  model) and a second, warm one (workers kept by the executor); ratios to the single
  process. Every Ray sweep is checked to equal the single-process sweep (counts).
- ``ray.init`` itself.
- the merge: :meth:`SweepStats.merge` of the shards' sums against
  :meth:`SweepStats.add` of the samples, as the sample count grows (the shard count
  is fixed per worker, so the merge stays constant while the sweep grows).

    python benchmarks/distributed.py [--samples 2048] [--shifts 16] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def build(length: int):
    import torch
    from torch import nn

    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(1, 32, 9, padding=4), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(32, 32, 9, padding=4), nn.ReLU(), nn.Flatten(),
        nn.Linear(32 * (length // 2), 5),
    ).eval()  # fmt: skip
    return model


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def merge_cost(shifts: int, classes: int, sizes: list[int], shards: int) -> list[dict]:
    import torch

    from interp.sweep.stats import SweepStats

    rows = []
    for n in sizes:
        logits = torch.randn(n, shifts, classes)
        y = torch.randint(0, classes, (n,))
        parts = [SweepStats.empty(shifts, classes) for _ in range(shards)]

        def accumulate(logits=logits, y=y, parts=parts, n=n) -> None:
            for i in range(0, n, 256):
                parts[(i // 256) % shards].add(logits[i : i + 256], y[i : i + 256])

        _, t_add = timed(accumulate)

        def merge(parts=parts) -> None:
            total = SweepStats.empty(shifts, classes)
            for p in parts:
                total.merge(p)

        _, t_merge = timed(merge)
        rows.append({"samples": n, "add_s": t_add, "merge_s": t_merge,
                     "merge_over_add": t_merge / t_add})  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2048)
    parser.add_argument("--shifts", type=int, default=16)
    parser.add_argument("--length", type=int, default=1024)
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args()
    log = (lambda *a: print(*a, file=sys.stderr)) if args.json else print

    import ray
    import torch

    from interp.sweep.core import shift_sweep
    from interp.sweep.distributed import RayExecutor

    model = build(args.length)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(args.samples, 1, args.length, generator=gen)
    y = torch.randint(0, 5, (args.samples,), generator=gen)
    step = max(1, args.length // args.shifts)
    shifts = list(range(-step * (args.shifts // 2), step * (args.shifts - args.shifts // 2), step))
    kw = {"engine": "brute"}
    threads = torch.get_num_threads()
    want, t_single = timed(lambda: shift_sweep(model, x, y, shifts, **kw))
    log(f"single process ({threads} torch threads): {t_single:.2f} s "
        f"({args.samples} samples x {len(shifts)} shifts)")  # fmt: skip
    _, t_init = timed(lambda: ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False))
    log(f"ray.init(num_cpus=2): {t_init:.2f} s")
    result = {"samples": args.samples, "shifts": len(shifts), "length": args.length,
              "single_s": t_single, "torch_threads": threads, "ray_init_s": t_init}  # fmt: skip
    try:
        for workers in (1, 2):
            with RayExecutor(num_workers=workers) as ex:
                run = lambda ex=ex: shift_sweep(model, x, y, shifts, executor=ex, **kw)  # noqa: E731
                cold, t_cold = timed(run)
                warm, t_warm = timed(run)
            for got in (cold, warm):
                assert got.confusion == want.confusion and got.accuracy == want.accuracy
            result[f"ray{workers}_first_s"] = t_cold
            result[f"ray{workers}_warm_s"] = t_warm
            result[f"ray{workers}_warm_over_single"] = t_warm / t_single
            log(f"ray, {workers} worker(s): first {t_cold:.2f} s (workers start), warm "
                f"{t_warm:.2f} s = {t_warm / t_single:.2f}x single; sweeps equal")  # fmt: skip
        result["ray2_speedup_over_ray1"] = result["ray1_warm_s"] / result["ray2_warm_s"]
        log(f"2 workers vs 1: {result['ray2_speedup_over_ray1']:.2f}x faster")
    finally:
        ray.shutdown()
    rows = merge_cost(len(shifts), 5, [1_000, 10_000, 100_000], shards=8)
    result["merge"] = rows
    for r in rows:
        log(f"merge of 8 shards, {r['samples']:>7} samples: merge {1e3 * r['merge_s']:.3f} ms, "
            f"sums {1e3 * r['add_s']:.1f} ms ({r['merge_over_add']:.2e} of it)")  # fmt: skip
    if args.json:
        print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main()
