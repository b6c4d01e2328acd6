"""`interp compare`: several models on the same data, in one report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from interp.cli._common import (
    InputError,
    echo_json,
    json_option,
    load_model,
    model_options,
    quiet_option,
    show_progress,
)
from interp.cli.report_cmd import analysis_options, load_data_for


@click.command()
@click.argument("model_paths", metavar="MODEL MODEL...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))  # fmt: skip
@analysis_options
@click.option("--out", type=click.Path(file_okay=False, path_type=Path),
              help="Report directory (default: reports/compare-<first>-<second>...).")  # fmt: skip
@click.option("--force", is_flag=True, help="Replace an existing report in --out.")
@model_options
@json_option
@quiet_option
def compare(
    model_paths: tuple[Path, ...],
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
    """Compare models on the same data: accuracy versus shift, verdicts, connectivity."""
    from interp.reporting import compare as build

    if len(model_paths) < 2:
        raise InputError(f"`MODEL` got {len(model_paths)} file; compare needs at least two models")
    loaded, shapes = [], []
    for path in model_paths:
        model, info, shape = load_model(
            path, trust=trust, arch=arch, input_shape=input_shape, device=device
        )
        loaded.append((model, info))
        shapes.append(shape)
    data = load_data_for(data_path, loaded[0][0], shapes[0])
    target = out or Path("reports") / ("compare-" + "-".join(p.stem for p in model_paths))
    rep = build(loaded, data=data, shifts=shifts, mode=shift_mode, method=method,
                samples=samples, seed=seed, device=device,
                progress=show_progress(quiet))  # fmt: skip
    rep.save(target, force=force)
    if as_json:
        echo_json(json.loads(rep.to_json()))
        return
    if not quiet:
        content = rep.to_dict()
        for name, entry in zip(content["names"], content["models"], strict=True):
            click.echo(f"{name}: {entry['verdict']['headline']}")
    click.echo(f"Wrote {target / 'report.html'} (also report.md, report.json, figures/)")
