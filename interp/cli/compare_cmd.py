"""`interp compare`: several models on the same data, in one report."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import click

from interp.cli._options import (
    AnalysisSpec,
    AxisSpec,
    InputError,
    ModelSpec,
    analysis_options,
    check_out,
    compare_run_options,
    default_out,
    force_option,
    out_option,
)


def model_specs(models: tuple[str, ...], spec: ModelSpec) -> list[tuple[Path, ModelSpec]]:
    """(file, how to open it) per MODEL: ``MODEL::module:factory``, else ``--arch`` given
    once for every model or once per model in MODEL order."""
    from interp.loading.weights import split_model_arch

    if len(models) < 2:
        raise InputError(f"`MODEL` got {len(models)} file; compare needs at least two models")
    if len(spec.archs) not in (0, 1, len(models)):
        raise InputError(
            f"`--arch` given {len(spec.archs)} times for {len(models)} models; give it once "
            "for all, once per model in MODEL order, or as MODEL::module:factory"
        )
    archs = list(spec.archs) if len(spec.archs) == len(models) else list(spec.archs) * len(models)
    out = []
    for i, text in enumerate(models):
        name, inline = split_model_arch(text)
        path = Path(name)
        if not path.is_file():
            raise InputError(f"`MODEL` {name!r} is not a file; check the path")
        if inline is not None and len(spec.archs) == len(models):
            raise InputError(
                f"{text!r} names its architecture and --arch gives one per model too; use one "
                "of the two"
            )
        arch = inline if inline is not None else (archs[i] if archs else None)
        kwargs = spec.arch_kwargs if arch is not None else None  # for the models with --arch
        out.append((path, dataclasses.replace(spec, arch=arch, archs=(), arch_kwargs=kwargs)))
    if spec.arch_kwargs is not None and not any(s.arch for _, s in out):
        raise InputError("`--arch-kwargs` are the arguments of --arch's factory; pass --arch too")
    return out


@click.command()
@click.argument("models", metavar="MODEL MODEL...", nargs=-1, required=True)
@analysis_options
@out_option("Report directory (default: interp-compare-<first>-<second>.../ in the current "
            "folder).")  # fmt: skip
@force_option
@compare_run_options
def compare(
    models: tuple[str, ...],
    analysis: AnalysisSpec,
    out: Path | None,
    force: bool,
    axis: AxisSpec,
    spec: ModelSpec,
    as_json: bool,
    quiet: bool,
) -> None:
    """Compare models on the same data: accuracy versus shift, verdicts, connectivity.

    \b
    Examples:
      interp compare trained/seed_cnn.pt trained/seed_gap.pt trained/seed_aug.pt
      interp compare a.pt b.pt --arch nets:small --arch nets:pooled --data test.npz
      interp compare a.pt::nets:small b.pt::nets:pooled --data test.npz
    """
    stems = [Path(text.split("::")[0]).stem for text in models]
    target = out or default_out("compare", *stems)
    check_out(target, force=force)
    from interp.cli import _common as run
    from interp.reporting import compare as build

    loaded, shapes = [], []
    for path, model_spec in model_specs(models, spec):
        model, info, shape = run.load_model(path, model_spec, quiet=quiet)
        loaded.append((model, info))
        shapes.append(shape)
    data = run.load_data_for(analysis.data, loaded[0][0], shapes[0], quiet, spec)
    # One axis for every model, as report and sweep choose it: --unit/--sample-spacing >
    # the data file's `units` > the checkpoint's (each model's own when nothing says more).
    resolved = None
    if axis.unit is not None or axis.step is not None or getattr(data, "axis", None):
        shape = shapes[0] or (tuple(data.x.shape[1:]) if data is not None else None)
        resolved = run.resolve_axis(loaded[0][1], axis, shape, getattr(data, "axis", None))
    with run.progress(quiet) as show:
        rep = build(loaded, data=data, device=spec.device, progress=show, axis=resolved,
                    **analysis.settings())  # fmt: skip
    rep.save(target, force=force)
    if as_json:
        run.echo_json(json.loads(rep.to_json()))
        return
    if not quiet:
        content = rep.to_dict()
        for name, entry in zip(content["names"], content["models"], strict=True):
            click.echo(f"{name}: {entry['verdict']['headline']}")
    click.echo(f"Wrote {target / 'report.html'} (also report.md, report.json, figures/)")
