"""Entry point of the `interp` command."""

from __future__ import annotations

import click

from interp.cli._common import InterpGroup
from interp.cli.attribute_cmd import attribute
from interp.cli.compare_cmd import compare
from interp.cli.fix_cmd import fix
from interp.cli.inspect_cmd import inspect
from interp.cli.report_cmd import report
from interp.cli.sweep_cmd import sweep
from interp.cli.train_cmd import train
from interp._version import __version__

HELP = """Explain why a trained CNN is, or is not, translation invariant.

\b
Start here:
  interp inspect MODEL            layers, receptive fields, head kind, verdict
  interp report MODEL             full report: verdict, connectivity, shifts,
                                  attributions (HTML, Markdown, JSON)
  interp sweep MODEL --data F     accuracy and confidence versus shift
  interp attribute MODEL --data F --index I
                                  attribution maps of one sample across shifts
  interp compare A B ...          several models on the same data
  interp train NAME               retrain a model of the shipped zoo
  interp fix MODEL                try pool-head, augment and blur on a copy of MODEL

\b
MODEL is an interp checkpoint, a pickled torch.nn model, a state dict or
.safetensors file with --arch, or (with --trust) TorchScript or .pt2.
Files that could run code are refused unless you pass --trust.
Exit codes: 0 done, 2 bad input (one line says the fix), 1 unexpected failure.
"""


@click.group(cls=InterpGroup, help=HELP, context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="interp")
def main() -> None:
    pass


main.add_command(inspect)
main.add_command(report)
main.add_command(compare)
main.add_command(sweep)
main.add_command(attribute)
main.add_command(train)
main.add_command(fix)
