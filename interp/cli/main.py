"""Entry point of the `interp` command (``interp.cli.main:main``).

Light on purpose: click and the version only. Each command's module, and with it
torch and the analyses, is imported when the command runs, after the signal
handling is in place, so Ctrl-C during the seconds of start-up prints one line
(``Interrupted.``, exit 130; SIGTERM: exit 143), never a traceback.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

import click

from interp._version import __version__

# Command name -> module in interp/cli/ defining a click command of that name.
COMMANDS = {
    "inspect": "inspect_cmd",
    "report": "report_cmd",
    "sweep": "sweep_cmd",
    "attribute": "attribute_cmd",
    "compare": "compare_cmd",
    "fix": "fix_cmd",
    "train": "train_cmd",
}

HELP = """Explain why a trained CNN is, or is not, translation invariant.

\b
Start here:
  interp inspect MODEL            layers, receptive fields, head kind, verdict
  interp report MODEL             full report: verdict, connectivity, shifts,
                                  attributions (HTML, Markdown, JSON)
  interp sweep MODEL [--data F]   accuracy and confidence versus shift
  interp attribute MODEL --index I [--data F]
                                  attribution maps of one sample across shifts
  interp compare A B ...          several models on the same data
  interp fix MODEL                try pool-head, augment and blur on a copy of MODEL
  interp train NAME               retrain a model of the shipped zoo

\b
MODEL is an interp checkpoint, a pickled torch.nn model, a state dict or
.safetensors file with --arch, or (with --trust) TorchScript or .pt2.
Files that could run code are refused unless you pass --trust.
Data (--data): .npz/.pt with x and y, an image folder (one subfolder per
class), or x.npy with --labels y.npy; zoo models need none.
Shifts are in input positions (samples, bins or pixels).
Exit codes: 0 done, 2 bad input (one line says the fix), 1 unexpected failure,
130 interrupted (143 on SIGTERM).
"""

EXIT_INTERRUPTED = 130  # 128 + SIGINT
EXIT_TERMINATED = 143  # 128 + SIGTERM
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, as a shell reports a writer whose reader left


class Interrupted(BaseException):
    """SIGINT or SIGTERM, raised where the program is so that every ``finally`` cleans up.

    Not a KeyboardInterrupt: click would turn that into a blank line and ``Aborted!``.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.exit_code = EXIT_INTERRUPTED if signum == signal.SIGINT else EXIT_TERMINATED


_received: list[int] = []  # the signal, once one came: third-party code may swallow the raise


def _on_signal(signum: int, frame: Any) -> None:
    # One interruption is enough: let the clean-up it triggers finish undisturbed.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    _received.append(signum)
    _raise_when_safe(frame)


_RETRY_S = 0.02  # how soon a deferred interruption is tried again


def _raise_when_safe(frame: Any) -> None:
    """Raise Interrupted, unless Python is importing a module: then again in 20 ms.

    An import may be running C++ initialisation that calls back into Python (torch's
    ``_c10d_init`` under ``import torch.distributed``); an exception raised through
    that frame is fatal ("terminate called after throwing ... error_already_set",
    exit -6), with no clean-up at all. A SIGALRM timer retries until the import is done.
    """
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            signal.signal(signal.SIGALRM, lambda _s, f: _raise_when_safe(f))
            signal.setitimer(signal.ITIMER_REAL, _RETRY_S)
            return
        frame = frame.f_back
    raise Interrupted(_received[0])


@contextlib.contextmanager
def _signals() -> Iterator[None]:
    """SIGINT and SIGTERM raise Interrupted during the run (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    alarm = signal.getsignal(signal.SIGALRM)  # the deferred interruption's timer
    for s in old:
        if old[s] is not signal.SIG_IGN:  # nohup and friends keep their choice
            signal.signal(s, _on_signal)
    try:
        yield
    finally:
        if signal.getsignal(signal.SIGALRM) is not alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, alarm)
        for s, handler in old.items():
            signal.signal(s, handler)


def _usage_line(exc: click.UsageError) -> str:
    """"Error: no such option: --x (see 'interp report --help')": one line, lowercase."""
    text = " ".join(exc.format_message().split())
    unknown = re.fullmatch(r"No such option '([^']*)'\.?\s*(.*)", text)
    if unknown:  # click 8.2+ quotes the name and may add "Did you mean '--force'?"
        hint = unknown[2]
        text = f"no such option: {unknown[1]}" + (f"; {hint[:1].lower()}{hint[1:]}" if hint else "")
    text = text[:1].lower() + text[1:].rstrip(".")
    where = exc.ctx.command_path if exc.ctx is not None else "interp"
    return f"Error: {text} (see '{where} --help')"


class InterpGroup(click.Group):
    """The `interp` group: lazy commands, and the exit codes of DESIGN.md.

    0 done; 2 bad usage or input (InterpError, click usage errors), one line, no
    traceback; 1 unexpected failure (traceback only with INTERP_DEBUG=1); 130 on
    SIGINT and 143 on SIGTERM, with one line ``Interrupted.``.
    """

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        command: click.Command = getattr(
            importlib.import_module(f"interp.cli.{module}"), cmd_name
        )
        return command

    def invoke(self, ctx: click.Context) -> Any:
        from interp.errors import InterpError

        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:  # SIGINT while our handler was not installed (threads)
            raise Interrupted(signal.SIGINT) from None
        except InterpError as exc:
            raise click.ClickException(str(exc)) from exc
        except (click.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except BrokenPipeError:  # `interp sweep ... | head`: the reader left; stop quietly
            with contextlib.suppress(OSError):  # and let no flush at exit complain either
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise click.exceptions.Exit(EXIT_BROKEN_PIPE) from None
        except Exception as exc:
            if _received:  # an import that swallowed Interrupted failed later
                raise Interrupted(_received[0]) from None
            if os.environ.get("INTERP_DEBUG"):
                raise
            first = str(exc).splitlines()[0] if str(exc) else ""
            click.echo(
                f"Error: unexpected failure: {type(exc).__name__}: {first} "
                "(rerun with INTERP_DEBUG=1 for the traceback, and please report it)",
                err=True,
            )
            raise click.exceptions.Exit(1) from None

    def main(  # type: ignore[override]
        self, args: Any = None, prog_name: str | None = None, complete_var: str | None = None,
        standalone_mode: bool = True, **extra: Any,
    ) -> Any:  # fmt: skip
        code = 0
        with _signals():
            try:
                rv = super().main(args, "interp", complete_var, standalone_mode=False, **extra)
                code = rv if isinstance(rv, int) else 0
            except Interrupted as exc:
                click.echo("Interrupted.", err=True)
                code = exc.exit_code
            except click.exceptions.Abort:  # KeyboardInterrupt that click caught first
                click.echo("Interrupted.", err=True)
                code = EXIT_INTERRUPTED
            except click.UsageError as exc:
                click.echo(_usage_line(exc), err=True)
                code = 2
            except click.ClickException as exc:
                click.echo(f"Error: {' '.join(exc.format_message().split())}", err=True)
                code = 2 if exc.exit_code in (1, 2) else exc.exit_code
            except click.exceptions.Exit as exc:
                code = exc.exit_code
            if _received and code not in (EXIT_INTERRUPTED, EXIT_TERMINATED):
                click.echo("Interrupted.", err=True)  # the raise was swallowed somewhere
                code = Interrupted(_received[0]).exit_code
            _received.clear()
        if not standalone_mode:
            return code
        sys.exit(code)


@click.group(cls=InterpGroup, help=HELP, context_settings={"max_content_width": 100})
@click.version_option(__version__, prog_name="interp")
def main() -> None:
    pass
