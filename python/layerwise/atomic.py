"""layerwise.atomic -- files that are either the old version or the new one, never half written.

A reader (or a resumed run) may look at a file at any moment, and a process may be
killed at any moment: the new contents go to a temporary file in the same directory
(so the rename stays on one file system), are fsynced, and then replace the target
with ``os.replace``, which is atomic on POSIX and Windows; the directory is fsynced
so the rename itself survives a crash. On any failure the temporary file is removed
and the target is untouched.
"""
from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

__all__ = ["write_atomic", "write_atomic_path", "write_json_atomic"]


def write_atomic_path(path, write: Callable[[str], None]) -> Path:
    """Creates or replaces ``path`` with what ``write(temp_path)`` leaves in ``temp_path``, an
    empty temporary file next to ``path`` (for writers that take a file name, such as
    safetensors or onnx). Returns ``path`` as a Path."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.close(fd)
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes it 0600; a plain open() would honour the umask
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return path


def write_atomic(path, write: Callable[[BinaryIO], None]) -> Path:
    """Calls ``write(f)`` on a temporary binary file next to ``path`` and renames it onto
    ``path`` (see ``write_atomic_path``)."""
    def fill(tmp):
        with open(tmp, "wb") as f:
            write(f)

    return write_atomic_path(path, fill)


def _umask() -> int:
    mask = os.umask(0o022)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    """Makes the rename itself durable (a no-op where directories cannot be opened)."""
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


def write_json_atomic(path, obj, *, indent=1) -> Path:
    """``json.dump(obj)`` to ``path`` atomically (see ``write_atomic``)."""
    text = json.dumps(obj, indent=indent).encode()
    return write_atomic(path, lambda f: f.write(text))
