"""Saving and loading networks.

``save`` writes the model file format v1: a safetensors file whose ``__metadata__``
holds "format": "layerwise", "format_version": "1", "dtype" ("float32"/"float64")
and "architecture" (the module's ``config()`` as a JSON string), with one tensor per
parameter named by its dotted path (``Module.named_parameters``). C code reads the
same files (lwNetworkLoad).

``load`` reads those files and the older .npz files (format "layerwise-net-1"). A
model file is untrusted input, so everything is checked before the architecture is
built: the header against the file size, the metadata, the architecture (known
module types, bounded nesting and sizes), and every tensor's presence, dtype and
shape against what the architecture needs. The only large allocations happen after
that, for tensors the file really holds, so memory stays bounded by the file's size.

Module types other than Sequential, Linear, Activation and Dropout become loadable
through ``register_module`` (layerwise.pretrain registers RBM and AutoEncoder).
"""
from __future__ import annotations

import json
import math
import os
import zipfile

import numpy as np

from ..atomic import write_atomic_path
from .device import DTYPES, check_device, to_device
from .layers import Activation, Dropout, Linear, Sequential
from .module import ACTIVATIONS

FORMAT = "layerwise"
FORMAT_VERSION = "1"
LEGACY_FORMAT = "layerwise-net-1"  # the .npz files of earlier versions

# Bounds on what a file may declare. They keep a crafted architecture from asking for
# absurd work before its tensors are checked; real nets are far inside them.
MAX_FEATURES = 1 << 24       # units per layer
MAX_MODULES = 100_000        # modules in one architecture
MAX_DEPTH = 64               # nesting of containers
MAX_ARCHITECTURE_CHARS = 1 << 22
MAX_HEADER_BYTES = 100_000_000  # safetensors' own limit on the JSON header

_TENSOR_DTYPES = {"float32": "F32", "float64": "F64"}  # safetensors' names
_ZIP_MAGIC = b"PK\x03\x04"
_FIELD_KINDS = ("size", "bool", "activation", "probability", "seed")


class _Spec:
    __slots__ = ("fields", "build", "parameter_shapes")

    def __init__(self, fields, build, parameter_shapes):
        self.fields, self.build, self.parameter_shapes = fields, build, parameter_shapes


_REGISTRY = {}


def register_module(type_name, *, fields, build, parameter_shapes):
    """Makes modules whose ``config()["type"]`` is ``type_name`` loadable.

    fields: {config key: kind} for every key besides "type"; kind is one of "size"
        (integer in [1, MAX_FEATURES]), "bool", "activation", "probability" (number in
        [0, 1)), "seed" (integer). A file's config must have exactly these keys.
    build(cfg, dtype) -> the module (its parameters are overwritten by the file's).
    parameter_shapes(cfg) -> [(dotted name, shape)] exactly as the built module's
        ``named_parameters()`` will list them; computed without allocating, so the
        file's tensors are checked before ``build`` runs."""
    if not isinstance(type_name, str) or not type_name or type_name == "Sequential":
        raise ValueError(f"type_name: expected a module type name other than 'Sequential', got {type_name!r}")
    bad = {k: v for k, v in dict(fields).items() if v not in _FIELD_KINDS or k == "type"}
    if bad:
        raise ValueError(f"fields: unknown kinds or reserved keys {bad}; kinds are {', '.join(_FIELD_KINDS)}")
    _REGISTRY[type_name] = _Spec(dict(fields), build, parameter_shapes)


def _linear_shapes(cfg):
    out, inp = cfg["out_features"], cfg["in_features"]
    return [("weight", (out, inp))] + ([("bias", (out,))] if cfg["bias"] else [])


register_module(
    "Linear", fields={"in_features": "size", "out_features": "size", "bias": "bool", "activation": "activation"},
    build=lambda cfg, dtype: Linear(cfg["in_features"], cfg["out_features"], bias=cfg["bias"],
                                    activation=cfg["activation"], dtype=dtype, init=None),
    parameter_shapes=_linear_shapes)
register_module("Activation", fields={"mode": "activation"}, build=lambda cfg, dtype: Activation(cfg["mode"]),
                parameter_shapes=lambda cfg: [])
register_module("Dropout", fields={"p": "probability", "seed": "seed"},
                build=lambda cfg, dtype: Dropout(cfg["p"], seed=cfg["seed"]), parameter_shapes=lambda cfg: [])


