"""The base of every typed error that means "bad input, fix it" (not a bug in s4fuse).

Library code raises subclasses of :class:`InputError` (config, dataset, image, annotation,
checkpoint, run-folder problems) with a message that says the fix; each command line prints such an
error as one line on stderr and exits with code 2 (pipelines.cli_common.run_cli). Anything else is a bug
and keeps its traceback. Bottom floor (runtime/) so that every package can raise them.
"""

from __future__ import annotations

from collections.abc import Iterable


class InputError(Exception):
    """Bad input (file, folder, config, option); the message names it and says the fix."""


class RunFolderError(InputError, FileExistsError):
    """An output folder holds results of another run, or a run that must not be overwritten."""


class OutputWriteError(InputError, OSError):
    """An output file cannot be written (folder not writable, disk full); complete outputs written
    before it are intact (every write is atomic)."""


def capped_list(items: Iterable[object], limit: int = 10, sep: str = "; ") -> str:
    """``items`` joined by ``sep``, the first ``limit`` only, then ``… and N more``: an error line
    naming every bad file stays readable when there are hundreds of them."""
    items = [str(item) for item in items]
    shown = sep.join(items[:limit])
    return shown + (f"{sep}… and {len(items) - limit} more" if len(items) > limit else "")
