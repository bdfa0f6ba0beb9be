"""Atomic file writes: write a temporary sibling, then rename it onto the target.

A process killed mid-write (SIGKILL, preemption, Ctrl-C) leaves either the old file or the
new one, never half of one, because `os.replace` within a folder is atomic on POSIX and
Windows. Every file that a later step trusts (run files, checkpoints, soup models, store
shards, landmark files) is written through `atomic_path`.

The temporary name is `.tmp.<pid>.<name>`: hidden, unique per process (two processes may
write the same target), and it keeps the target's suffix, which Keras requires
(`.keras`, `.weights.h5`). `remove_stale_temps` clears the leftovers of killed writers.

`check_writable_dir` / `check_writable_file` are how a command finds, before its slow
work, that its output cannot be written.
"""

import contextlib
import errno
import json
import os
import pathlib
import tempfile

from tfislr.errors import ConfigError

TEMP_PREFIX = ".tmp."


def temp_path(path):
    """The temporary sibling `atomic_path` writes for `path` (this process)."""
    path = pathlib.Path(path)
    return path.with_name(f"{TEMP_PREFIX}{os.getpid()}.{path.name}")


@contextlib.contextmanager
def atomic_path(path):
    """Yields a temporary path to write; on success renames it onto `path`.

    The parent folder is created. If the body raises, the temporary file is removed and
    `path` is left as it was.
    """
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, path)


def check_writable_dir(folder, hint=None):
    """Raises `ConfigError` ("<folder>: cannot write here (<reason>)[; <hint>]") unless a
    file can be written into `folder`, which may not exist yet (`atomic_path` creates it).

    The test is a real one, not `os.access` (which root passes for any folder mode):
    an empty temporary file is created and removed in `folder`, or in its nearest existing
    parent when `folder` does not exist yet. Nothing else is created. It fails for a parent
    that is a file ("Not a directory"), a folder without write permission, a read-only
    file system.
    """
    folder = pathlib.Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        handle, probe = tempfile.mkstemp(prefix=TEMP_PREFIX, dir=existing)
        os.close(handle)
        os.unlink(probe)
    except OSError as error:
        reason = error.strerror or str(error)
        if existing != folder:  # name the folder it failed in
            reason = f"{reason}: {existing}"
        raise ConfigError(f"{folder}: cannot write here ({reason})"
                          + (f"; {hint}" if hint else "")) from None


def check_writable_file(path):
    """Raises `ConfigError` unless `path` can be written: not a folder, in a folder
    `check_writable_dir` accepts."""
    path = pathlib.Path(path)
    if path.is_dir():
        raise ConfigError(f"{path}: is a folder, not a file to write")
    check_writable_dir(path.parent)


def write_bytes(path, data):
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return pathlib.Path(path)


def write_text(path, text):
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return pathlib.Path(path)


def write_json(path, value):
    """`value` as indented JSON (a trailing newline), atomically."""
    return write_text(path, json.dumps(value, indent=2) + "\n")


def remove_stale_temps(directory):
    """Deletes the temporary files of writers that were killed; returns how many."""
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        return 0
    stale = [p for p in directory.glob(f"{TEMP_PREFIX}*") if p.is_file()]
    for path in stale:
        path.unlink(missing_ok=True)
    return len(stale)
