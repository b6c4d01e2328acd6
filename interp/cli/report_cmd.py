"""`interp report`: the full report (HTML, Markdown, JSON, figures) for one model."""

from __future__ import annotations

import json
from pathlib import Path

import click

from interp.cli._options import (
    AnalysisSpec,
    ModelSpec,
    analysis_options,
    check_out,
    force_option,
    json_option,
    model_argument,
    model_options,
    out_option,
    quiet_option,
)


def out_dir(out: Path | None, model_path: Path) -> Path:
    """``--out``, or reports/<model file stem>/."""
    return out if out is not None else Path("reports") / model_path.stem


@click.command()
@model_argument
@analysis_options
@out_option("Report directory (default: reports/<model file stem>/).")
@force_option
@model_options
@json_option
@quiet_option
def report(
    model_path: Path,
    analysis: AnalysisSpec,
    out: Path | None,
    force: bool,
    spec: ModelSpec,
    as_json: bool,
    quiet: bool,
) -> None:
    """Write the report: verdict, architecture, connectivity, shifts, attributions.

    \b
    Example:
      interp report trained/seed_cnn.pt --out reports/seed_cnn --force
    """
    target = out_dir(out, model_path)
    check_out(target, force=force)
    from interp.cli._common import load_data_for, load_model, show_progress
    from interp.reporting import report as build

    model, info, shape = load_model(
        model_path, spec, quiet=quiet
    )
    data = load_data_for(analysis.data_path, model, shape, quiet)
    rep = build(model, info, data=data, device=spec.device, progress=show_progress(quiet),
                **analysis.settings())
    rep.save(target, force=force)
    if as_json:
        from interp.cli._common import echo_json

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
