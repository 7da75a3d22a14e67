"""layerwise.datasets: the IDX reader on tiny files written here, the MNIST
lookup order, the offline error, and (when LAYERWISE_DATA points at it) the
real MNIST split. Nothing here touches the network: downloads go through a
fake ``_urlopen``."""
import gzip
import hashlib
import io
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from layerwise import datasets
from layerwise.datasets import MNIST_FILES
from conftest import mnist_dir


def idx_bytes(arr, type_code=0x08, magic=None):
    """The IDX encoding of ``arr`` (header + big-endian data)."""
    arr = np.asarray(arr)
    if magic is None:
        magic = bytes([0, 0, type_code, arr.ndim])
    dt = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}[type_code]
    return magic + b"".join(struct.pack(">I", d) for d in arr.shape) + arr.astype(dt).tobytes()


def write(path, data, gz):
    path = Path(str(path) + (".gz" if gz else ""))
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def tiny_set(directory, n_train=12, n_test=5, h=28, w=28, gz=True, seed=0):
    """Write a tiny MNIST-layout dataset; returns the arrays written."""
    rng = np.random.default_rng(seed)
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_x": rng.integers(0, 256, (n_train, h, w), dtype=np.uint8),
        "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
        "test_x": rng.integers(0, 256, (n_test, h, w), dtype=np.uint8),
        "test_y": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    for name, key in zip(MNIST_FILES, ("train_x", "train_y", "test_x", "test_y")):
        write(directory / name, idx_bytes(arrays[key]), gz)
    return arrays


# ---- load_idx ------------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_roundtrip(tmp_path, gz):
    imgs = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    p = write(tmp_path / "imgs", idx_bytes(imgs), gz)
    out = datasets.load_idx(p)
    assert out.dtype == np.uint8 and out.shape == (3, 4, 5)
    np.testing.assert_array_equal(out, imgs)
    out[0, 0, 0] = 7  # a writable copy, not a view of immutable bytes


def test_load_idx_detects_gzip_by_content_not_name(tmp_path):
    labels = np.array([1, 2, 3], np.uint8)
    raw_named_gz = tmp_path / "labels.gz"
    raw_named_gz.write_bytes(idx_bytes(labels))
    gz_named_raw = tmp_path / "labels"
    gz_named_raw.write_bytes(gzip.compress(idx_bytes(labels)))
    np.testing.assert_array_equal(datasets.load_idx(raw_named_gz), labels)
    np.testing.assert_array_equal(datasets.load_idx(gz_named_raw), labels)


def test_load_idx_other_types_big_endian(tmp_path):
    a = np.array([[1.5, -2.0], [3.25, 1e6]], np.float32)
    p = write(tmp_path / "f", idx_bytes(a, 0x0D), False)
    out = datasets.load_idx(p)
    assert out.dtype == np.float32 and out.dtype.isnative
    np.testing.assert_array_equal(out, a)
    b = np.array([-5, 70000, 3], np.int32)
    np.testing.assert_array_equal(datasets.load_idx(write(tmp_path / "i", idx_bytes(b, 0x0C), True)), b)


@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_truncated_data(tmp_path, gz):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    p = write(tmp_path / "t", data[:-10], gz)
    with pytest.raises(ValueError, match=r"truncated.*\(4, 28, 28\)") as e:
        datasets.load_idx(p)
    assert str(p) in str(e.value)


def test_load_idx_truncated_header_and_empty(tmp_path):
    data = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    p = write(tmp_path / "h", data[:9], False)
    with pytest.raises(ValueError, match="truncated IDX header"):
        datasets.load_idx(p)
    p = write(tmp_path / "e", b"", False)
    with pytest.raises(ValueError, match="truncated"):
        datasets.load_idx(p)


def test_load_idx_truncated_gzip_stream(tmp_path):
    blob = gzip.compress(idx_bytes(np.arange(1000, dtype=np.uint8) % 251))
    p = tmp_path / "cut.gz"
    p.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ValueError, match="gzip") as e:
        datasets.load_idx(p)
    assert str(p) in str(e.value)


