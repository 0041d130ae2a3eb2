"""ndcl_torch.layerfile - the safetensors "layer file" of ndcl, written and read in
plain Python (numpy only; no safetensors package needed).

A layer file holds one deconvolution layer: its state_dict tensors under
their state_dict names and shapes, the conv freeze counter as an int64
scalar `counter`, and the constructor arguments as strings in
`__metadata__` (kind = "conv2d" | "linear" | "channel", booleans
"true"/"false", floats as Python's repr()).

Container: an 8-byte little-endian u64 header length N, N bytes of JSON
{"name": {"dtype", "shape", "data_offsets": [begin, end]}, ...,
"__metadata__": {str: str}} padded with spaces to a multiple of 8 bytes,
then the raw little-endian data of every tensor, contiguous, in header
order (offsets relative to the start of the data).

API
  write_safetensors(path, tensors, metadata=None)   tensors: name -> array
  read_safetensors(path) -> (OrderedDict name -> numpy array, metadata)
  layer_tensors_metadata(module, block=None) -> (tensors, metadata)
      the layer file contents of a FastDeconv / Delinear / ChannelDeconv,
      matched by class name, so the original repository's modules work
      too (their attributes are read, e.g. sampling_stride // stride).
  write_layer(path, module, block=None)
"""

import json
import math
import struct
from collections import OrderedDict

import numpy as np

