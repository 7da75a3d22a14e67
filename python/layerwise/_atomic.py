"""Atomic file replacement: a reader sees the old file or the complete new one, never a mix.

The new content goes to a temporary file in the target's directory (so the final
rename stays on one file system), is flushed and fsynced, then renamed over the
target with os.replace; the directory is fsynced so the rename itself survives a
crash. On any failure the temporary file is removed and the target is untouched."""
from __future__ import annotations

import os
import tempfile


def write_atomically(path, write):
    """Creates or replaces ``path`` with what ``write(temp_path)`` writes to ``temp_path``.

    ``write`` receives the path of an empty temporary file next to ``path`` and must
    leave the complete content there (it may reopen the file). Returns ``path``."""
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory)
    try:
        os.close(fd)
        write(tmp)
        os.chmod(tmp, _new_file_mode())  # mkstemp (or ``write``) made it 0600; give it the usual umask mode
        with open(tmp, "rb+") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)
    return path


def _new_file_mode():
    umask = os.umask(0o022)  # reading the umask means setting it: put it straight back
    os.umask(umask)
    return 0o666 & ~umask


def _fsync_directory(directory):
    """Makes a rename in ``directory`` durable (a no-op where directories cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
