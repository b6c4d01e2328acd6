"""`interp report`: the full report (HTML, Markdown, JSON, figures) for one model."""

from __future__ import annotations

import json
from pathlib import Path

import click

from interp.cli._options import (
    AnalysisSpec,
    AxisSpec,
    DataSpec,
    InputError,
    ModelSpec,
    analysis_and_train_options,
    check_out,
    default_out,
    force_option,
    model_argument,
    out_option,
    ray_option,
    run_options,
)


def out_dir(out: Path | None, model_path: Path) -> Path:
    """``--out``, or interp-report-<model file stem>/ in the current folder."""
    return out if out is not None else default_out("report", model_path.stem)


@click.command()
@model_argument
@analysis_and_train_options
@out_option("Report directory (default: interp-report-<model file stem>/ in the current "
            "folder).")  # fmt: skip
@force_option
@click.option("--fix", "with_fix", is_flag=True,
              help="Also try the remedies (pool-head, augment, blur) on copies of MODEL and "
              "add 'What each remedy does'; zoo models need no --train-data.")  # fmt: skip
@ray_option
@run_options
def report(
    model_path: Path,
    analysis: AnalysisSpec,
    out: Path | None,
    force: bool,
    with_fix: bool,
    train: DataSpec | None,
    ray_address: str | None,
    axis: AxisSpec,
    spec: ModelSpec,
    as_json: bool,
    quiet: bool,
) -> None:
    """Write the report: verdict, architecture, connectivity, shifts, attributions.

    \b
    Examples:
      interp report trained/seed_cnn.pt --out out/seed_cnn
      interp report model.pt --data test.npz --unit Hz --sample-spacing 0.5
      interp report weights.pt --arch mypkg.nets:resnet18 --arch-kwargs num_classes=10 \\
          --data val/ --resize 64,64 --normalize 0.5/0.25
      interp report trained/seed_cnn.pt --fix --ray
    """
    target = out_dir(out, model_path)
    check_out(target, force=force)
    if train is not None and not with_fix:
        raise InputError("`--train-data` is what --fix trains the remedies on; pass --fix too")
    from interp.cli import _common as run
    from interp.reporting import report as build

    run.check_ray(ray_address)
    model, info, shape = run.load_model(model_path, spec, quiet=quiet)
    data = run.load_data_for(analysis.data, model, shape, quiet, spec)
    train_xy = None
    if train is not None:
        loaded = run.load_data_for(train, model, shape, quiet, spec)
        train_xy = (loaded.x, loaded.y)
    shape = shape or (tuple(data.x.shape[1:]) if data is not None else None)
    resolved = run.resolve_axis(info, axis, shape, getattr(data, "axis", None))
    info = run.with_axis(info, axis, shape)
    with run.ray_executor(ray_address, model_path, spec, shape) as executor, \
            run.progress(quiet) as show:  # fmt: skip
        rep = build(model, info, data=data, device=spec.device, progress=show,
                    fix=True if with_fix else None, train=train_xy, executor=executor,
                    axis=resolved, **analysis.settings())  # fmt: skip
    rep.save(target, force=force)
    if as_json:
        run.echo_json(json.loads(rep.to_json()))
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
