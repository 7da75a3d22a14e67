"""layerwise.sklearn: scikit-learn's own estimator checks, plus behaviour those checks do not pin down."""
import pickle

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn", reason="scikit-learn is in the optional 'search' extra")

from sklearn.base import clone  # noqa: E402
from sklearn.datasets import make_blobs, make_regression  # noqa: E402
from sklearn.model_selection import GridSearchCV, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

from layerwise import nn  # noqa: E402
from layerwise.sklearn import MLPClassifier, MLPRegressor, PretrainedMLPClassifier, RBMTransformer  # noqa: E402

# Small, fast instances: the checks fit dozens of times on a few hundred rows.
CHECKED = [
    MLPClassifier(hidden_layer_sizes=(8,), max_iter=10, batch_size=16),
    PretrainedMLPClassifier(hidden_layer_sizes=(8,), pretraining="supervised", pretrain_epochs=2, max_iter=10,
                            batch_size=16),
    PretrainedMLPClassifier(hidden_layer_sizes=(8,), pretraining="autoencoder", pretrain_epochs=2, max_iter=10,
                            batch_size=16),
    PretrainedMLPClassifier(hidden_layer_sizes=(8,), pretraining="rbm", pretrain_epochs=2, max_iter=10,
                            batch_size=16),
    MLPRegressor(hidden_layer_sizes=(8,), max_iter=25, batch_size=16),
    RBMTransformer(hidden_layer_sizes=(6, 4), n_iter=2),
]

# Every check passes; no expected failures are listed.
EXPECTED_FAILURES = {}


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda est: EXPECTED_FAILURES.get(type(est).__name__, {}))
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


def _binary(n=300, d=20, seed=0):
    """Three classes of noisy binary prototypes: data in {0, 1}, as RBMs and autoencoders model."""
    rng = np.random.default_rng(seed)
    prototypes = rng.random((3, d)) < 0.5
    y = rng.integers(0, 3, n)
    return (prototypes[y] ^ (rng.random((n, d)) < 0.1)).astype(np.float64), y


def _blobs(n=300, seed=0):
    X, y = make_blobs(n_samples=n, centers=3, n_features=5, random_state=seed)
    return StandardScaler().fit_transform(X), y


def test_string_labels_round_trip_and_proba_columns_follow_classes():
    X, y = _blobs()
    labels = np.array(["cat", "dog", "emu"])[y]
    clf = MLPClassifier(hidden_layer_sizes=(10,), max_iter=30, random_state=0).fit(X, labels)
    assert list(clf.classes_) == ["cat", "dog", "emu"]
    pred = clf.predict(X)
    assert set(pred) <= set(clf.classes_)
    assert np.mean(pred == labels) > 0.95
    proba = clf.predict_proba(X)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], pred)


def test_random_state_makes_fits_identical_and_pickle_keeps_predictions():
    X, y = _blobs()
    a = MLPClassifier(hidden_layer_sizes=(7,), max_iter=5, random_state=3).fit(X, y)
    b = clone(a).fit(X, y)
    np.testing.assert_array_equal(a.predict_proba(X), b.predict_proba(X))
    c = pickle.loads(pickle.dumps(a))
    np.testing.assert_array_equal(a.predict_proba(X), c.predict_proba(X))
    assert a.n_parameters_ == 5 * 7 + 7 + 7 * 3 + 3


def test_warm_start_continues_and_cold_start_restarts():
    X, y = _blobs()
    warm = MLPClassifier(hidden_layer_sizes=(6,), max_iter=3, warm_start=True, random_state=0).fit(X, y)
    net = warm.net_
    warm.fit(X, y)
    assert warm.net_ is net and warm.n_iter_ == 6 and len(warm.loss_curve_) == 6
    cold = MLPClassifier(hidden_layer_sizes=(6,), max_iter=3, random_state=0).fit(X, y)
    net = cold.net_
    cold.fit(X, y)
    assert cold.net_ is not net and cold.n_iter_ == 3
    # Continuing lowers the training loss below what three epochs reach.
    assert warm.loss_curve_[-1] < cold.loss_curve_[-1]


def test_partial_fit_needs_classes_first_and_learns():
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(6,), random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    # The first batch holds only two of the three classes: classes= makes room for the third.
    first = y != 2
    clf.partial_fit(X[first], y[first], classes=[0, 1, 2])
    for _ in range(10):
        clf.partial_fit(X, y)
    assert clf.n_iter_ == 11 and clf.predict_proba(X).shape == (300, 3)
    assert clf.score(X, y) > 0.9
    with pytest.raises(ValueError, match="not among the classes"):
        clf.partial_fit(X, np.where(y == 2, 5, y))


