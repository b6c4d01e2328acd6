"""`interp fix`: apply each remedy to a copy of the model and show the before/after."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import click

from interp.cli._options import (
    AxisSpec,
    DataSpec,
    ModelSpec,
    check_out,
    data_and_train_options,
    default_out,
    force_option,
    model_argument,
    out_option,
    run_options,
    seed_option,
    shift_mode_option,
    shifts_option,
)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def table_lines(table: list[dict[str, Any]], skipped: Sequence[Any] = ()) -> list[str]:
    """The fix table as fixed-width text; each skipped remedy a "skipped" row."""
    head = ("remedy", "accuracy at 0", "worst (failing range)", "consistency", "seconds")
    rows = [
        (
            r["remedy"],
            _pct(r["accuracy_at_0"]),
            _pct(r["worst_accuracy"]),
            _pct(r["consistency"]),
            f"{r['seconds']:.1f}",
        )
        for r in table
    ] + [(s.name, "skipped", "-", "-", "-") for s in skipped]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(head), *(line(row) for row in rows)]


def check_fix_out(out: Path, stem: str, names: tuple[str, ...], force: bool) -> None:
    """Refuse, before any work, an --out where fix.json, fix.png or a fixed model cannot be
    written, or exists without --force."""
    if out.exists() and not out.is_dir():
        check_out(out, force=force)  # the one message for "not a directory"
    for name in ("fix.json", "fix.png", *(f"{stem}-{n}.pt" for n in names)):
        check_out(out / name, force=force, folder=False)


@click.command()
@model_argument
@data_and_train_options
@click.option(
    "--strategy",
    default="all",
    show_default=True,
    metavar="LIST",
    help="Remedies, comma separated: pool-head, augment, blur, or all.",
)
@out_option(
    "Folder for the fixed models (<stem>-<remedy>.pt), fix.json and fix.png (default: "
    "interp-fix-<model file stem>/ in the current folder)."
)
@force_option
@click.option(
    "--epochs",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="augment: epochs of whole-model fine-tuning after the head-only phase.",
)
@shifts_option()
@shift_mode_option("How vacated positions are filled, in the sweeps and in augmentation.")
@seed_option
@run_options
def fix(
    model_path: Path,
    train: DataSpec | None,
    data: DataSpec,
    strategy: str,
    out: Path | None,
    force: bool,
    epochs: int,
    shifts: str | None,
    shift_mode: str,
    seed: int,
    axis: AxisSpec,
    spec: ModelSpec,
    as_json: bool,
    quiet: bool,
) -> None:
    """Apply the remedies to a copy of MODEL and compare their shift sweeps.

    A remedy that does not apply to MODEL (pool-head on a head that already pools, blur
    without strided pooling) is skipped with its reason; none applying is an error.

    --data holds the held-out examples of the sweeps (default: the recipe's held-out
    draw, or a seeded 20% of --train-data).

    \b
    Examples:
      interp fix trained/seed_cnn.pt --strategy pool-head
      interp fix model.pt --train-data train.npz --data test.npz --out fixed/ --force
    """
    from interp.remedies.core import parse_strategies

    names = parse_strategies(strategy)
    out = out if out is not None else default_out("fix", model_path.stem)
    check_fix_out(out, model_path.stem, names, force)
    import io

    from interp._write import write_file
    from interp.cli import _common as run
    from interp.remedies import fix as run_fix
    from interp.reporting.jsonio import jsonable
    from interp.shifts import parse_shifts

    model, info, shape = run.load_model(model_path, spec, quiet=quiet)
    x_tr = y_tr = x_te = y_te = None
    train_classes = None
    loaded = run.load_data_for(train, model, shape, quiet, spec)
    if loaded is not None:
        x_tr, y_tr, train_classes = loaded.x, loaded.y, loaded.classes
    test = run.load_data_for(data, model, shape, quiet, spec)
    if test is not None:
        x_te, y_te = test.x, test.y
    known = next((t for t in (x_tr, x_te) if t is not None), None)
    shape = shape or (tuple(known.shape[1:]) if known is not None else None)
    shift_list = None
    if shifts:
        dims = len(shape) - 1 if shape else 1
        shift_list = parse_shifts(shifts, dims)
    info = run.with_axis(info, axis, shape)
    with run.progress(quiet) as show:
        res = run_fix(
            model, x_tr, y_tr, x_test=x_te, y_test=y_te, strategies=names, shifts=shift_list,
            mode=shift_mode, seed=seed, epochs=epochs, progress=show, info=info, out=out,
            train_classes=train_classes,
        )  # fmt: skip
    content = jsonable(res.to_dict())
    text = json.dumps(content, indent=2, sort_keys=True, allow_nan=False)
    write_file(out / "fix.json", text.encode(), force=force, what="fix.json")
    buf = io.BytesIO()
    res.plot().savefig(buf, format="png", dpi=90, metadata={"Software": None})
    write_file(out / "fix.png", buf.getvalue(), force=force, what="the fix figure")
    if as_json:
        run.echo_json(content)
        return
    for line in table_lines(res.table(), res.skipped):
        click.echo(line)
    click.echo("")
    for sentence in res.sentences():
        click.echo(sentence)
    for r in res.remedies:
        if r.path:
            click.echo(f"wrote {r.path}")
    click.echo(f"wrote {out / 'fix.json'} and {out / 'fix.png'}")
