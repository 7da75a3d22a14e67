"""Pong from pixels (layerwise.rl, ``layerwise pong``): the policy gradient against finite
differences, the discounting rule, the preprocessing on a real ALE frame, resume equal to an
uninterrupted run, and the command end to end. Tests that play the game skip without the rl
extra (gymnasium + ale-py)."""
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pytest

from layerwise import optim
from layerwise.rl import policy as pol
from layerwise.rl import reinforce

HAVE_RL = importlib.util.find_spec("gymnasium") is not None and importlib.util.find_spec("ale_py") is not None
needs_rl = pytest.mark.skipif(not HAVE_RL, reason="needs the rl extra (pip install \"layerwise[rl]\": gymnasium, ale-py)")


# ---- REINFORCE math (no game needed) -------------------------------------------------------------
def test_discounted_returns_reset_at_every_point():
    r = reinforce.discounted_returns([0, 0, 1, 0, 0, -1], gamma=0.99)
    np.testing.assert_allclose(r, [0.9801, 0.99, 1.0, -0.9801, -0.99, -1.0], rtol=0, atol=1e-15)
    # Steps after the last point get nothing from it; a reward at step 0 only credits step 0.
    np.testing.assert_array_equal(reinforce.discounted_returns([1, 0, 0]), [1.0, 0.0, 0.0])
    np.testing.assert_allclose(reinforce.discounted_returns([0, 0, -1, 1], gamma=0.5), [-0.25, -0.5, -1.0, 1.0])
    # Two points in a row: the second does not leak into the first.
    np.testing.assert_array_equal(reinforce.discounted_returns([-1, -1], gamma=0.9), [-1.0, -1.0])
    assert reinforce.discounted_returns([]).shape == (0,)
    with pytest.raises(ValueError, match="gamma"):
        reinforce.discounted_returns([1.0], gamma=1.5)
    with pytest.raises(ValueError, match="rewards"):
        reinforce.discounted_returns(np.zeros((2, 2)))


def test_standardize():
    a = reinforce.standardize([1.0, 2.0, 3.0, 6.0])
    assert abs(a.mean()) < 1e-15 and abs(a.std() - 1.0) < 1e-15
    np.testing.assert_array_equal(reinforce.standardize([2.0, 2.0]), [0.0, 0.0])  # no division by zero


def _episode(rng, n, inputs):
    x = rng.integers(-1, 2, size=(n, inputs)).astype(np.int8)  # difference images are in {-1, 0, 1}
    up = rng.random(n) < 0.5
    adv = rng.standard_normal(n)
    return x, up, adv


def _loss(w1, w2, x, up, adv):
    """float64 reference: L = -sum A log pi(a | x), pi(UP) = sigmoid(w2 . relu(w1 x))."""
    h = np.maximum(x.astype(np.float64) @ w1.T, 0.0)
    z = h @ w2.T
    logp_up, logp_down = -np.logaddexp(0.0, -z[:, 0]), -np.logaddexp(0.0, z[:, 0])
    return -np.sum(adv * np.where(up, logp_up, logp_down))


def test_policy_gradient_matches_finite_differences():
    rng = np.random.default_rng(3)
    net = pol.make_policy(inputs=12, hidden=5, seed=1, dtype="float64")
    x, up, adv = _episode(rng, 40, 12)
    w1, w2 = net[0].weight.data, net[1].weight.data
    assert np.abs(x @ w1.T).min() > 1e-5  # no pre-activation at the ReLU kink (finite differences would straddle it)
    h, p = pol.policy_forward(net, x.astype(np.float64))
    reinforce.policy_gradient(net, x, h, up, adv)
    eps = 1e-6
    for w, grad in ((w1, net[0].weight.grad), (w2, net[1].weight.grad)):
        fd = np.empty_like(w)
        for idx in np.ndindex(w.shape):
            keep = w[idx]
            w[idx] = keep + eps
            lp = _loss(w1, w2, x, up, adv)
            w[idx] = keep - eps
            lm = _loss(w1, w2, x, up, adv)
            w[idx] = keep
            fd[idx] = (lp - lm) / (2 * eps)
        np.testing.assert_allclose(grad, fd, rtol=1e-6, atol=1e-8)


def test_policy_gradient_chunks_and_update_direction(monkeypatch):
    """The chunked first-layer backward equals the one-chunk one, and one RMSprop step on
    the gradient lowers the loss (makes advantaged actions likelier)."""
    rng = np.random.default_rng(5)
    net = pol.make_policy(inputs=30, hidden=7, seed=2, dtype="float64")
    x, up, adv = _episode(rng, 50, 30)
    h, _ = pol.policy_forward(net, x.astype(np.float64))
    reinforce.policy_gradient(net, x, h, up, adv)
    whole = [p.grad.copy() for p in net.parameters()]
    monkeypatch.setattr(reinforce, "_CHUNK", 7)
    reinforce.policy_gradient(net, x, h, up, adv)
    for a, b in zip(whole, net.parameters()):
        np.testing.assert_allclose(b.grad, a, rtol=1e-12, atol=1e-12)
    before = _loss(net[0].weight.data, net[1].weight.data, x, up, adv)
    optim.RMSprop(net.parameters(), lr=1e-3, alpha=0.99, eps=1e-5).step()
    assert _loss(net[0].weight.data, net[1].weight.data, x, up, adv) < before


