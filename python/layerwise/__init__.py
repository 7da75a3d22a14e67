"""layerwise: fast hand-written C++/CUDA kernels for training dense sigmoid
networks with backpropagation, SGD and greedy layer-wise pretraining.

    import layerwise as lw
    y = lw.ops.linear_forward(x, w, b, activation="sigmoid")
"""
from . import _core, ops
from . import nn, optim, train, pretrain, diagnostics
from . import datasets
from . import adversarial, rbf
from . import native  # lwNetwork_t: the one-call training step and C-side model files
from . import onnx  # ONNX export; the onnx package itself is imported on first use
from . import tune  # lw.tune(): GEMM autotuning; its file, when present, is applied here

tune.load()

__version__ = _core.version()


def backend_info() -> dict:
    """What this build of layerwise can run on, and what it uses now."""
    return {
        "version": __version__,
        "isas_compiled": _core.compiled_isas().split(","),
        "isa": _core.active_isa(),
        "threads": ops.get_num_threads(),
        "cuda_compiled": bool(_core.cuda_compiled()),
        "cuda_devices": int(_core.cuda_device_count()),
        "cupy": ops._cupy is not None,
    }


__all__ = ["ops", "nn", "optim", "train", "pretrain", "diagnostics", "datasets", "backend_info", "tune", "__version__"]
