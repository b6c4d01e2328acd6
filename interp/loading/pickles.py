"""Pickles (``torch.save`` zip, legacy ``torch.save``, plain ``pickle``): decide from
the globals they name whether they are safe, then load them exactly once.

A safe load that fails is never retried unsafely: whoever made the file
controls that failure (see docs/SECURITY.md).
"""

from __future__ import annotations

import contextlib
import io
import os
import pickle
import sys
from collections.abc import Iterator
from typing import Any

import torch

from interp.errors import InterpError
from interp.loading import arch as _arch
from interp.loading import formats as _formats
from interp.loading.budget import Budget, scan_pickle
from interp.loading.messages import few, one_line

TRUST_FIX = "load it with --trust (trust=True in Python) only if you trust whoever made it"


def load_pickle(data: bytes, label: str, kind: str, *, trust: bool, budget: Budget) -> Any:
    """Decide from the globals whether the pickle is safe, then load it exactly once.

    The sizes it declares (storages, expanded views, allowlisted constructors) are
    charged to ``budget`` first, with or without trust.
    """
    corrupt = f"{label} is truncated or corrupt; save the model again"
    try:
        if kind == "torch-zip":
            member = _formats.zip_member(data, "data.pkl", limit=budget.limit)
            names = _formats.pickle_globals(member or b"")
            scan_pickle(member or b"", budget)
        else:
            count = 5 if kind == "legacy-pickle" else 1
            names = _formats.pickle_globals(data, count=count)
            scan_pickle(data, budget, count=count)
    except ValueError:
        raise InterpError(corrupt) from None
    layers = {_formats.qualified(cls) for cls in _arch.ALLOWED_CLASSES}
    unsafe = sorted(set(names) - _formats.safe_load_globals() - layers)
    if unsafe:
        if not trust:
            shown = few(unsafe, 5)
            raise InterpError(
                f"{label} can run code when loaded: its pickle names {shown}; "
                f"{TRUST_FIX}, or save model.state_dict() and load that with --arch MODULE:FACTORY "
                "(interp.save stores only a Sequential of torch.nn layers as plain data)"
            )
        with _cwd_importable():
            if kind == "pickle":  # a plain pickle.dump, not torch.save: pickle is the loader
                try:
                    return pickle.loads(data)
                except (ImportError, AttributeError) as err:
                    raise _import_error(err, label) from None
                except Exception as err:
                    raise InterpError(f"{label} could not be unpickled ({one_line(err)})") from None
            return torch_load(data, label, weights_only=False)
    if kind == "pickle":
        raise InterpError(
            f"{label} is a plain Python pickle, not a torch.save file; save the model with "
            "interp.save(model, path) or torch.save"
        )
    if set(names) & layers:
        with torch.serialization.safe_globals(list(_arch.ALLOWED_CLASSES)):
            return torch_load(data, label, weights_only=True)
    return torch_load(data, label, weights_only=True)


def torch_load(data: bytes, label: str, *, weights_only: bool) -> Any:
    try:
        return torch.load(io.BytesIO(data), weights_only=weights_only, map_location="cpu")
    except MemoryError:
        raise InterpError(
            f"{label} needs more memory than is available to load; free memory, or lower "
            "--max-memory so that interp refuses such files before allocating"
        ) from None
    except (ImportError, AttributeError) as err:
        if weights_only:
            raise InterpError(f"{label} is truncated or corrupt; save the model again") from None
        raise _import_error(err, label) from None
    except pickle.UnpicklingError as err:
        if weights_only:
            raise InterpError(
                f"{label} holds content torch refuses to load safely ({_unpickler_reason(err)}); "
                f"{TRUST_FIX}"
            ) from None
        raise InterpError(f"{label} is truncated or corrupt; save the model again") from None
    except Exception:  # any failure reading untrusted bytes means a damaged file
        raise InterpError(f"{label} is truncated or corrupt; save the model again") from None


@contextlib.contextmanager
def _cwd_importable() -> Iterator[None]:
    """Put the working directory on ``sys.path`` for a trusted load only, as ``python`` would.

    The ``interp`` console script does not have it there, so a model class defined
    in ``./mynet.py`` would not be found; it is removed again afterwards.
    """
    cwd = os.getcwd()
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    try:
        yield
    finally:
        if added and cwd in sys.path:
            sys.path.remove(cwd)


def _import_error(err: Exception, label: str) -> InterpError:
    """A trusted load whose classes cannot be imported: name the module and the fix."""
    name = getattr(err, "name", None)
    if isinstance(err, ModuleNotFoundError) and name:
        return InterpError(
            f"{label} needs the Python module {name!r}, which cannot be imported "
            f"({one_line(err)}); run interp from the folder that holds {name.split('.')[0]}.py "
            "or its package, install it, or add its folder to PYTHONPATH"
        )
    return InterpError(
        f"{label} names a class that cannot be imported ({one_line(err)}); make the module "
        "that defines it importable (run from its folder, install it, or set PYTHONPATH) "
        "with the same class names as when it was saved"
    )


def _unpickler_reason(err: Exception) -> str:
    """The one informative line of torch's long weights_only error."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error" in line:
            rest = line.partition("WeightsUnpickler error:")[2].strip()
            return one_line(rest or (lines[i + 1] if i + 1 < len(lines) else line))
    return one_line(err)
