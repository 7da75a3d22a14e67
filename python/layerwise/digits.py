"""layerwise.digits -- a second handwritten-digit dataset in MNIST's IDX layout, made from the
8x8 digits scikit-learn ships, so an experiment tuned on MNIST can be checked on other data.

scikit-learn's ``load_digits`` holds 1,797 images of 8x8 pixels with 17 grey levels (the
test half of the UCI optdigits set, written by people other than MNIST's writers). Each
output image takes one source digit, maps it through a random affine transform (rotation,
per-axis scale, shear, shift) into the 20x20 box at the centre of a 28x28 frame, as MNIST's
digits are, and samples it bilinearly. The source digits are split first: the training file
draws only on the first ``1 - test_fraction`` of them and the test file only on the rest,
so test images come from digits the network never saw in any distortion. The result is
written as the four MNIST file names, raw (not gzipped), so every ``--data DIR`` option and
``datasets.load_idx_dataset`` read it as they read MNIST.

    layerwise make-digits --out data/digits28      # 60,000 + 10,000 images, ~10 s
"""
from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

from .atomic import write_atomic
from .datasets import MNIST_FILES, load_idx

__all__ = ["build_digits_idx", "save_idx", "distort", "file_shapes"]

SIDE = 28
BOX = 20  # MNIST's digits are size-normalised into 20x20 and centred in 28x28


def save_idx(path, array) -> Path:
    """Writes a uint8 array as one IDX file (atomically: temp file, fsync, rename)."""
    a = np.ascontiguousarray(array)
    if a.dtype != np.uint8:
        raise TypeError(f"array: expected uint8, got {a.dtype}")
    if not 1 <= a.ndim <= 255:
        raise ValueError(f"array: expected 1 to 255 dimensions, got {a.ndim}")
    header = bytes([0, 0, 0x08, a.ndim]) + b"".join(struct.pack(">I", d) for d in a.shape)
    return write_atomic(path, lambda f: (f.write(header), f.write(a.tobytes())))


def distort(sources, count, rng, *, rotation=12.0, scale=(0.85, 1.1), shear=0.2, shift=2.0):
    """``count`` 28x28 uint8 images, each a random affine view of a random source image.

    sources: (n, h, w) floats in [0, 1]. rotation in degrees, shear as a slope, shift in
    output pixels; every image draws its own parameters. Returns (images, source index)."""
    sources = np.asarray(sources, dtype=np.float64)
    n, h, w = sources.shape
    pick = rng.integers(0, n, count)
    theta = np.deg2rad(rng.uniform(-rotation, rotation, count))
    sx, sy = rng.uniform(*scale, count), rng.uniform(*scale, count)
    sh = rng.uniform(-shear, shear, count)
    tx, ty = rng.uniform(-shift, shift, count), rng.uniform(-shift, shift, count)
    # Output pixel centres relative to the frame centre, in units of the 20-pixel box.
    c = (np.arange(SIDE) + 0.5 - SIDE / 2) / BOX
    gy, gx = np.meshgrid(c, c, indexing="ij")  # (28, 28)
    u = gx[None] - (tx / BOX)[:, None, None]
    v = gy[None] - (ty / BOX)[:, None, None]
    cos, sin = np.cos(theta)[:, None, None], np.sin(theta)[:, None, None]
    # Inverse map: undo the rotation, then the shear, then the scale -> source box coordinates in [-0.5, 0.5].
    ru, rv = cos * u + sin * v, -sin * u + cos * v
    ru = ru - sh[:, None, None] * rv
    su, sv = ru / sx[:, None, None], rv / sy[:, None, None]
    col = (su + 0.5) * w - 0.5  # continuous source pixel coordinates
    row = (sv + 0.5) * h - 0.5
    c0, r0 = np.floor(col).astype(np.int64), np.floor(row).astype(np.int64)
    fc, fr = col - c0, row - r0
    out = np.zeros((count, SIDE, SIDE))
    for dr, wr in ((0, 1 - fr), (1, fr)):
        for dc, wc in ((0, 1 - fc), (1, fc)):
            rr, cc = r0 + dr, c0 + dc
            inside = (rr >= 0) & (rr < h) & (cc >= 0) & (cc < w)
            vals = sources[pick[:, None, None], rr.clip(0, h - 1), cc.clip(0, w - 1)]
            out += np.where(inside, vals, 0.0) * wr * wc
    return np.rint(out.clip(0.0, 1.0) * 255).astype(np.uint8), pick


def build_digits_idx(directory, *, n_train=60000, n_test=10000, seed=0, test_fraction=0.25) -> Path:
    """Builds the dataset into ``directory`` (created if missing) and returns its path.

    Deterministic for a given seed. Needs scikit-learn (the ``rbf`` or ``search`` extra)."""
    for name, v in (("n_train", n_train), ("n_test", n_test), ("seed", seed)):
        if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v < (0 if name == "seed" else 1):
            raise ValueError(f"{name}: expected a {'non-negative' if name == 'seed' else 'positive'} integer, "
                             f"got {v!r}")
    if not (isinstance(test_fraction, float) and 0.0 < test_fraction < 1.0):
        raise ValueError(f"test_fraction: expected a float in (0, 1), got {test_fraction!r}")
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ImportError("build_digits_idx needs scikit-learn: pip install 'layerwise[rbf]'") from None
    digits = load_digits()
    images, labels = digits.images / 16.0, digits.target.astype(np.uint8)
    n_src_train = int(round(len(images) * (1.0 - test_fraction)))
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    parts = ((images[:n_src_train], labels[:n_src_train], n_train, MNIST_FILES[0], MNIST_FILES[1]),
             (images[n_src_train:], labels[n_src_train:], n_test, MNIST_FILES[2], MNIST_FILES[3]))
    for src, lab, count, image_file, label_file in parts:
        chunks_x, chunks_y = [], []
        for start in range(0, count, 2000):  # chunks of ~13 MB per index array: bounded memory
            x, pick = distort(src, min(2000, count - start), rng)
            chunks_x.append(x)
            chunks_y.append(lab[pick])
        save_idx(directory / image_file, np.concatenate(chunks_x))
        save_idx(directory / label_file, np.concatenate(chunks_y))
    return directory


def file_shapes(directory):
    """The shape of each of the four files as it loads back (the CLI prints it after building)."""
    return {name: load_idx(Path(directory) / name).shape for name in MNIST_FILES}
