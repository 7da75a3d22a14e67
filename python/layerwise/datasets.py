"""layerwise.datasets -- MNIST and other IDX-format datasets, as NumPy arrays.

    from layerwise import datasets
    d = datasets.mnist()              # X_train (50000, 784) float32 in [0, 1], ...
    d = datasets.load_idx_dataset("~/data/fashion-mnist")   # same layout, any path

The IDX format (LeCun's MNIST distribution): a 4-byte big-endian magic number
``00 00 TT NN`` -- two zero bytes, a type code ``TT`` (0x08 = unsigned byte) and
the number of dimensions ``NN`` -- then ``NN`` big-endian uint32 dimension
sizes, then the data, row-major, big-endian. MNIST images are 0x00000803
(uint8, 3-D: count x 28 x 28), labels 0x00000801 (uint8, 1-D: count).

Every file is checked completely -- magic, type, dimensions, and that the file
holds exactly the bytes its header promises -- because a truncated download
otherwise turns into silently wrong training data. Problems raise ``ValueError``
naming the file.

``mnist()`` looks for the four canonical files in, in order: the ``root``
argument, ``$LAYERWISE_DATA`` (the directory itself, or its ``mnist/``
subdirectory), the per-user cache (``$XDG_CACHE_HOME/layerwise/mnist``, else
``~/.cache/layerwise/mnist``), and finally downloads them from a public mirror
into the cache (or into ``root`` when given), verifying their MD5 sums.
"""
from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.error
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "Dataset",
    "DatasetNotFoundError",
    "load_idx",
    "load_idx_dataset",
    "mnist",
    "find_mnist",
    "download_mnist",
    "cache_dir",
    "MNIST_FILES",
    "MNIST_MD5",
    "MNIST_MIRRORS",
]

PathLike = Union[str, "os.PathLike[str]"]

# The four canonical files, in the order (train images, train labels,
# test images, test labels). Fashion-MNIST and KMNIST use the same names.
MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)

# MD5 sums of the canonical gzip files (as published with the original
# distribution and mirrored verbatim). Embedded so that a download can be
# verified without trusting the mirror.
MNIST_MD5 = {
    "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
    "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
    "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
    "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
}

# Public mirrors holding byte-identical copies of the four .gz files. The
# original host (yann.lecun.com) now often refuses or rate-limits automated
# downloads, so it is tried last.
MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)

# IDX type code -> big-endian NumPy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


class DatasetNotFoundError(FileNotFoundError):
    """The dataset files are in none of the searched places and could not be downloaded."""


