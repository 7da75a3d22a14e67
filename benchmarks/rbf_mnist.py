"""rbf_mnist.py -- an RBF network on MNIST (issue 16's third target: <= 3.6 % test error
with 1000 RBF units, LeCun's table): MiniBatchKMeans centers (scikit-learn), gamma from
each cluster's spread, a linear softmax readout, everything trained end to end with
``train.fit`` (SGD with momentum, early stopping on the 10k validation images).

    python benchmarks/rbf_mnist.py --units 1000 --width-scale 1.0 --out rbf1000.json
    python benchmarks/rbf_mnist.py --units 50 --train 2000 --epochs 1 --out /tmp/r.json   # seconds

The k-means fit is cached (--kmeans-cache, an .npz keyed by units, train size and seed),
so attempts that change only the training run share it."""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--units", type=int, default=1000)
    ap.add_argument("--train", type=int, default=50000, help="training images (the first of the 50k split)")
    ap.add_argument("--width-scale", type=float, default=1.0,
                    help="gamma_j = 1 / (2 width_scale^2 s_j^2), s_j^2 the cluster's mean squared distance")
    ap.add_argument("--readout", choices=("random", "least_squares"), default="random",
                    help="output layer start: the default uniform draw, or rbf.init_readout_least_squares")
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--momentum", type=float, default=0.9)
    ap.add_argument("--lr-decay", type=float, default=0.93)
    ap.add_argument("--batch-size", type=int, default=50)
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", default=os.environ.get("LAYERWISE_DATA"))
    ap.add_argument("--kmeans-cache", default=None, help="directory for the cached k-means fit")
    ap.add_argument("--out", required=True, help="results JSON")
    args = ap.parse_args(argv)

    import layerwise as lw
    from layerwise import rbf
    from layerwise.atomic import write_json_atomic

    lw.ops.set_num_threads(args.threads)
    d = lw.datasets.mnist(args.data, progress=False)
    X, y = np.ascontiguousarray(d.X_train[:args.train]), np.ascontiguousarray(d.y_train[:args.train])
    t0 = time.perf_counter()
    net = rbf.rbf_network(X.shape[1], args.units, 10, seed=args.seed)
    layer = net[0]
    cache = None
    if args.kmeans_cache:
        os.makedirs(args.kmeans_cache, exist_ok=True)
        cache = os.path.join(args.kmeans_cache, f"kmeans-{args.units}-{args.train}-{args.seed}.npz")
    if cache and os.path.exists(cache):
        z = np.load(cache)
        centers, spread = z["centers"], z["spread"]
    else:
        centers, spread = rbf.kmeans_centers(X, args.units, seed=args.seed)
        if cache:
            np.savez(cache, centers=centers, spread=spread)
    t_kmeans = time.perf_counter() - t0
    gamma = 1.0 / (2.0 * args.width_scale ** 2 * spread)
    layer.centers.data[...] = centers
    layer.log_gamma.data[...] = np.log(gamma)
    if args.readout == "least_squares":
        rbf.init_readout_least_squares(net, X, y)
        start = lw.train.evaluate(net, d.X_valid, d.y_valid)["error"]
        print(f"least-squares readout: valid {start:.2f} % before fit", flush=True)
    t1 = time.perf_counter()
    hist = None
    if args.epochs > 0:  # 0: the two-stage network as initialized (k-means, least-squares readout)
        schedule = lw.optim.ExponentialLR(args.lr_decay) if args.lr_decay != 1.0 else None
        hist = lw.train.fit(net, X, y, lr=args.lr, momentum=args.momentum, schedule=schedule,
                            batch_size=args.batch_size, epochs=args.epochs, X_val=d.X_valid, y_val=d.y_valid,
                            patience=args.epochs, seed=args.seed, progress=False,
                            callback=lambda e, h: print(f"epoch {e}: train {h.train_error[-1]:.2f} % "
                                                        f"valid {h.valid_error[-1]:.2f} % ({h.seconds[-1]:.0f} s)",
                                                        flush=True) and False)
    t_fit = time.perf_counter() - t1
    test = lw.train.evaluate(net, d.X_test, d.y_test)
    res = {"units": args.units, "train_images": args.train, "width_scale": args.width_scale, "lr": args.lr,
           "readout": args.readout,
           "momentum": args.momentum, "lr_decay": args.lr_decay, "batch_size": args.batch_size,
           "epochs": hist.epochs if hist else 0, "best_epoch": hist.best_epoch if hist else None,
           "valid_error": hist.valid_error if hist else [lw.train.evaluate(net, d.X_valid, d.y_valid)["error"]],
           "train_error": hist.train_error if hist else [], "test_error": test["error"], "test_loss": test["loss"],
           "gamma_init_median": float(np.median(gamma)), "gamma_final_median": float(np.median(layer.gamma)),
           "kmeans_seconds": t_kmeans, "init_seconds": t1 - t0, "fit_seconds": t_fit, "threads": args.threads}
    write_json_atomic(args.out, res)
    print(f"test error {test['error']:.2f} % (best epoch {res['best_epoch']}, valid "
          f"{min(res['valid_error']):.2f} %), k-means {t_kmeans:.0f} s, fit {t_fit:.0f} s")
    return res


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
