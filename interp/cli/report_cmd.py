"""`interp report`: the full report (HTML, Markdown, JSON, figures) for one model."""

from __future__ import annotations

import json
from pathlib import Path

import click

from interp.cli._common import (
    F,
    echo_json,
    json_option,
    load_model,
    model_options,
    model_path_argument,
    quiet_option,
    show_progress,
)
from interp.reporting.build import DEFAULT_SAMPLES


def analysis_options(func: F) -> F:
    """--data, --shifts, --shift-mode, --method, --samples, --seed: what the analyses run on."""
    for option in reversed([
        click.option("--data", "data_path", type=click.Path(exists=True, dir_okay=False,
                     path_type=Path), help="Labelled examples (.npz or .pt with x, y); zoo "
                     "models regenerate held-out examples without it."),
        click.option("--shifts", metavar="SPEC", help="Shifts to sweep, e.g. -3000:3000:250 or "
                     "-500,0,500 (default: the full input range)."),
        click.option("--shift-mode", type=click.Choice(["roll", "zero", "edge"]), default="roll",
                     show_default=True, help="How vacated positions are filled."),
        click.option("--method", metavar="NAME", default="integrated_gradients", show_default=True,
                     help="Attribution method (interp.METHODS)."),
        click.option("--samples", type=click.IntRange(min=1), default=DEFAULT_SAMPLES,
                     show_default=True,
                     help="Examples used (a seeded random subset of larger data)."),
        click.option("--seed", type=int, default=0, show_default=True,
                     help="Seeds every random choice; same seed, same report."),
    ]):  # fmt: skip
        func = option(func)
    return func


def load_data_for(path: Path | None, model: object, shape: tuple[int, ...] | None) -> object:
    """The checked Dataset from ``--data``, or None."""
    if path is None:
        return None
    from interp.loading.core import load_data

    return load_data(path, model=model, input_shape=shape)  # type: ignore[arg-type]


def out_dir(out: Path | None, model_path: Path) -> Path:
    """``--out``, or reports/<model file stem>/."""
    return out if out is not None else Path("reports") / model_path.stem


@click.command()
@model_path_argument
@analysis_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Report directory (default: reports/<model file stem>/).")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing report in --out.")
@model_options
@json_option
@quiet_option
def report(
    model_path: Path,
    data_path: Path | None,
    shifts: str | None,
    shift_mode: str,
    method: str,
    samples: int,
    seed: int,
    out: Path | None,
    force: bool,
    trust: bool,
    arch: str | None,
    input_shape: str | None,
    device: str,
    as_json: bool,
    quiet: bool,
) -> None:
    """Write the report: verdict, architecture, connectivity, shifts, attributions."""
    from interp.reporting import report as build

    model, info, shape = load_model(
        model_path, trust=trust, arch=arch, input_shape=input_shape, device=device
    )
    data = load_data_for(data_path, model, shape)
    target = out_dir(out, model_path)
    rep = build(model, info, data=data, shifts=shifts, mode=shift_mode, method=method,
                samples=samples, seed=seed, device=device,
                progress=show_progress(quiet))  # fmt: skip
    rep.save(target, force=force)
    if as_json:
        echo_json(json.loads(rep.to_json()))
        return
    verdict = rep.verdict or {}
    if not quiet:
        click.echo(str(verdict.get("headline", "")))
        for reason in verdict.get("reasons", [])[:2]:
            click.echo(click.wrap_text(reason, width=88, initial_indent="  - ",
                                       subsequent_indent="    "))  # fmt: skip
        for section in rep.sections:
            if not section.available:
                note = section.blocks[0].text if section.blocks else ""  # type: ignore[union-attr]
                click.echo(f"  ({section.title} omitted: {note})")
    click.echo(f"Wrote {target / 'report.html'} (also report.md, report.json, figures/)")
