"""`interp fix`: apply each remedy to a copy of the model and show the before/after."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

import click

from interp.cli._options import (
    ModelSpec,
    json_option,
    model_argument,
    model_options,
    out_option,
    quiet_option,
    seed_option,
    shift_mode_option,
    shifts_option,
)

_DATA = click.Path(exists=True, dir_okay=False, path_type=Path)


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def table_lines(table: list[dict[str, Any]]) -> list[str]:
    """The fix table as fixed-width text."""
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
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(head)]

    def line(cells: tuple[str, ...]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    return [line(head), *(line(row) for row in rows)]


def _write_atomic(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@click.command()
@model_argument
@click.option(
    "--train-data",
    "train_path",
    type=_DATA,
    help="Training examples (.npz or .pt with x, y) the remedies are fitted on; zoo "
    "models draw them from their recipe without it.",
)
@click.option(
    "--data",
    "data_path",
    type=_DATA,
    help="Held-out examples for the sweeps; default: the recipe's held-out draw, or a "
    "seeded 20% of the training data.",
)
@click.option(
    "--strategy",
    default="all",
    show_default=True,
    metavar="LIST",
    help="Remedies, comma separated: pool-head, augment, blur, or all.",
)
@out_option(
    "Folder for the fixed models (<stem>-<remedy>.pt), fix.json and fix.png.",
    default=Path("fix"),
    show_default=True,
)
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
@model_options
@json_option
@quiet_option
def fix(
    model_path: Path,
    train_path: Path | None,
    data_path: Path | None,
    strategy: str,
    out: Path,
    epochs: int,
    shifts: str | None,
    shift_mode: str,
    seed: int,
    spec: ModelSpec,
    as_json: bool,
    quiet: bool,
) -> None:
    """Apply the remedies to a copy of MODEL and compare their shift sweeps.

    \b
    Example:
      interp fix trained/seed_cnn.pt --strategy pool-head --out fix/
    """
    from interp.cli._common import echo_json, load_data_for, load_model, show_progress
    from interp.remedies import fix as run_fix
    from interp.remedies.core import parse_strategies
    from interp.reporting.jsonio import jsonable
    from interp.shifts import parse_shifts

    names = parse_strategies(strategy)
    model, info, shape = load_model(
        model_path, spec, quiet=quiet
    )
    x_tr = y_tr = x_te = y_te = None
    train_classes = None
    train = load_data_for(train_path, model, shape, quiet)
    if train is not None:
        x_tr, y_tr, train_classes = train.x, train.y, train.classes
    test = load_data_for(data_path, model, shape, quiet)
    if test is not None:
        x_te, y_te = test.x, test.y
    shift_list = None
    if shifts:
        dims = len(shape) - 1 if shape else (x_tr.dim() - 2 if x_tr is not None else 1)
        shift_list = parse_shifts(shifts, dims)
    res = run_fix(
        model, x_tr, y_tr, x_test=x_te, y_test=y_te, strategies=names, shifts=shift_list,
        mode=shift_mode, seed=seed, epochs=epochs, progress=show_progress(quiet), info=info,
        out=out, train_classes=train_classes,
    )  # fmt: skip
    content = jsonable(res.to_dict())
    _write_atomic(out / "fix.json", json.dumps(content, indent=2, sort_keys=True,
                                               allow_nan=False).encode())  # fmt: skip
    fig = res.plot()
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, metadata={"Software": None})
    _write_atomic(out / "fix.png", buf.getvalue())
    if as_json:
        echo_json(content)
        return
    for line in table_lines(res.table()):
        click.echo(line)
    click.echo("")
    for sentence in res.sentences():
        click.echo(sentence)
    for r in res.remedies:
        if r.path:
            click.echo(f"wrote {r.path}")
    click.echo(f"wrote {out / 'fix.json'} and {out / 'fix.png'}")
