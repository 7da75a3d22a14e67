"""layerwise.optim against torch.optim, step by step (needs the ``bench`` extra: torch).

Each optimizer takes the same gradients as its torch.optim counterpart for 30
steps on a float64 and a float32 parameter (an odd-sized matrix, so the vector
bodies' tails are exercised); after every step the parameters and the state
buffers must agree. Tolerances: float64 1e-12 relative (the formulas are the
same; only the rounding order of a few operations differs, e.g. torch's lerp),
float32 1e-5 relative plus 1e-6 times the largest |value| of the array (a few ulp per
step, accumulated; entries near zero after cancellation are judged on the array's scale).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch.optim comparisons need torch (pip install '.[bench]')")

from layerwise import nn, optim  # noqa: E402

# (layerwise class, torch class, keywords for both, torch's names of our state buffers)
CASES = [
    (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.9, weight_decay=0.01), {"momentum_buffer": "momentum_buffer"}),
    (optim.SGD, torch.optim.SGD, dict(lr=0.05, momentum=0.8, nesterov=True), {"momentum_buffer": "momentum_buffer"}),
    (optim.SGD, torch.optim.SGD, dict(lr=0.05), {}),
    (optim.Adam, torch.optim.Adam, dict(lr=0.01), {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}),
    (optim.Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.5, 0.9), eps=1e-6, weight_decay=0.1),
     {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}),
    (optim.AdamW, torch.optim.AdamW, dict(lr=0.01), {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}),
    (optim.AdamW, torch.optim.AdamW, dict(lr=0.02, weight_decay=0.3), {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"}),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.01), {"square_avg": "square_avg"}),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.01, momentum=0.9, weight_decay=0.01),
     {"square_avg": "square_avg", "momentum_buffer": "momentum_buffer"}),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.01, centered=True, alpha=0.9),
     {"square_avg": "square_avg", "grad_avg": "grad_avg"}),
    (optim.RMSprop, torch.optim.RMSprop, dict(lr=0.01, centered=True, momentum=0.5),
     {"square_avg": "square_avg", "momentum_buffer": "momentum_buffer", "grad_avg": "grad_avg"}),
    (optim.Adagrad, torch.optim.Adagrad, dict(lr=0.1), {"sum": "sum"}),
    (optim.Adagrad, torch.optim.Adagrad, dict(lr=0.1, lr_decay=0.1, initial_accumulator_value=0.5, weight_decay=0.01),
     {"sum": "sum"}),
]


def _ids():
    return [f"{c[0].__name__}-{'-'.join(f'{k}={v}' for k, v in c[2].items())}" for c in CASES]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("ours,theirs,kw,names", CASES, ids=_ids())
def test_matches_torch_optim_step_by_step(ours, theirs, kw, names, dtype):
    rng = np.random.default_rng(0)
    w0 = rng.standard_normal((7, 19)).astype(dtype)
    p = nn.Parameter(w0.copy(), "w")
    tp = torch.nn.Parameter(torch.from_numpy(w0.copy()))
    lr = kw["lr"]
    rest = {k: v for k, v in kw.items() if k != "lr"}
    ours_opt = ours([p], lr, **rest) if ours is optim.SGD else ours([p], lr=lr, **rest)
    theirs_opt = theirs([tp], foreach=False, **kw)
    rtol, atol = (1e-12, 1e-14) if dtype == np.float64 else (1e-5, 1e-6)
    for step in range(1, 31):
        g = rng.standard_normal(w0.shape).astype(dtype)
        p.grad[...] = g
        tp.grad = torch.from_numpy(g.copy())
        ours_opt.step()
        theirs_opt.step()
        ref = tp.detach().numpy()
        np.testing.assert_allclose(p.data, ref, rtol=rtol, atol=atol * (1 + np.abs(ref).max()),
                                   err_msg=f"param after step {step}")
        st = ours_opt.state_dict()["state"][0]
        tst = theirs_opt.state[tp]
        assert set(st) == set(names), (sorted(st), sorted(names))
        for ours_name, torch_name in names.items():
            r = tst[torch_name].numpy()
            np.testing.assert_allclose(st[ours_name], r, rtol=rtol, atol=atol * (1 + np.abs(r).max()),
                                       err_msg=f"{ours_name} after step {step}")
        if "step" in tst:
            assert ours_opt.steps == int(tst["step"])