class _BadFile(Exception):
    """A problem with the file's content; ``load`` turns it into a ValueError naming the file."""


# ---- save ---------------------------------------------------------------------------------------
def _safetensors_numpy():
    try:
        import safetensors.numpy
    except ImportError:
        raise ImportError("layerwise model files need the 'safetensors' package: "
                          "pip install safetensors (a dependency of layerwise)") from None
    return safetensors.numpy


def save(net, path):
    """Writes ``net`` to ``path`` in the model file format v1 (safetensors; see the module doc).

    The write is atomic: a failed or interrupted save leaves any previous file at
    ``path`` intact. ``load(path)`` rebuilds the net (on the CPU) and predicts
    bit-identically."""
    from .module import Module

    if not isinstance(net, Module):
        raise TypeError(f"net: expected a layerwise.nn.Module, got {type(net).__name__}")
    try:
        config = net.config()
    except NotImplementedError:
        raise ValueError(f"net: {type(net).__name__} has no config(), so it cannot be saved") from None
    named = net.named_parameters()
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise ValueError(f"net: parameter names are not unique: {names}")
    dtypes = {str(p.data.dtype) for _, p in named}
    if len(dtypes) > 1:
        raise ValueError(f"net: parameters mix dtypes {sorted(dtypes)}; a model file has one dtype")
    dtype = dtypes.pop() if dtypes else "float32"
    if dtype not in DTYPES:
        raise ValueError(f"net: parameter dtype {dtype} cannot be saved; expected float32 or float64")
    st = _safetensors_numpy()
    tensors = {n: np.ascontiguousarray(to_device(p.data, "cpu")) for n, p in named}
    metadata = {"format": FORMAT, "format_version": FORMAT_VERSION, "dtype": dtype,
                "architecture": json.dumps(config, separators=(",", ":"))}
    write_atomic_path(path, lambda tmp: st.save_file(tensors, tmp, metadata=metadata))


# ---- load ---------------------------------------------------------------------------------------
def load(path, *, device="cpu"):
    """Reads a net written by ``save`` (or an .npz file of earlier versions).

    Raises ValueError naming the file and the problem for a malformed, truncated or
    inconsistent file, OSError when the file cannot be read, and ImportError for a
    safetensors file when the ``safetensors`` package is missing."""
    check_device(device)
    path = os.fspath(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(8)
    try:
        if head.startswith(_ZIP_MAGIC):
            net = _load_npz(path, size)
        else:
            net = _load_safetensors(path, size, head)
    except _BadFile as e:
        raise ValueError(f"path: {path}: {e}") from None
    return net.to(device) if device != "cpu" else net


def _load_safetensors(path, size, head):
    if len(head) < 8:
        raise _BadFile(f"file of {size} bytes is too short for a model file (needs an 8-byte header length)")
    header_len = int.from_bytes(head, "little")
    if header_len > size - 8:
        raise _BadFile(f"header length {header_len} exceeds the file size {size} (truncated or not a model file)")
    if header_len > MAX_HEADER_BYTES:
        raise _BadFile(f"header length {header_len} exceeds the limit of {MAX_HEADER_BYTES} bytes")
    _safetensors_numpy()  # a clear ImportError when the package is missing
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="numpy") as f:
            meta = f.metadata() or {}
            dtype, cfg = _check_metadata(meta, FORMAT)
            if meta.get("format_version") != FORMAT_VERSION:
                raise _BadFile(f"format_version {meta.get('format_version')!r} is not supported "
                               f"(this version reads {FORMAT_VERSION!r})")
            expected = dict(_check_architecture(cfg))
            present = set(f.keys())
            _check_names(present, expected)
            want = _TENSOR_DTYPES[dtype]
            for name, shape in expected.items():
                sl = f.get_slice(name)
                got = sl.get_dtype()
                if got != want:
                    raise _BadFile(f"tensor {name!r} has dtype {got}, the file's dtype {dtype} needs {want}")
                got_shape = tuple(int(s) for s in sl.get_shape())
                if got_shape != shape:
                    raise _BadFile(f"tensor {name!r} has shape {list(got_shape)}, the architecture needs {list(shape)}")
            net = _build_checked(cfg, dtype, expected)
            for name, p in net.named_parameters():
                _assign(p, f.get_tensor(name))
    except SafetensorError as e:
        raise _BadFile(f"not a valid safetensors file: {e}") from None
    return net


