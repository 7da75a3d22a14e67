"""layerwise.checkpoint -- training checkpoints: an .npz of arrays plus JSON metadata.

``train.fit`` and the ``pretrain.greedy_*`` functions write one with
``checkpoint=PATH`` and continue from it with ``resume=True``. A file holds

* arrays (host NumPy, C order): weights, optimizer buffers, best-so-far weights, the
  current epoch's shuffle permutation, per-layer state of greedy pretraining;
* one JSON document (``__meta__``): numpy Generator state, position (epoch, batch),
  history, early-stopping counters, the counters of the modules' counter-based samplers
  (Dropout, denoising-autoencoder noise, RBM sampling), optimizer hyperparameters.

No pickle: ``np.load(..., allow_pickle=False)`` reads it, and JSON keeps integers
(the Generator's 128-bit state) and floats (``repr`` round-trips) exactly, which is what
makes a resumed run bitwise equal to an uninterrupted one. Files are written atomically
(``layerwise.atomic``): a kill during a write leaves the previous checkpoint.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Tuple

import numpy as np

from .atomic import write_atomic
from .nn import Module, array_module, to_device

__all__ = ["FORMAT", "write", "read", "exists", "rng_state", "set_rng_state", "module_counters",
           "set_module_counters", "optimizer_state", "load_optimizer_state", "param_arrays", "load_params",
           "parse_every"]

FORMAT = "layerwise-checkpoint-1"
_META = "__meta__"


# ---- the file ------------------------------------------------------------------------------
def write(path, arrays: Mapping[str, np.ndarray], meta: Mapping) -> Path:
    """Writes ``arrays`` (name -> array, any device) and ``meta`` (JSON-serialisable) to ``path``."""
    host = {name: np.ascontiguousarray(to_device(a, "cpu")) for name, a in arrays.items()}
    if _META in host:
        raise ValueError(f"arrays: the name {_META!r} is reserved")
    doc = json.dumps({"format": FORMAT, **meta})

    def dump(f):
        np.savez(f, **{_META: np.array(doc)}, **host)

    return write_atomic(path, dump)


def read(path) -> Tuple[Dict[str, np.ndarray], dict]:
    """(arrays, meta) of a checkpoint written by ``write``. ValueError if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as z:
            names = list(z.files)
            if _META not in names:
                raise ValueError("no metadata")
            meta = json.loads(str(z[_META]))
            arrays = {k: z[k] for k in names if k != _META}
    except Exception as e:  # not a zip, truncated, not JSON, ...: all "not a checkpoint"
        raise ValueError(f"checkpoint: {path} is not a readable layerwise checkpoint ({e})") from None
    if meta.get("format") != FORMAT:
        raise ValueError(f"checkpoint: {path} has format {meta.get('format')!r}, expected {FORMAT!r}")
    return arrays, meta


def exists(path) -> bool:
    return path is not None and os.path.isfile(path)


def parse_every(value):
    """``checkpoint_every``: a positive number of batches (int), or "epoch"."""
    if value == "epoch":
        return "epoch"
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"checkpoint_every: expected a positive number of batches or 'epoch', got {value!r}")
    return int(value)


def subset(arrays: Mapping[str, np.ndarray], prefix: str) -> Dict[str, np.ndarray]:
    """The arrays whose names start with ``prefix``, with the prefix removed."""
    return {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}


def prefixed(arrays: Mapping[str, np.ndarray], prefix: str) -> Dict[str, np.ndarray]:
    return {prefix + k: v for k, v in arrays.items()}


# ---- random state ------------------------------------------------------------------------------
def rng_state(rng: np.random.Generator) -> dict:
    """The Generator's bit-generator state (plain ints and strings: JSON-safe, exact)."""
    return rng.bit_generator.state


def set_rng_state(rng: np.random.Generator, state: Mapping) -> None:
    if state.get("bit_generator") != type(rng.bit_generator).__name__:
        raise ValueError(f"checkpoint: random state of a {state.get('bit_generator')} generator, "
                         f"this run uses {type(rng.bit_generator).__name__}")
    rng.bit_generator.state = dict(state)


