"""The "What each remedy does" section: interp.fix's table, figure and recommendation.

``run_fix`` takes the ``fix`` argument of :func:`interp.report`: a ``FixResult``
(already computed, e.g. by ``interp fix``), or True to run :func:`interp.fix` on the
report's model with its zoo recipe (or the ``train`` data given with it). The
``fix`` block of report.json is ``FixResult.to_dict()``: the table (remedy /
accuracy at 0 / worst accuracy over the failing range / consistency / seconds),
the curves, and one sentence recommending the cheapest remedy that holds accuracy.
A remedy that does not apply to the model is in its ``skipped`` list with its reason,
shown as a "skipped" row of the table and a sentence under it; the section is dropped
(with the reason) only when no remedy applies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from interp.errors import InterpError
from interp.reporting.blocks import Bullets, Paragraph, Section, Table, figure_ref, omitted
from interp.reporting.jsonio import jsonable

if TYPE_CHECKING:
    from interp.reporting.build import Context

TITLE = "What each remedy does"


def run_fix(ctx: Context, fix: Any, train: Any = None) -> None:
    """Store the FixResult (computing it when ``fix`` is True) and its JSON block."""
    from interp.remedies import FixResult
    from interp.remedies import fix as run

    result = fix
    if not isinstance(fix, FixResult):
        x_tr, y_tr = train if train is not None else (None, None)
        try:
            result = run(ctx.model, x_tr, y_tr, x_test=ctx.x, y_test=ctx.y, mode=ctx.mode,
                         shifts=ctx.shifts, seed=ctx.seed, progress=ctx.progress,
                         info=ctx.info)  # fmt: skip
        except InterpError as err:
            ctx.notes["fix"] = str(err)
            return
    ctx.results["fix"] = result
    ctx.content["fix"] = jsonable(result.to_dict())


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def fix_section(ctx: Context) -> Section:
    result = ctx.results.get("fix")
    if result is None:
        return omitted("fix", TITLE, ctx.notes.get("fix", "interp.fix was not run"))
    rows = tuple(
        (r["remedy"] + ("" if r["remedy"] == "original" else f" ({r['detail']})"),
         _pct(r["accuracy_at_0"]), _pct(r["worst_accuracy"]), _pct(r["consistency"]),
         f"{r['seconds']:.1f}")
        for r in result.table()
    )  # fmt: skip
    rows += tuple((f"{s.name} (skipped)", "skipped", "-", "-", "-") for s in result.skipped)
    names = [r["remedy"] for r in result.table()]
    best = names.index(result.recommended) if result.recommended in names else None
    table = Table(
        ("remedy", "accuracy at 0", f"worst over {result.range_text()}", "consistency", "seconds"),
        rows,
        caption=f"{result.n_test} held-out examples, {result.mode} shifts; remedies fitted on "
        f"{result.n_train} training examples ({result.data}).",
        highlight=(best,) if best is not None else (),
    )
    fig = figure_ref("fix", result.plot(), "Accuracy and true-class probability versus shift: "
                     "the original (dashed) and each remedy; grey: the failing range.")  # fmt: skip
    notes = [n for r in result.remedies for n in r.notes]
    saved = [f"{r.name}: {r.path}" for r in result.remedies if r.path]
    blocks: list[Any] = [Paragraph(result.recommendation, strong=True), table, fig]
    if notes:
        blocks.append(Bullets("How each remedy was fitted", tuple(notes)))
    if result.skipped:
        blocks.append(Bullets("Skipped: they do not apply to this model",
                              tuple(s.sentence() for s in result.skipped)))  # fmt: skip
    if saved:
        blocks.append(Bullets("Fixed models", tuple(saved)))
    return Section("fix", TITLE, tuple(blocks))