def test_early_stopping_keeps_best_validation_epoch():
    X, y = _blobs(n=400)
    clf = MLPClassifier(hidden_layer_sizes=(6,), max_iter=200, early_stopping=True, n_iter_no_change=3,
                        random_state=0).fit(X, y)
    assert clf.n_iter_ < 200
    assert clf.best_validation_error_ == min(clf.validation_error_curve_)


@pytest.mark.parametrize("pretraining", ["supervised", "autoencoder", "rbm"])
def test_pretrained_classifier_records_pretraining_and_fits(pretraining):
    X, y = _binary()
    clf = PretrainedMLPClassifier(hidden_layer_sizes=(12, 8), pretraining=pretraining, pretrain_epochs=3,
                                  max_iter=20, batch_size=20, random_state=0).fit(X, y)
    assert clf.score(X, y) > 0.9
    assert len(nn.linear_layers(clf.net_)) == 3
    records = clf.pretraining_info_.get("reconstruction_error") or clf.pretraining_info_["train_loss"]
    assert len(records) == 2 and all(len(r) == 3 for r in records)


def test_bad_parameters_raise_in_fit_naming_the_parameter():
    X, y = _blobs(n=50)
    for est, name in [(MLPClassifier(activation="swish"), "activation"), (MLPClassifier(solver="lbfgs"), "solver"),
                      (MLPClassifier(hidden_layer_sizes=(0,)), "hidden_layer_sizes"),
                      (MLPClassifier(learning_rate_init=-1), "learning_rate_init"),
                      (PretrainedMLPClassifier(pretraining="pca"), "pretraining"),
                      (PretrainedMLPClassifier(hidden_layer_sizes=()), "hidden_layer_sizes"),
                      (PretrainedMLPClassifier(pretraining="rbm", activation="relu"), "activation")]:
        with pytest.raises(ValueError, match=name):
            est.fit(X, y)


def test_regressor_fits_multioutput_targets():
    X, y = make_regression(n_samples=200, n_features=6, n_targets=2, noise=1.0, random_state=0)
    X, Y = StandardScaler().fit_transform(X), StandardScaler().fit_transform(y)
    reg = MLPRegressor(hidden_layer_sizes=(16,), max_iter=100, random_state=0).fit(X, Y)
    assert reg.predict(X).shape == (200, 2)
    assert reg.score(X, Y) > 0.9
    one = MLPRegressor(hidden_layer_sizes=(16,), max_iter=100, random_state=0).fit(X, Y[:, 0])
    assert one.predict(X).shape == (200,)


def test_rbm_features_in_a_pipeline_and_grid_search_over_topologies():
    X, y = _binary(n=240)
    rbm = RBMTransformer(hidden_layer_sizes=(16, 8), n_iter=5, learning_rate=0.1, random_state=0).fit(X)
    H = rbm.transform(X)
    assert H.shape == (240, 8) and H.dtype == np.float32 and ((H >= 0) & (H <= 1)).all()
    assert rbm.components_.shape == (8, 16)
    assert list(rbm.get_feature_names_out()) == [f"rbmtransformer{i}" for i in range(8)]

    search = GridSearchCV(MLPClassifier(max_iter=15, random_state=0),
                          {"hidden_layer_sizes": [(4,), (16,), (16, 8)]}, cv=3)
    search.fit(X, y)
    assert search.best_params_["hidden_layer_sizes"] in [(4,), (16,), (16, 8)]
    assert len(search.cv_results_["mean_test_score"]) == 3

    # RBM features feed a softmax regression (no hidden layer) in a cross-validated pipeline.
    pipe = make_pipeline(RBMTransformer(hidden_layer_sizes=(16,), n_iter=5, learning_rate=0.1, random_state=0),
                         MLPClassifier(hidden_layer_sizes=(), max_iter=20, batch_size=16, random_state=0))
    scores = cross_val_score(pipe, X, y, cv=3)
    assert scores.shape == (3,) and scores.mean() > 0.75  # chance: 0.33


def test_fitted_net_saves_and_loads(tmp_path):
    X, y = _blobs()
    clf = MLPClassifier(hidden_layer_sizes=(5,), max_iter=5, random_state=0).fit(X, y)
    nn.save(clf.net_, tmp_path / "clf.npz")
    net = nn.load(tmp_path / "clf.npz")
    np.testing.assert_array_equal(net.forward(X.astype(np.float32)), clf.net_.forward(X.astype(np.float32)))