# ---- IDX ---------------------------------------------------------------------
def _read_bytes(path: Path) -> bytes:
    """The file's contents, gunzipped when it starts with the gzip magic.

    Detection is by content, not by name, so a raw file called ``*.gz`` (some
    browsers decompress on download but keep the name) still loads.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] != _GZIP_MAGIC:
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as e:  # truncated stream / bad CRC / bad data
        raise ValueError(f"{path}: corrupt or truncated gzip data ({e})") from None


def load_idx(path: PathLike) -> np.ndarray:
    """Read one IDX file (gzip-compressed or raw) into a NumPy array.

    Returns an array of the file's shape and type in native byte order
    (``uint8`` for MNIST). Raises ``ValueError`` naming the file when the magic
    number, type code or dimensions are invalid, or when the file is shorter or
    longer than its header says; ``FileNotFoundError`` when it does not exist.
    """
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(data)} bytes, too short for the 4-byte magic number)")
    if data[0] != 0 or data[1] != 0:
        raise ValueError(
            f"{path}: not an IDX file (magic number 0x{data[:4].hex()} does not start with two zero bytes)"
        )
    type_code, ndim = data[2], data[3]
    if type_code not in _IDX_DTYPES:
        raise ValueError(f"{path}: unknown IDX type code 0x{type_code:02x} in magic number 0x{data[:4].hex()}")
    if ndim == 0:
        raise ValueError(f"{path}: IDX magic number 0x{data[:4].hex()} declares 0 dimensions")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(data)} bytes, need {header} for {ndim} dimensions)")
    shape = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[type_code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) < expected:
        raise ValueError(
            f"{path}: truncated IDX file: header declares shape {shape} ({expected} bytes) "
            f"but the file holds {len(data)} bytes"
        )
    if len(data) > expected:
        raise ValueError(
            f"{path}: corrupt IDX file: {len(data) - expected} bytes after the data of shape {shape}"
        )
    arr = np.frombuffer(data, dtype=dtype, offset=header).reshape(shape)
    # Native byte order and a writable copy: frombuffer views the immutable bytes.
    return arr.astype(dtype.newbyteorder("="), copy=True)


def _load_checked(path: Path, kind: str) -> np.ndarray:
    """An MNIST-layout images (3-D uint8) or labels (1-D uint8) file."""
    arr = load_idx(path)
    want_ndim = 3 if kind == "images" else 1
    if arr.dtype != np.uint8 or arr.ndim != want_ndim:
        magic = 0x800 + want_ndim
        raise ValueError(
            f"{path}: expected an IDX {kind} file (magic 0x{magic:08x}: unsigned bytes, {want_ndim}-D), "
            f"got {arr.dtype} with shape {arr.shape}"
        )
    return arr


def _find_file(directory: Path, name: str) -> Optional[Path]:
    """``name.gz`` or ``name`` in ``directory`` (gzip preferred: it is what mirrors serve)."""
    for candidate in (directory / (name + ".gz"), directory / name):
        if candidate.is_file():
            return candidate
    return None


def _has_files(directory: Path) -> bool:
    return all(_find_file(directory, n) is not None for n in MNIST_FILES)


# ---- datasets ----------------------------------------------------------------
@dataclass
class Dataset:
    """A train / validation / test split of an image-classification dataset.

    Images are flattened to rows (``X_*``: (n, height*width)), labels are
    ``int64`` vectors (``y_*``). Also indexable like a dict: ``d["X_train"]``.
    """

    X_train: np.ndarray
    y_train: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    name: str = "mnist"
    source: str = ""
    image_shape: Tuple[int, int] = (28, 28)
    num_classes: int = 10
    _keys: Tuple[str, ...] = field(default=("X_train", "y_train", "X_valid", "y_valid", "X_test", "y_test"), repr=False)

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._keys:
            raise KeyError(key)
        return getattr(self, key)

    def keys(self):
        return list(self._keys)

    def __iter__(self):
        return iter(self._keys)

    def __len__(self):
        return len(self._keys)

    def __repr__(self) -> str:
        sizes = ", ".join(f"{k}={getattr(self, k).shape}" for k in self._keys if k.startswith("X"))
        return f"Dataset({self.name!r}, {sizes}, dtype={self.X_train.dtype}, source={self.source!r})"


def _convert(images: np.ndarray, dtype) -> np.ndarray:
    flat = images.reshape(images.shape[0], int(np.prod(images.shape[1:])))
    dt = np.dtype(dtype)
    if dt == np.uint8:
        return np.ascontiguousarray(flat)
    if dt.kind != "f":
        raise ValueError(f"dtype must be a float type or uint8, got {dt}")
    # Scale by 1/255 exactly as the paper's setup: pixel intensities in [0, 1].
    out = flat.astype(dt)
    out *= dt.type(1.0 / 255.0)
    return out


def load_idx_dataset(
    directory: PathLike,
    *,
    split: Tuple[int, int] = (50000, 10000),
    dtype="float32",
    name: Optional[str] = None,
) -> Dataset:
    """Load a dataset stored as the four MNIST-named IDX files in ``directory``.

    Works for MNIST, Fashion-MNIST, KMNIST and anything else in that layout
    (each file either ``.gz`` or raw). ``split=(n_train, n_valid)`` cuts the
    training file: the first ``n_train`` examples train, the LAST ``n_valid``
    validate (the standard 50k/10k MNIST split; overlapping is an error). The
    test file is returned whole. ``dtype`` float types scale pixels to [0, 1];
    ``"uint8"`` keeps raw bytes.
    """
    directory = Path(directory).expanduser()
    paths = []
    missing = []
    for n in MNIST_FILES:
        p = _find_file(directory, n)
        if p is None:
            missing.append(n + "[.gz]")
        paths.append(p)
    if missing:
        raise FileNotFoundError(f"{directory}: missing {', '.join(missing)}")
    tr_x = _load_checked(paths[0], "images")
    tr_y = _load_checked(paths[1], "labels")
    te_x = _load_checked(paths[2], "images")
    te_y = _load_checked(paths[3], "labels")
    for xp, x, yp, y in ((paths[0], tr_x, paths[1], tr_y), (paths[2], te_x, paths[3], te_y)):
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{xp} holds {x.shape[0]} images but {yp} holds {y.shape[0]} labels")
    if tr_x.shape[1:] != te_x.shape[1:]:
        raise ValueError(f"{paths[0]} has images of {tr_x.shape[1:]} but {paths[2]} of {te_x.shape[1:]}")

    n_train, n_valid = (int(s) for s in split)
    total = tr_x.shape[0]
    if n_train < 0 or n_valid < 0 or n_train + n_valid > total:
        raise ValueError(f"split={tuple(split)}: needs n_train + n_valid <= {total} (the training file's size)")
    valid = slice(total - n_valid, total)
    num_classes = int(max(tr_y.max(initial=0), te_y.max(initial=0))) + 1
    return Dataset(
        X_train=_convert(tr_x[:n_train], dtype),
        y_train=tr_y[:n_train].astype(np.int64),
        X_valid=_convert(tr_x[valid], dtype),
        y_valid=tr_y[valid].astype(np.int64),
        X_test=_convert(te_x, dtype),
        y_test=te_y.astype(np.int64),
        name=name or directory.name,
        source=str(directory),
        image_shape=tuple(int(s) for s in tr_x.shape[1:]),
        num_classes=num_classes,
    )


# ---- MNIST lookup and download -----------------------------------------------
def cache_dir() -> Path:
    """The per-user cache for MNIST: ``$XDG_CACHE_HOME/layerwise/mnist`` or ``~/.cache/layerwise/mnist``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "layerwise" / "mnist"