def test_load_idx_trailing_bytes(tmp_path):
    p = write(tmp_path / "x", idx_bytes(np.zeros(5, np.uint8)) + b"\0\0", False)
    with pytest.raises(ValueError, match="2 bytes after"):
        datasets.load_idx(p)


@pytest.mark.parametrize(
    "magic, match",
    [
        (b"\x01\x00\x08\x01", "not an IDX file"),
        (b"PK\x03\x04", "not an IDX file"),
        (b"\x00\x00\x07\x01", "unknown IDX type code 0x07"),
        (b"\x00\x00\x08\x00", "0 dimensions"),
    ],
)
def test_load_idx_wrong_magic(tmp_path, magic, match):
    p = write(tmp_path / "m", idx_bytes(np.zeros(5, np.uint8), magic=magic), False)
    with pytest.raises(ValueError, match=match) as e:
        datasets.load_idx(p)
    assert str(p) in str(e.value)


def test_load_idx_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        datasets.load_idx(tmp_path / "nope")


# ---- load_idx_dataset ------------------------------------------------------------
@pytest.mark.parametrize("gz", [False, True])
def test_load_idx_dataset_split_and_scaling(tmp_path, gz):
    a = tiny_set(tmp_path, n_train=12, n_test=5, gz=gz)
    d = datasets.load_idx_dataset(tmp_path, split=(8, 3))
    assert d.X_train.shape == (8, 784) and d.X_valid.shape == (3, 784) and d.X_test.shape == (5, 784)
    assert d.X_train.dtype == np.float32 and d.y_train.dtype == np.int64
    # first n_train train, LAST n_valid validate (example 8 is in neither).
    np.testing.assert_allclose(d.X_train, a["train_x"][:8].reshape(8, -1) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(d.X_valid, a["train_x"][9:].reshape(3, -1) / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(d.y_valid, a["train_y"][9:])
    np.testing.assert_array_equal(d.y_test, a["test_y"])
    assert 0.0 <= d.X_train.min() and d.X_train.max() <= 1.0
    assert d["X_test"] is d.X_test and set(d.keys()) == {"X_train", "y_train", "X_valid", "y_valid", "X_test", "y_test"}
    assert d.source == str(tmp_path)


def test_load_idx_dataset_dtypes(tmp_path):
    a = tiny_set(tmp_path)
    d = datasets.load_idx_dataset(tmp_path, split=(10, 2), dtype="uint8")
    np.testing.assert_array_equal(d.X_train, a["train_x"][:10].reshape(10, -1))
    d = datasets.load_idx_dataset(tmp_path, split=(10, 2), dtype=np.float64)
    assert d.X_train.dtype == np.float64
    with pytest.raises(ValueError, match="dtype"):
        datasets.load_idx_dataset(tmp_path, split=(10, 2), dtype="int32")


def test_load_idx_dataset_bad_split(tmp_path):
    tiny_set(tmp_path, n_train=12)
    with pytest.raises(ValueError, match="split"):
        datasets.load_idx_dataset(tmp_path, split=(10, 5))


def test_load_idx_dataset_count_mismatch(tmp_path):
    tiny_set(tmp_path, n_train=12)
    write(tmp_path / MNIST_FILES[1], idx_bytes(np.zeros(11, np.uint8)), True)
    with pytest.raises(ValueError, match="12 images but .* 11 labels") as e:
        datasets.load_idx_dataset(tmp_path, split=(8, 2))
    assert MNIST_FILES[0] in str(e.value) and MNIST_FILES[1] in str(e.value)


def test_load_idx_dataset_wrong_dims(tmp_path):
    tiny_set(tmp_path)
    # labels written as a 2-D file (magic 0x00000802): not a labels file.
    write(tmp_path / MNIST_FILES[3], idx_bytes(np.zeros((5, 1), np.uint8)), True)
    with pytest.raises(ValueError, match=r"labels file \(magic 0x00000801") as e:
        datasets.load_idx_dataset(tmp_path, split=(8, 2))
    assert MNIST_FILES[3] in str(e.value)
    # images of a different type (int32, 0x0C) are not MNIST images either.
    tiny_set(tmp_path)
    write(tmp_path / MNIST_FILES[2], idx_bytes(np.zeros((5, 28, 28), np.int32), 0x0C), True)
    with pytest.raises(ValueError, match=r"images file \(magic 0x00000803"):
        datasets.load_idx_dataset(tmp_path, split=(8, 2))


def test_load_idx_dataset_image_size_mismatch(tmp_path):
    tiny_set(tmp_path)
    write(tmp_path / MNIST_FILES[2], idx_bytes(np.zeros((5, 27, 28), np.uint8)), True)
    with pytest.raises(ValueError, match=r"\(28, 28\).*\(27, 28\)"):
        datasets.load_idx_dataset(tmp_path, split=(8, 2))


def test_load_idx_dataset_other_image_sizes(tmp_path):
    tiny_set(tmp_path, h=8, w=6)
    d = datasets.load_idx_dataset(tmp_path, split=(10, 2))
    assert d.X_train.shape == (10, 48) and d.image_shape == (8, 6)


def test_load_idx_dataset_missing(tmp_path):
    tiny_set(tmp_path)
    (tmp_path / (MNIST_FILES[2] + ".gz")).unlink()
    with pytest.raises(FileNotFoundError, match=MNIST_FILES[2]):
        datasets.load_idx_dataset(tmp_path)


# ---- lookup order ------------------------------------------------------------------
@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No LAYERWISE_DATA, an empty cache under tmp_path, and a network that fails loudly."""
    monkeypatch.delenv("LAYERWISE_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    calls = []

    def offline(url, timeout):
        calls.append(url)
        raise urllib.error.URLError("network is unreachable (test)")

    monkeypatch.setattr(datasets, "_urlopen", offline)
    return calls


def test_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert datasets.cache_dir() == tmp_path / "layerwise" / "mnist"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.cache_dir() == tmp_path / "home" / ".cache" / "layerwise" / "mnist"


def test_lookup_order(tmp_path, monkeypatch, isolated):
    # Three distinct datasets (different seeds) so the one loaded is identifiable.
    arg = tmp_path / "arg"
    env = tmp_path / "env"
    cache = datasets.cache_dir()
    ya = tiny_set(arg, seed=1)["test_y"]
    ye = tiny_set(env / "mnist", seed=2)["test_y"]  # parent-with-mnist/ form
    yc = tiny_set(cache, seed=3)["test_y"]
    split = (8, 2)

    np.testing.assert_array_equal(datasets.mnist(arg, split=split).y_test, ya)
    monkeypatch.setenv("LAYERWISE_DATA", str(env))
    np.testing.assert_array_equal(datasets.mnist(arg, split=split).y_test, ya)  # argument wins
    np.testing.assert_array_equal(datasets.mnist(split=split).y_test, ye)  # then the env var
    assert datasets.find_mnist() == env / "mnist"
    monkeypatch.setenv("LAYERWISE_DATA", str(env / "mnist"))  # the directory itself also works
    np.testing.assert_array_equal(datasets.mnist(split=split).y_test, ye)
    monkeypatch.setenv("LAYERWISE_DATA", str(tmp_path / "empty"))
    np.testing.assert_array_equal(datasets.mnist(split=split).y_test, yc)  # then the cache
    # an argument without the files falls through to the next places
    np.testing.assert_array_equal(datasets.mnist(tmp_path / "nothing", split=split).y_test, yc)
    assert isolated == []  # never tried the network


def test_offline_error_message(tmp_path, isolated):
    with pytest.raises(datasets.DatasetNotFoundError) as e:
        datasets.mnist(progress=False)
    msg = str(e.value)
    for name in MNIST_FILES:
        assert name + ".gz" in msg
    assert str(datasets.cache_dir()) in msg
    assert "LAYERWISE_DATA" in msg and "could not be downloaded" in msg
    assert "network is unreachable" in msg
    assert len(isolated) >= 1 and all(u.startswith(("http://", "https://")) for u in isolated)
    assert isinstance(e.value, FileNotFoundError)
    # no half-written files are left behind
    assert not list(datasets.cache_dir().glob("*.part*"))


def test_no_download_error(tmp_path, isolated):
    with pytest.raises(datasets.DatasetNotFoundError, match="download=False"):
        datasets.mnist(tmp_path / "somewhere", download=False)
    assert isolated == []


class _FakeResponse(io.BytesIO):
    def __init__(self, data):
        super().__init__(data)
        self.headers = {"Content-Length": str(len(data))}


def test_download_verifies_md5(tmp_path, monkeypatch, isolated):
    """The download path, with a fake network: a mirror serving wrong bytes is
    rejected by MD5, the next mirror's correct bytes are kept."""
    src = tmp_path / "src"
    tiny_set(src, seed=5)
    blobs = {n + ".gz": (src / (n + ".gz")).read_bytes() for n in MNIST_FILES}
    monkeypatch.setattr(datasets, "MNIST_MD5", {k: hashlib.md5(v).hexdigest() for k, v in blobs.items()})
    served = []

    def fake(url, timeout):
        served.append(url)
        mirror, fname = url.rsplit("/", 1)
        return _FakeResponse(b"garbage" if "bad" in mirror else blobs[fname])

    monkeypatch.setattr(datasets, "_urlopen", fake)
    target = tmp_path / "dl"
    out = datasets.download_mnist(target, mirrors=("https://bad.example/", "https://good.example/"), progress=False)
    assert out == target
    for fname, blob in blobs.items():
        assert (target / fname).read_bytes() == blob
    assert sum("bad" in u for u in served) == 4 and sum("good" in u for u in served) == 4
    assert not list(target.glob("*.part*"))
    # already-present files with the right MD5 are not fetched again
    served.clear()
    datasets.download_mnist(target, mirrors=("https://good.example/",), progress=False)
    assert served == []


def test_download_all_mirrors_bad(tmp_path, monkeypatch, isolated):
    monkeypatch.setattr(datasets, "_urlopen", lambda url, timeout: _FakeResponse(b"not mnist"))
    with pytest.raises(datasets.DatasetNotFoundError, match="MD5 mismatch"):
        datasets.download_mnist(tmp_path / "dl", progress=False)
    assert not list((tmp_path / "dl").iterdir())


# ---- the real MNIST ------------------------------------------------------------------
_real_mnist_dir = mnist_dir  # conftest: $LAYERWISE_DATA or its mnist/, when all four files are there


@pytest.mark.skipif(_real_mnist_dir() is None, reason="real MNIST not available: set LAYERWISE_DATA to its directory")
def test_real_mnist():
    d = datasets.mnist(_real_mnist_dir(), download=False)
    assert d.X_train.shape == (50000, 784) and d.X_valid.shape == (10000, 784) and d.X_test.shape == (10000, 784)
    assert d.y_train.shape == (50000,) and d.y_valid.shape == (10000,) and d.y_test.shape == (10000,)
    for x in (d.X_train, d.X_valid, d.X_test):
        assert x.dtype == np.float32 and x.flags.c_contiguous
        assert x.min() == 0.0 and x.max() == 1.0
    # The published label counts of the MNIST files.
    np.testing.assert_array_equal(
        np.bincount(d.y_test, minlength=10), [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    )
    np.testing.assert_array_equal(
        np.bincount(np.concatenate([d.y_train, d.y_valid]), minlength=10),
        [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
    )
    assert d.y_train[:5].tolist() == [5, 0, 4, 1, 9]  # the famous first training digits
    full = datasets.mnist(_real_mnist_dir(), split=(60000, 0), dtype="uint8", download=False)
    assert full.X_train.shape == (60000, 784) and full.X_valid.shape == (0, 784)
    np.testing.assert_array_equal(full.X_train[50000:], np.round(d.X_valid * 255).astype(np.uint8))