def _load_npz(path, size):
    try:
        zf = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError, ValueError) as e:
        raise _BadFile(f"not a valid .npz file: {e}") from None
    with zf:
        members = {}
        for info in zf.infolist():
            # A member that claims more bytes than the whole file is compressed (np.savez never
            # compresses) and could expand without bound: refuse it before reading.
            if info.file_size > size:
                raise _BadFile(f"member {info.filename!r} claims {info.file_size} bytes, more than the "
                               f"file's {size}")
            members[info.filename] = info
        if "__meta__.npy" not in members:
            raise _BadFile("not a layerwise network file (no __meta__ entry)")
        try:
            meta = _read_npy(zf, "__meta__.npy", None)
            meta = json.loads(str(meta[()])) if meta.dtype.kind == "U" and meta.ndim == 0 else None
        except (ValueError, RecursionError):
            meta = None
        if not isinstance(meta, dict):
            raise _BadFile("__meta__ is not a JSON object string")
        arch = meta.get("architecture")
        dtype, cfg = _check_metadata({"format": meta.get("format"), "dtype": meta.get("dtype"),
                                      "architecture": json.dumps(arch) if isinstance(arch, dict) else arch},
                                     LEGACY_FORMAT)
        expected = _check_architecture(cfg)  # in parameters() order: the .npz numbers them
        params = sorted((m for m in members if m != "__meta__.npy"), key=_param_index)
        if len(params) != len(expected):
            raise _BadFile(f"holds {len(params)} parameters, the architecture needs {len(expected)}")
        for i, (member, (name, shape)) in enumerate(zip(params, expected)):
            if member != f"param_{i}.npy":
                raise _BadFile(f"unexpected entry {member!r} (parameters are param_0 ... param_{len(expected) - 1})")
            got_dtype, got_shape = _npy_header(zf, member)
            if got_dtype != np.dtype(dtype):
                raise _BadFile(f"parameter {i} ({name}) has dtype {got_dtype}, the file's dtype is {dtype}")
            if got_shape != shape:
                raise _BadFile(f"parameter {i} ({name}) has shape {list(got_shape)}, the architecture needs "
                               f"{list(shape)}")
        net = _build_checked(cfg, dtype, dict(expected))
        for i, (_, p) in enumerate(net.named_parameters()):
            _assign(p, _read_npy(zf, f"param_{i}.npy", np.dtype(dtype)))
    return net


def _param_index(member):
    stem = member[:-4] if member.endswith(".npy") else member
    digits = stem[len("param_"):] if stem.startswith("param_") else ""
    return (0, int(digits)) if digits.isdigit() and len(digits) < 10 else (1, member)


def _npy_header(zf, member):
    """(dtype, shape) of an .npy member, read from its header alone."""
    with zf.open(member) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
            elif version == (2, 0):
                shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, OSError, EOFError, SyntaxError) as e:
            raise _BadFile(f"entry {member!r} is not a valid .npy array: {e}") from None
    return dtype, tuple(int(s) for s in shape)