def _candidates(root: Optional[PathLike]):
    """(description, directory) pairs in lookup order."""
    out = []
    if root is not None:
        r = Path(root).expanduser()
        out += [("root argument", r), ("root argument", r / "mnist")]
    env = os.environ.get("LAYERWISE_DATA")
    if env:
        e = Path(env).expanduser()
        out += [("$LAYERWISE_DATA", e), ("$LAYERWISE_DATA", e / "mnist")]
    out.append(("cache", cache_dir()))
    return out


def find_mnist(root: Optional[PathLike] = None) -> Optional[Path]:
    """The first directory in the lookup order holding the four MNIST files, or None."""
    for _, d in _candidates(root):
        if d.is_dir() and _has_files(d):
            return d
    return None


def _md5(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _urlopen(url: str, timeout: float):
    """Indirection so tests can replace the network with a fake (they never touch it)."""
    import urllib.request  # only when downloading: keeps `import layerwise` light

    return urllib.request.urlopen(url, timeout=timeout)


def _fetch(url: str, dest: Path, progress: Optional[bool], timeout: float) -> None:
    """Stream ``url`` into ``dest`` with a tqdm progress bar."""
    from tqdm.auto import tqdm

    with _urlopen(url, timeout) as resp:
        total = resp.headers.get("Content-Length") if getattr(resp, "headers", None) else None
        with open(dest, "wb") as f, tqdm(
            total=int(total) if total else None,
            unit="B",
            unit_scale=True,
            desc=dest.name.split(".part")[0],
            disable=None if progress is None else not progress,  # None: only on a terminal
            leave=False,
        ) as bar:
            for chunk in iter(lambda: resp.read(1 << 16), b""):
                f.write(chunk)
                bar.update(len(chunk))


def _offline_message(directory: Path, errors: Sequence[str], root: Optional[PathLike]) -> str:
    searched = "\n".join(f"  - {d}  ({why})" for why, d in _candidates(root))
    files = "\n".join(f"  {n}.gz" for n in MNIST_FILES)
    msg = (
        "MNIST not found, and it could not be downloaded.\n"
        f"Searched:\n{searched}\n"
        f"Put these four files (gzip as distributed, or gunzipped without the .gz):\n{files}\n"
        f"into {directory}, or into a directory named by the LAYERWISE_DATA environment variable "
        "(or its mnist/ subdirectory), or pass that directory as root= / --data."
    )
    if errors:
        msg += "\nDownload errors:\n" + "\n".join(f"  {e}" for e in errors)
    return msg


def download_mnist(
    directory: Optional[PathLike] = None,
    *,
    mirrors: Sequence[str] = MNIST_MIRRORS,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download the four MNIST .gz files into ``directory`` (default: the cache).

    Each file is tried on every mirror in turn, written to a temporary name,
    MD5-verified against the embedded canonical sums, and only then renamed into
    place -- an interrupted or corrupted download never leaves a file that later
    loads as wrong data. Files already present with the right MD5 are kept.
    Raises ``DatasetNotFoundError`` (with instructions) when a file cannot be
    obtained.
    """
    directory = Path(directory).expanduser() if directory is not None else cache_dir()
    errors = []
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DatasetNotFoundError(_offline_message(directory, [f"cannot create {directory}: {e}"], None)) from None
    for fname, md5 in MNIST_MD5.items():
        dest = directory / fname
        if dest.is_file() and _md5(dest) == md5:
            continue
        ok = False
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + fname
            fd, tmp = tempfile.mkstemp(prefix=fname + ".part", dir=directory)
            os.close(fd)
            tmp = Path(tmp)
            try:
                _fetch(url, tmp, progress, timeout)
                got = _md5(tmp)
                if got != md5:
                    errors.append(f"{url}: MD5 mismatch (got {got}, expected {md5})")
                    continue
                os.replace(tmp, dest)
                ok = True
                break
            except (urllib.error.URLError, OSError, ValueError) as e:
                errors.append(f"{url}: {e}")
            finally:
                if tmp.exists():
                    tmp.unlink()
        if not ok:
            raise DatasetNotFoundError(_offline_message(directory, errors, None))
    return directory


def mnist(
    root: Optional[PathLike] = None,
    *,
    split: Tuple[int, int] = (50000, 10000),
    dtype="float32",
    download: bool = True,
    progress: bool = True,
) -> Dataset:
    """MNIST as the standard 50k train / 10k validation / 10k test split.

    Returns a :class:`Dataset` with ``X_train`` (50000, 784), ``X_valid``
    (10000, 784), ``X_test`` (10000, 784) -- ``dtype`` (float32) pixels in
    [0, 1] -- and ``int64`` labels ``y_*``. The validation set is the last 10k
    of the 60k training file, as in Bengio et al. (2006) and most of the
    literature; ``split=(n_train, n_valid)`` changes the sizes.

    Lookup order: ``root``; ``$LAYERWISE_DATA`` (itself or its ``mnist/``);
    the per-user cache (:func:`cache_dir`); then, if ``download``, a download
    from a public mirror into ``root`` (when given) or the cache, MD5-verified.
    Raises :class:`DatasetNotFoundError` saying which four files to put where
    when none of this works (e.g. offline).
    """
    found = find_mnist(root)
    if found is None:
        target = Path(root).expanduser() if root is not None else cache_dir()
        if not download:
            raise DatasetNotFoundError(_offline_message(target, ["download=False"], root))
        try:
            found = download_mnist(target, progress=progress)
        except DatasetNotFoundError as e:
            # Re-raise with the full search list (download_mnist alone does not know root/env).
            errs = str(e).split("Download errors:\n", 1)
            errors = errs[1].splitlines() if len(errs) == 2 else []
            raise DatasetNotFoundError(_offline_message(target, [x.strip() for x in errors], root)) from None
    return load_idx_dataset(found, split=split, dtype=dtype, name="mnist")