# safetensors dtype name <-> numpy little-endian dtype
_DTYPES = {
    "F32": np.dtype("<f4"),
    "F64": np.dtype("<f8"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
}
_NP_TO_ST = {np.dtype(v).str: k for k, v in _DTYPES.items()}

CONV_CLASS = "FastDeconv"
LINEAR_CLASS = "Delinear"
CHANNEL_CLASS = "ChannelDeconv"
KIND_OF_CLASS = {CONV_CLASS: "conv2d", LINEAR_CLASS: "linear", CHANNEL_CLASS: "channel"}


def _to_numpy(t):
    """A tensor or array-like as a C-ordered numpy array (float tensors of
    any precision become float32; integer tensors int64)."""
    if hasattr(t, "detach"):  # torch.Tensor, without importing torch here
        t = t.detach().cpu()
        if t.is_floating_point():
            t = t.float()
        else:
            t = t.long()
        t = t.numpy()
    a = np.asarray(t)
    if a.dtype.kind == "f" and a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    elif a.dtype.kind in "iub":
        a = a.astype(np.int64)
    # (np.ascontiguousarray would turn a 0-d array into a 1-d one)
    return np.array(a, order="C", copy=True)


def write_safetensors(path, tensors, metadata=None):
    """Writes tensors (an ordered mapping name -> numpy array / torch tensor)
    and metadata (str -> str) to path. float64 arrays stay F64; use
    float32 arrays for F32."""
    header = OrderedDict()
    blobs = []
    offset = 0
    for name, t in tensors.items():
        if name == "__metadata__" or not name:
            raise ValueError("bad tensor name %r" % (name,))
        a = _to_numpy(t)
        le = a.dtype.newbyteorder("<")
        st = _NP_TO_ST.get(le.str)
        if st is None:
            raise ValueError("tensor %s: unsupported dtype %s" % (name, a.dtype))
        raw = a.astype(le, copy=False).tobytes(order="C")
        header[name] = OrderedDict([("dtype", st), ("shape", [int(s) for s in a.shape]),
                                    ("data_offsets", [offset, offset + len(raw)])])
        blobs.append(raw)
        offset += len(raw)
    if metadata:
        md = OrderedDict()
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise ValueError("metadata must map str to str (%r: %r)" % (k, v))
            md[k] = v
        header["__metadata__"] = md
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((-len(hj)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for raw in blobs:
            f.write(raw)


def read_safetensors(path):
    """Reads a safetensors file: (OrderedDict name -> numpy array in header
    order, metadata dict). Checks that the offsets tile the data exactly."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 8:
        raise ValueError("%s: too short for a safetensors file" % path)
    (n,) = struct.unpack("<Q", buf[:8])
    if 8 + n > len(buf):
        raise ValueError("%s: header length %d past the end of the file" % (path, n))
    header = json.loads(buf[8:8 + n].decode("utf-8"), object_pairs_hook=OrderedDict)
    data = buf[8 + n:]
    metadata = dict(header.pop("__metadata__", {}) or {})
    out = OrderedDict()
    spans = []
    for name, info in header.items():
        dt = _DTYPES.get(info["dtype"])
        if dt is None:
            raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, info["dtype"]))
        shape = tuple(int(s) for s in info["shape"])
        b, e = (int(v) for v in info["data_offsets"])
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if e - b != count * dt.itemsize or e > len(data) or b < 0:
            raise ValueError("%s: tensor %s: bad data_offsets %r for shape %r" % (path, name, [b, e], shape))
        spans.append((b, e))
        out[name] = np.frombuffer(data, dtype=dt, count=count, offset=b).reshape(shape).copy()
    spans.sort()
    pos = 0
    for b, e in spans:
        if b != pos:
            raise ValueError("%s: tensor data not contiguous at offset %d" % (path, b))
        pos = e
    if pos != len(data):
        raise ValueError("%s: %d trailing bytes after the tensor data" % (path, len(data) - pos))
    return out, metadata


# ---------------------------------------------------------------- layers

def _b(v):
    return "true" if v else "false"


def _f(v):
    return repr(float(v))


def _pair_str(v, what):
    """An int, or a pair: "k" when both entries are equal, else "a,b"."""
    if isinstance(v, (tuple, list)):
        if len(v) == 1:
            return str(int(v[0]))
        if len(v) != 2:
            raise ValueError("%s: expected an int or a pair, got %r" % (what, v))
        a, b = int(v[0]), int(v[1])
        return str(a) if a == b else "%d,%d" % (a, b)
    return str(int(v))


def _first(v):
    return int(v[0]) if isinstance(v, (tuple, list)) else int(v)


def layer_kind(module):
    """"conv2d" / "linear" / "channel" for the three deconvolution classes
    (matched by class name), else None."""
    return KIND_OF_CLASS.get(type(module).__name__)


def layer_metadata(module, block=None):
    """The layer file metadata of a module, read from its attributes (the
    attribute names of the original classes). block: the block to record
    (default module.block; ndcl clamps it again on load, so the clamped
    value loads identically)."""
    kind = layer_kind(module)
    if kind is None:
        raise ValueError("not a deconvolution layer: %s" % type(module).__name__)
    for attr in ("block", "eps", "n_iter", "momentum"):
        if not hasattr(module, attr):
            raise ValueError("%s has no attribute %r (an unsupported version of the class?)"
                             % (type(module).__name__, attr))
    blk = int(module.block if block is None else block)
    md = OrderedDict()
    md["kind"] = kind
    if kind == "conv2d":
        for attr in ("sampling_stride", "freeze", "freeze_iter", "stride", "kernel_size"):
            if not hasattr(module, attr):
                raise ValueError("FastDeconv has no attribute %r (an unsupported version of the class?)" % attr)
        stride = module.stride
        s = _first(stride)
        if isinstance(stride, (tuple, list)) and len(stride) == 2 and int(stride[0]) != int(stride[1]):
            raise ValueError("FastDeconv: non-square stride %r is not supported" % (tuple(stride),))
        # The original stores sampling_stride * stride.
        ss_total = int(module.sampling_stride)
        if ss_total % s != 0:
            raise ValueError("FastDeconv: sampling_stride %d is not a multiple of stride %d" % (ss_total, s))
        md["in_channels"] = str(int(module.in_channels))
        md["out_channels"] = str(int(module.out_channels))
        md["kernel_size"] = _pair_str(module.kernel_size, "kernel_size")
        md["stride"] = _pair_str(stride, "stride")
        md["padding"] = _pair_str(module.padding, "padding")
        md["dilation"] = _pair_str(module.dilation, "dilation")
        md["groups"] = str(int(module.groups))
        md["bias"] = _b(module.bias is not None)
        md["block"] = str(blk)
        md["sampling_stride"] = str(ss_total // s)
        md["eps"] = _f(module.eps)
        md["n_iter"] = str(int(module.n_iter))
        md["momentum"] = _f(module.momentum)
        md["freeze"] = _b(module.freeze)
        md["freeze_iter"] = str(int(module.freeze_iter))
    elif kind == "linear":
        md["in_features"] = str(int(module.in_features))
        md["out_features"] = str(int(module.out_features))
        md["bias"] = _b(module.bias is not None)
        md["block"] = str(blk)
        md["eps"] = _f(module.eps)
        md["n_iter"] = str(int(module.n_iter))
        md["momentum"] = _f(module.momentum)
    else:
        if not hasattr(module, "sampling_stride"):
            raise ValueError("ChannelDeconv has no attribute 'sampling_stride' (an unsupported version of the class?)")
        md["block"] = str(blk)
        md["eps"] = _f(module.eps)
        md["n_iter"] = str(int(module.n_iter))
        md["momentum"] = _f(module.momentum)
        md["sampling_stride"] = str(int(module.sampling_stride))
    return md


def layer_tensors_metadata(module, block=None):
    """(tensors, metadata) of the layer file of module: its state_dict in
    order (floats as float32; num_batches_tracked int64), plus `counter`
    (int64 scalar) for a conv layer."""
    md = layer_metadata(module, block)
    tensors = OrderedDict()
    for name, t in module.state_dict().items():
        tensors[name] = _to_numpy(t)
    if md["kind"] == "conv2d":
        tensors["counter"] = np.array(int(getattr(module, "counter", 0)), dtype=np.int64)
    return tensors, md


def write_layer(path, module, block=None):
    """Writes module's layer file to path."""
    tensors, md = layer_tensors_metadata(module, block)
    write_safetensors(path, tensors, md)


def parse_pair(s):
    """"3" -> (3, 3); "3,5" -> (3, 5)."""
    parts = [int(p) for p in str(s).split(",")]
    if len(parts) == 1:
        return (parts[0], parts[0])
    if len(parts) == 2:
        return (parts[0], parts[1])
    raise ValueError("bad pair %r" % (s,))


def parse_bool(s):
    if s in ("true", "false"):
        return s == "true"
    raise ValueError("bad boolean %r (expected true/false)" % (s,))


def effective_block(channels, block, groups=1):
    """The block the original modules use: channels when block is larger,
    gcd(block, channels) when it does not divide them, channels/groups
    when grouped."""
    if block > channels:
        block = channels
    elif channels % block != 0:
        block = math.gcd(block, channels)
    if groups > 1:
        block = channels // groups
    return block