def _read_npy(zf, member, dtype):
    if dtype is not None and _npy_header(zf, member)[0] != dtype:
        raise _BadFile(f"entry {member!r} does not have dtype {dtype}")
    with zf.open(member) as fh:
        try:
            return np.lib.format.read_array(fh, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise _BadFile(f"entry {member!r} cannot be read: {e}") from None


def _assign(p, array):
    a = np.ascontiguousarray(array)
    if not a.flags.writeable:
        a = a.copy()
    p.data = a
    p.grad = np.zeros(a.shape, a.dtype)  # calloc: costs nothing until a backward pass writes it


def _check_metadata(meta, fmt):
    """(dtype, parsed architecture) from the metadata strings, after checking format and dtype."""
    if meta.get("format") != fmt:
        raise _BadFile(f"not a layerwise model file (format {meta.get('format')!r}, expected {fmt!r})")
    dtype = meta.get("dtype")
    if dtype not in DTYPES:
        raise _BadFile(f"dtype {dtype!r} is not supported; expected float32 or float64")
    arch = meta.get("architecture")
    if not isinstance(arch, str):
        raise _BadFile("architecture is missing or not a JSON string")
    if len(arch) > MAX_ARCHITECTURE_CHARS:
        raise _BadFile(f"architecture JSON of {len(arch)} characters exceeds the limit of {MAX_ARCHITECTURE_CHARS}")
    try:
        cfg = json.loads(arch)
    except RecursionError:
        raise _BadFile("architecture JSON is nested too deeply") from None
    except ValueError as e:
        raise _BadFile(f"architecture is not valid JSON: {e}") from None
    return dtype, cfg


def _check_architecture(cfg):
    """[(dotted name, shape)] of the parameters ``cfg`` declares, in parameters() order."""
    count = [0]
    return _walk(cfg, "", 0, count)


def _walk(cfg, where, depth, count):
    label = where.rstrip(".") or "the root"
    if depth > MAX_DEPTH:
        raise _BadFile(f"architecture is nested more than {MAX_DEPTH} levels deep")
    count[0] += 1
    if count[0] > MAX_MODULES:
        raise _BadFile(f"architecture has more than {MAX_MODULES} modules")
    if not isinstance(cfg, dict):
        raise _BadFile(f"architecture: module at {label} is not a JSON object")
    kind = cfg.get("type")
    if kind == "Sequential":
        _check_keys(cfg, {"modules"}, kind, label)
        modules = cfg["modules"]
        if not isinstance(modules, list):
            raise _BadFile(f"architecture: Sequential at {label} has no list of modules")
        shapes = []
        for i, sub in enumerate(modules):
            shapes.extend(_walk(sub, f"{where}{i}.", depth + 1, count))
        return shapes
    spec = _REGISTRY.get(kind) if isinstance(kind, str) else None
    if spec is None:
        known = ", ".join(["Sequential", *sorted(_REGISTRY)])
        raise _BadFile(f"architecture: unknown module type {kind!r} at {label} (known: {known})")
    _check_keys(cfg, set(spec.fields), kind, label)
    for key, field_kind in spec.fields.items():
        _check_field(cfg[key], field_kind, f"{kind} at {label}: {key}")
    return [(where + name, tuple(shape)) for name, shape in spec.parameter_shapes(cfg)]


def _check_keys(cfg, keys, kind, label):
    got = set(cfg) - {"type"}
    if got != keys:
        missing, extra = sorted(keys - got), sorted(got - keys)
        raise _BadFile(f"architecture: {kind} at {label}: "
                       + "; ".join(([f"missing {missing}"] if missing else []) + ([f"unknown {extra}"] if extra else [])))


def _check_field(v, kind, label):
    is_int = isinstance(v, int) and not isinstance(v, bool)
    if kind == "size":
        ok = is_int and 1 <= v <= MAX_FEATURES
        want = f"an integer in [1, {MAX_FEATURES}]"
    elif kind == "bool":
        ok, want = isinstance(v, bool), "true or false"
    elif kind == "activation":
        ok, want = isinstance(v, str) and v in ACTIVATIONS, f"one of {', '.join(ACTIVATIONS)}"
    elif kind == "probability":
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v < 1
        want = "a number in [0, 1)"
    else:  # seed
        ok, want = is_int and -(1 << 63) <= v < (1 << 64), "a 64-bit integer"
    if not ok:
        raise _BadFile(f"architecture: {label} is {json.dumps(v)[:40]}, expected {want}")


def _check_names(present, expected):
    missing = sorted(set(expected) - present)
    extra = sorted(present - set(expected))
    if missing:
        raise _BadFile(f"missing tensor(s) {missing[:5]}{' ...' if len(missing) > 5 else ''} the architecture needs")
    if extra:
        raise _BadFile(f"unexpected tensor(s) {extra[:5]}{' ...' if len(extra) > 5 else ''} the architecture "
                       f"does not use")


def _build_checked(cfg, dtype, expected):
    """The module ``cfg`` describes; its parameters must be the ``expected`` names and shapes."""
    try:
        net = _build(cfg, dtype)
    except (ValueError, TypeError) as e:
        raise _BadFile(f"architecture: {e}") from None
    built = {n: tuple(p.data.shape) for n, p in net.named_parameters()}
    if built != expected:  # a registered builder disagreeing with its parameter_shapes
        raise RuntimeError(f"load: the built module's parameters {built} differ from the declared {expected}")
    return net


def _build(cfg, dtype):
    if cfg["type"] == "Sequential":
        return Sequential(*[_build(c, dtype) for c in cfg["modules"]])
    return _REGISTRY[cfg["type"]].build(cfg, dtype)
