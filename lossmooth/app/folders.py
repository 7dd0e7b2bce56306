"""The checks the reading commands (table, plot, status) share: the folder they read exists (and they
say which one they read), an output file can be written before anything is, ``--where`` filters parse.
Each raises one :class:`ConfigError` line naming the option and the fix."""
from __future__ import annotations

import os
import sys
import tempfile

from lossmooth import cli_help
from lossmooth.errors import ConfigError

PLOT_FORMATS = (".png", ".pdf", ".svg")


def output_path(option: str, path: str | None) -> None:
    """An output file's folder exists and takes files, and the path is not a folder: checked before
    anything is written or printed, so a bad second output never leaves the first one behind."""
    if path is None:
        return
    if not path.strip():
        raise ConfigError(f"{option}: empty path; give a file name")
    if option == "--out" and os.path.splitext(path)[1].lower() not in PLOT_FORMATS:
        raise ConfigError(f"{option}: {path} is not an image file name; end it in {', '.join(PLOT_FORMATS)}")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise ConfigError(f"{option}: folder {os.path.dirname(path) or '.'} does not exist; create it first")
    if os.path.isdir(path):
        raise ConfigError(f"{option}: {path} is a folder; give a file name")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise ConfigError(f"{option}: {path} is not writable; choose another file")
    try:
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".lossmooth-write-probe-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"{option}: cannot write in {os.path.dirname(path) or '.'} ({e.strerror or e}); "
                          "choose a writable folder") from None


def reading_folder(command: str, results_dir: str) -> None:
    """A reading command's folder exists (else one line naming it); say on stderr which folder it reads."""
    if not os.path.isdir(results_dir):
        hint = ("run `lossmooth run` first, or read the committed reference runs with --results-dir "
                f"{cli_help.REFERENCE_DIR}") if os.path.normpath(results_dir) == cli_help.RUNS_DIR else \
            "point it at a results folder"
        raise ConfigError(f"--results-dir: {results_dir} does not exist; {hint}")
    print(cli_help.reading(command, results_dir), file=sys.stderr)


def where(items: list[str]) -> dict:
    """``--where key=value ...`` as a dict of row filters."""
    out = {}
    for it in items or []:
        if "=" not in it:
            raise ConfigError(f"--where: expected key=value, got '{it}'")
        k, v = it.split("=", 1)
        out[k] = v
    return out


def progress(results_dir: str):
    """A progress line on a terminal while many run directories are read (nothing otherwise)."""
    if not sys.stderr.isatty():
        return None

    def show(i: int, total: int, path: str) -> None:
        if total >= 10:
            end = "\n" if i == total - 1 else ""
            print(f"\rlossmooth: reading {results_dir}: {i + 1} of {total} run directories", end=end,
                  file=sys.stderr, flush=True)
    return show


def no_runs(results_dir: str, filters: list[str]) -> ConfigError:
    """The error for a filter that selects no complete run."""
    return ConfigError(f"no complete runs under {results_dir} match {filters or 'the filter'}; "
                       "check --setting/--where or run `lossmooth run`")