def _modules(module) -> Iterator[Module]:
    """Every module of a tree, parents before children, in a fixed order."""
    yield module
    children = getattr(module, "children", None)
    if callable(children):  # modules that list their children
        kids = list(children())
    else:  # containers keep them in ``modules``; an AutoEncoder has an encoder and a decoder
        kids = list(getattr(module, "modules", None) or [])
        kids += [getattr(module, n) for n in ("encoder", "decoder") if isinstance(getattr(module, n, None), Module)]
    for child in kids:
        yield from _modules(child)


def module_counters(net) -> List[Optional[int]]:
    """The sampler counters (``offset``) of every module in ``net`` (None where it has none)."""
    return [int(m.offset) if hasattr(m, "offset") else None for m in _modules(net)]


def set_module_counters(net, counters: List[Optional[int]]) -> None:
    mods = list(_modules(net))
    if len(mods) != len(counters):
        raise ValueError(f"checkpoint: saved for a net of {len(counters)} modules, this one has {len(mods)}")
    for m, c in zip(mods, counters):
        if c is not None:
            m.offset = int(c)


# ---- parameters ------------------------------------------------------------------------------
def param_arrays(params) -> Dict[str, np.ndarray]:
    """Host copies of the parameters' values, named "0", "1", ..."""
    return {str(i): np.array(to_device(p.data, "cpu")) for i, p in enumerate(params)}


def load_params(params, arrays: Mapping[str, np.ndarray], what="parameters") -> None:
    """Copies saved values into ``params`` in place (shape and count checked first)."""
    if len(arrays) != len(params):
        raise ValueError(f"checkpoint: {what}: saved {len(arrays)} arrays, the net has {len(params)}")
    for i, p in enumerate(params):
        a = arrays[str(i)]
        if tuple(a.shape) != tuple(p.data.shape):
            raise ValueError(f"checkpoint: {what}: array {i} has shape {tuple(a.shape)}, the net's is "
                             f"{tuple(p.data.shape)}")
    for i, p in enumerate(params):
        xp = array_module(p.data)
        p.data[...] = xp.asarray(arrays[str(i)]) if xp is not np else arrays[str(i)]


# ---- optimizer -------------------------------------------------------------------------------
def _jsonable(obj):
    return json.loads(json.dumps(obj, default=repr))


def _state_dict(opt) -> dict:
    """The optimizer's ``state_dict()`` (every layerwise.optim class has one)."""
    if not (hasattr(opt, "state_dict") and hasattr(opt, "load_state_dict")):
        raise ValueError(f"optimizer: a {type(opt).__name__} has no state_dict()/load_state_dict(), so it "
                         f"cannot be checkpointed")
    return opt.state_dict()


def optimizer_state(opt) -> Tuple[Dict[str, np.ndarray], dict]:
    """(arrays, meta) describing the optimizer's state."""
    sd = _state_dict(opt)
    arrays, names = {}, []
    for i, entry in enumerate(sd["state"]):
        names.append(sorted(entry))
        for name, a in entry.items():
            arrays[f"{i}/{name}"] = np.array(to_device(a, "cpu"))
    meta = {"type": sd["type"], "hyper": _jsonable(sd.get("hyper", {})), "step": int(sd.get("step", 0)),
            "names": names}
    return arrays, meta


def load_optimizer_state(opt, arrays: Mapping[str, np.ndarray], meta: Mapping) -> None:
    """Restores ``optimizer_state``'s output into ``opt``. The optimizer must be configured
    as the checkpointed one was (type and hyperparameters are compared)."""
    current = _state_dict(opt)
    if current["type"] != meta["type"]:
        raise ValueError(f"checkpoint: saved with optimizer {meta['type']}, this run uses {current['type']}")
    if _jsonable(current.get("hyper", {})) != meta["hyper"]:
        raise ValueError(f"checkpoint: optimizer hyperparameters differ: saved {meta['hyper']}, "
                         f"this run {_jsonable(current.get('hyper', {}))}")
    if len(meta["names"]) != len(current["state"]):
        raise ValueError(f"checkpoint: optimizer state for {len(meta['names'])} parameters, this run has "
                         f"{len(current['state'])}")
    state = [{name: arrays[f"{i}/{name}"] for name in names} for i, names in enumerate(meta["names"])]
    opt.load_state_dict({"type": current["type"], "hyper": current.get("hyper", {}), "step": meta["step"],
                         "state": state})