def test_policy_shape_and_init():
    net = pol.make_policy(seed=0)
    assert [(m.in_features, m.out_features, m.activation, m.bias) for m in net] == \
        [(6400, 200, "relu", None), (200, 1, "sigmoid", None)]
    w1 = net[0].weight.data
    assert w1.dtype == np.float32 and abs(w1.std() * np.sqrt(6400) - 1.0) < 0.01  # N(0, 1/fan_in)
    h, p = pol.policy_forward(net, np.zeros((3, 6400), np.float32))
    np.testing.assert_array_equal(p, [0.5, 0.5, 0.5])  # nothing moves: no preference
    with pytest.raises(ValueError, match="inconsistent shapes"):
        reinforce.policy_gradient(net, np.zeros((2, 6400), np.int8), h, [True, False], [1.0, -1.0])


# ---- the real game ---------------------------------------------------------------------------------
def _karpathy_reference(frame):
    """The anchor's prepro(), written out with NumPy on a float copy."""
    i = frame[35:195].astype(np.float64)
    i = i[::2, ::2, 0]
    i[i == 144] = 0
    i[i == 109] = 0
    i[i != 0] = 1
    return i.ravel()


@needs_rl
def test_preprocessing_on_a_real_frame():
    from layerwise.rl import atari

    env = atari.make_env()
    try:
        frame, _ = env.reset(seed=0)
        frames = [frame]
        for _ in range(30):
            frames.append(env.step(atari.UP)[0])
    finally:
        env.close()
    assert frame.shape == (210, 160, 3) and frame.dtype == np.uint8
    batch = atari.preprocess(np.stack(frames))
    assert batch.shape == (31, 6400) and batch.dtype == np.int8
    for f, row in zip(frames, batch):
        np.testing.assert_array_equal(row, _karpathy_reference(f))
    np.testing.assert_array_equal(atari.preprocess(frames[-1]), batch[-1])
    assert set(np.unique(batch)) <= {0, 1}
    img = batch[-1].reshape(80, 80)
    # Known content: the background is erased; what is left are the two paddles (a few columns
    # near each side) and perhaps the ball.
    assert 0 < img.sum() < 0.05 * img.size
    cols = np.flatnonzero(img.any(axis=0))
    assert cols.min() < 10 and cols.max() > 69
    # The score above row 35 is cropped: painting over it changes nothing.
    painted = frames[-1].copy()
    painted[:35] = 255
    np.testing.assert_array_equal(atari.preprocess(painted), batch[-1])
    # The agent's paddle (right) moved under UP: consecutive frames differ, in {-1, 0, 1}.
    diff = batch[-1].astype(np.int16) - batch[-5]
    assert diff.any() and set(np.unique(diff)) <= {-1, 0, 1}
    with pytest.raises(ValueError, match="frames"):
        atari.preprocess(np.zeros((210, 160), np.uint8))


def _cli(*argv, timeout=240):
    return subprocess.run([sys.executable, "-m", "layerwise", "pong", *map(str, argv)], capture_output=True,
                          text=True, timeout=timeout, env={**os.environ, "PYTHONUNBUFFERED": "1"})


@pytest.fixture(scope="module")
def two_game_run(tmp_path_factory):
    """``layerwise pong --episodes 2 --batch 1 --envs 1`` end to end (two full games, an update after each)."""
    if not HAVE_RL:
        pytest.skip("needs the rl extra (pip install \"layerwise[rl]\": gymnasium, ale-py)")
    out = tmp_path_factory.mktemp("pong") / "run"
    r = _cli("--episodes", 2, "--batch", 1, "--envs", 1, "--out", out)
    assert r.returncode == 0, r.stderr
    return out, r


@needs_rl
def test_command_end_to_end(two_game_run):
    from layerwise import nn
    from layerwise.rl import trainer

    out, r = two_game_run
    assert "fps" in r.stderr  # the progress bar
    for name in (trainer.CHECKPOINT, trainer.POLICY, trainer.CSV, trainer.SUMMARY, trainer.CURVE):
        assert (out / name).is_file(), name
    rows = trainer.read_csv(out / trainer.CSV)
    np.testing.assert_array_equal(rows["episode"], [1, 2])
    assert all(-21 <= v <= 21 for v in rows["reward"]) and np.all(rows["frames"] > 100)
    assert rows["running_mean"][0] == rows["reward"][0]
    np.testing.assert_allclose(rows["running_mean"][1], 0.99 * rows["reward"][0] + 0.01 * rows["reward"][1],
                               atol=1e-4)
    import json
    s = json.loads((out / trainer.SUMMARY).read_text())
    assert s["episodes"] == 2 and s["updates"] == 2 and s["frames"] == rows["frames"].sum()
    net = nn.load(out / trainer.POLICY)
    pol.check_policy(net)
    # --play on the saved policy, with a GIF of the game.
    gif = out.parent / "game.gif"
    p = _cli("--play", out, "--games", 1, "--gif", gif)
    assert p.returncode == 0, p.stderr
    assert "game 1:" in p.stdout and "mean reward over 1 games" in p.stdout
    assert gif.is_file() and gif.read_bytes()[:6] in (b"GIF89a", b"GIF87a")


