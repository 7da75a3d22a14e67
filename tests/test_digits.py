"""layerwise.digits: the second IDX digit dataset built from scikit-learn's 8x8 digits."""
import json

import numpy as np
import pytest

pytest.importorskip("sklearn", reason="scikit-learn is in the optional 'rbf' and 'search' extras")

from layerwise import cli, datasets, digits  # noqa: E402


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    d = tmp_path_factory.mktemp("digits28")
    return digits.build_digits_idx(d, n_train=300, n_test=120, seed=5)


def test_files_have_mnist_layout_and_load_as_a_dataset(built):
    shapes = digits.file_shapes(built)
    assert shapes == {datasets.MNIST_FILES[0]: (300, 28, 28), datasets.MNIST_FILES[1]: (300,),
                      datasets.MNIST_FILES[2]: (120, 28, 28), datasets.MNIST_FILES[3]: (120,)}
    d = datasets.load_idx_dataset(built, split=(250, 50))
    assert d.X_train.shape == (250, 784) and d.X_valid.shape == (50, 784) and d.X_test.shape == (120, 784)
    assert d.X_train.min() == 0.0 and d.X_train.max() == 1.0
    # Every class appears, as in the source set (about 180 of each digit).
    assert set(np.unique(d.y_train)) == set(range(10))


def test_same_seed_same_bytes_other_seed_other_images(built, tmp_path):
    again = digits.build_digits_idx(tmp_path / "a", n_train=300, n_test=120, seed=5)
    other = digits.build_digits_idx(tmp_path / "b", n_train=300, n_test=120, seed=6)
    for name in datasets.MNIST_FILES:
        assert (again / name).read_bytes() == (built / name).read_bytes()
    assert (other / datasets.MNIST_FILES[0]).read_bytes() != (built / datasets.MNIST_FILES[0]).read_bytes()


def test_identity_view_is_the_source_upsampled_into_the_centre_box():
    # One source pixel lit: with no distortion it lands in the 20x20 box, scaled 2.5x.
    src = np.zeros((1, 8, 8))
    src[0, 0, 0] = 1.0
    img, pick = digits.distort(src, 1, np.random.default_rng(0), rotation=0.0, scale=(1.0, 1.0), shear=0.0,
                               shift=0.0)
    assert pick.tolist() == [0] and img.shape == (1, 28, 28)
    lit = np.argwhere(img[0] > 0)
    # The box starts at pixel 4 and one source pixel spans 2.5 output pixels; bilinear
    # sampling blurs its edge by half a source pixel, onto pixel 3.
    assert lit.min() >= 3 and lit.max() <= 7
    peak = np.unravel_index(np.argmax(img[0]), img[0].shape)
    assert 4 <= peak[0] <= 6 and 4 <= peak[1] <= 6 and img[0].max() >= 200  # 0.9 x 0.9 of full ink
    full = digits.distort(np.ones((1, 8, 8)), 1, np.random.default_rng(0), rotation=0.0, scale=(1.0, 1.0),
                          shear=0.0, shift=0.0)[0][0]
    assert full[6:22, 6:22].min() == 255 and full[4:24, 4:24].min() >= 100  # edges blurred, inside full
    assert full[:3].max() == 0 and full[25:].max() == 0 and full[:, :3].max() == 0


def test_distortions_move_the_digit_but_keep_its_ink():
    src = np.random.default_rng(1).uniform(0, 1, (5, 8, 8))
    imgs, pick = digits.distort(src, 200, np.random.default_rng(2))
    plain, _ = digits.distort(src, 200, np.random.default_rng(2), rotation=0.0, scale=(1.0, 1.0), shear=0.0,
                              shift=0.0)
    assert not np.array_equal(imgs, plain)
    ink = imgs.reshape(200, -1).sum(1) / np.maximum(plain.reshape(200, -1).sum(1), 1)
    assert 0.6 < np.median(ink) < 1.3  # scale within 0.85-1.1 per axis changes the area moderately


def test_save_idx_round_trips_and_rejects_bad_arrays(tmp_path):
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    digits.save_idx(tmp_path / "a", a)
    assert np.array_equal(datasets.load_idx(tmp_path / "a"), a)
    with pytest.raises(TypeError, match="array"):
        digits.save_idx(tmp_path / "b", a.astype(np.float32))
    with pytest.raises(ValueError, match="n_train"):
        digits.build_digits_idx(tmp_path / "c", n_train=0)
    with pytest.raises(ValueError, match="seed"):
        digits.build_digits_idx(tmp_path / "c", seed=-1)
    assert not (tmp_path / "c").exists()


def test_cli_builds_and_reports_errors_in_one_line(tmp_path, capsys):
    assert cli.main(["make-digits", "--out", str(tmp_path / "d"), "--train", "40", "--test", "10"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["shapes"][datasets.MNIST_FILES[0]] == [40, 28, 28]
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc = cli.main(["make-digits", "--out", str(blocker / "sub")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.startswith("layerwise make-digits: error:") and "\n" not in err
    with pytest.raises(SystemExit) as e:
        cli.main(["make-digits", "--out", str(tmp_path / "e"), "--train", "0"])
    assert e.value.code == 2


def test_bengio2006_smoke_runs_on_the_built_dataset(tmp_path, capsys):
    # bengio2006 takes MNIST's split (the last 10k of 60k training images validate): ~5 s to build.
    built = digits.build_digits_idx(tmp_path / "full", n_train=60000, n_test=1000, seed=0)
    rc = cli.main(["bengio2006", "--preset", "smoke", "--data", str(built), "--rows", "shallow",
                   "--out", str(tmp_path / "run"), "--no-progress", "--no-plots"])
    assert rc == 0
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [r["name"] for r in results["rows"]] == ["shallow"]
    assert results["dataset"]["source"] == str(built)
