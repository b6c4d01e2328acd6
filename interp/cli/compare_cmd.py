"""`interp compare`: several models on the same data, in one report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from interp.cli._options import (
    AnalysisSpec,
    InputError,
    ModelSpec,
    analysis_options,
    check_out,
    force_option,
    json_option,
    model_options,
    out_option,
    quiet_option,
)


@click.command()
@click.argument("model_paths", metavar="MODEL MODEL...", nargs=-1, required=True,
                type=click.Path(exists=True, dir_okay=False, path_type=Path))  # fmt: skip
@analysis_options
@out_option("Report directory (default: reports/compare-<first>-<second>...).")
@force_option
@model_options
@json_option
@quiet_option
def compare(
    model_paths: tuple[Path, ...],
    analysis: AnalysisSpec,
    out: Path | None,
    force: bool,
    spec: ModelSpec,
    as_json: bool,
    quiet: bool,
) -> None:
    """Compare models on the same data: accuracy versus shift, verdicts, connectivity.

    \b
    Example:
      interp compare trained/seed_cnn.pt trained/seed_gap.pt trained/seed_aug.pt
    """
    if len(model_paths) < 2:
        raise InputError(f"`MODEL` got {len(model_paths)} file; compare needs at least two models")
    target = out or Path("reports") / ("compare-" + "-".join(p.stem for p in model_paths))
    check_out(target, force=force)
    from interp.cli._common import echo_json, load_data_for, load_model, show_progress
    from interp.reporting import compare as build

    loaded, shapes = [], []
    for path in model_paths:
        model, info, shape = load_model(
            path, spec, quiet=quiet
        )
        loaded.append((model, info))
        shapes.append(shape)
    data = load_data_for(analysis.data_path, loaded[0][0], shapes[0], quiet)
    rep = build(loaded, data=data, device=spec.device, progress=show_progress(quiet),
                **analysis.settings())
    rep.save(target, force=force)
    if as_json:
        echo_json(json.loads(rep.to_json()))
        return
    if not quiet:
        content = rep.to_dict()
        for name, entry in zip(content["names"], content["models"], strict=True):
            click.echo(f"{name}: {entry['verdict']['headline']}")
    click.echo(f"Wrote {target / 'report.html'} (also report.md, report.json, figures/)")