@needs_rl
def test_resume_equals_uninterrupted(two_game_run, tmp_path):
    """One game on two env processes, stopped, then the second game resumed on one process,
    ends bitwise where the command's uninterrupted two-game run (one process) ends."""
    from layerwise import checkpoint as ckpt
    from layerwise import nn
    from layerwise.rl import trainer

    quiet = dict(progress=False, log=lambda *_: None)
    resumed, straight = tmp_path / "resumed", two_game_run[0]
    trainer.train(resumed, trainer.Config(batch=1, envs=2), episodes=1, **quiet)
    net_r, st_r = trainer.train(resumed, trainer.Config(batch=1, envs=1), episodes=2, resume=True, **quiet)
    assert st_r.updates == 2
    for a, b in zip(net_r.parameters(), nn.load(straight / trainer.POLICY).parameters()):
        np.testing.assert_array_equal(a.data, b.data)
    # The optimizer state and the history agree too: the final checkpoints, array for array.
    a, _ = ckpt.read(resumed / trainer.CHECKPOINT)
    b, _ = ckpt.read(straight / trainer.CHECKPOINT)
    assert sorted(a) == sorted(b) and any(k.startswith("opt/") for k in a)
    for k in a:
        if k != "history/wall":
            np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    # Nothing left to do: a resumed run that already has its games returns at once.
    _, st = trainer.train(resumed, trainer.Config(batch=1, envs=1), episodes=2, resume=True, **quiet)
    assert st.episodes == 2 and st.reward == st_r.reward


def _one_line_error(capsys, argv, *words):
    """``layerwise pong ARGV`` (in process) fails with exit status 2 and one line on stderr."""
    from layerwise import cli

    try:
        rc = cli.main(["pong", *map(str, argv)])
    except SystemExit as e:  # argparse errors
        rc = e.code
    err = capsys.readouterr().err
    assert rc == 2, (rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])


@needs_rl
def test_user_errors_are_one_line(tmp_path, two_game_run, capsys):
    out = two_game_run[0]
    _one_line_error(capsys, ["--out", tmp_path / "x"], "--episodes")
    _one_line_error(capsys, ["--episodes", 0], "--episodes")
    _one_line_error(capsys, ["--minutes", "-1"], "--minutes")
    _one_line_error(capsys, ["--episodes", 2, "--play", out], "not allowed")
    _one_line_error(capsys, ["--episodes", 4, "--out", out], "--resume")  # would overwrite a run
    _one_line_error(capsys, ["--episodes", 4, "--out", out, "--resume", "--seed", 7], "seed")
    _one_line_error(capsys, ["--play", tmp_path / "nothing"], "no policy file")
    _one_line_error(capsys, ["--play", out, "--gif", tmp_path / "no-dir" / "g.gif"], "gif", "does not exist")
    _one_line_error(capsys, ["--episodes", 2, "--gif", tmp_path / "g.gif", "--out", tmp_path / "y"], "--gif")
    blocker = tmp_path / "file"
    blocker.write_text("x")
    _one_line_error(capsys, ["--episodes", 2, "--out", blocker / "sub"], "not a writable")


def test_missing_rl_extra_is_one_line(monkeypatch, capsys):
    from layerwise.rl import atari

    def missing():
        raise atari.MissingExtra("Pong needs the rl extra (gymnasium, ale-py): pip install \"layerwise[rl]\"")

    monkeypatch.setattr(atari, "require_gymnasium", missing)
    _one_line_error(capsys, ["--episodes", 2], "rl extra", "pip install")


@needs_rl
def test_benchmark_runs_tiny(tmp_path):
    """benchmarks/bench_pong.py --quick end to end (numbers are not asserted, only their shape)."""
    import json
    import math

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    out = tmp_path / "bench.json"
    r = subprocess.run([sys.executable, os.path.join(root, "benchmarks", "bench_pong.py"), "--quick", "--contenders",
                        "layerwise", "--json", out], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "policy share" in r.stdout
    d = json.loads(out.read_text())
    row = d["rows"]["layerwise"]
    for metric in ("frames_per_second", "policy_share", "forward_share", "backward_share"):
        v = row[metric]["median"]
        assert math.isfinite(v) and v > 0, metric
    assert row["policy_share"]["median"] <= 1.0
