"""ndcl_torch - ndcl for PyTorch users: trained network deconvolution layers
out to ndcl's layer files, folded into plain convolutions, and back.

The deconvolution layers are the classes FastDeconv, Delinear and
ChannelDeconv, matched by class name: those of the original repository
(models/deconv.py) and those of ndcl_torch.deconv_torch alike. Geometry and
settings are read from the module objects themselves, never guessed.

  export(module, outdir)            every deconvolution layer to
                                    OUTDIR/<module name>.safetensors
  fold(module, example_input=None)  a copy with every layer replaced by the
                                    plain nn.Conv2d / nn.Linear that computes
                                    its evaluation arithmetic
  load(module, outdir)              layer files (ndcl-run --save-state,
                                    ndcl-train --save) back into the modules,
                                    the conv freeze counter included
  layers(module)                    [(name, kind, submodule)] of the layers

Submodules: layerfile (the safetensors layer file, numpy only),
deconv_torch (ndcl's own PyTorch modules), cli (ndcl-export-pytorch).
Importing the package needs numpy only; the functions need torch.
"""

import copy
import os
from collections import OrderedDict

from . import layerfile

__all__ = ["export", "fold", "load", "layers", "layer_kind", "layer_file_name"]

layer_kind = layerfile.layer_kind


def layer_file_name(name):
    """The file name of the layer called name in its model ("layer" for a
    model that is itself one layer)."""
    return (name if name else "layer") + ".safetensors"


def layers(module):
    """[(name, kind, submodule)] of every deconvolution layer of module, in
    named_modules() order ("" for module itself)."""
    return [(n, layer_kind(m), m) for n, m in module.named_modules() if layer_kind(m) is not None]


def export(module, outdir):
    """Writes every deconvolution layer of module to
    OUTDIR/<module name>.safetensors (OUTDIR created) and returns
    [(path, kind, name)]. Every layer is checked before anything is written;
    ValueError names the layer that cannot be written."""
    out = []
    for name, kind, mod in layers(module):
        try:
            tensors, md = layerfile.layer_tensors_metadata(mod)
        except ValueError as e:
            raise ValueError("%s: %s" % (name or "<model>", e))
        out.append((os.path.join(outdir, layer_file_name(name)), kind, name, tensors, md))
    if out:
        os.makedirs(outdir, exist_ok=True)
    for path, kind, name, tensors, md in out:
        layerfile.write_safetensors(path, tensors, md)
    return [o[:3] for o in out]


# ------------------------------------------------------------------ fold

def _conv_folded(m):
    """(W', b') of a FastDeconv's evaluation: the running mean and running
    deconvolution matrix folded into the weight and bias, with the module's
    own operations (so in its dtype, W' is what its forward computes)."""
    import torch
    C = int(m.in_channels)
    B = int(m.block)
    kh, kw = m.kernel_size
    nf = kh * kw * B
    w0 = m.weight.detach()
    with torch.no_grad():
        if m.groups == 1:
            w = w0.view(-1, nf, C // B).transpose(1, 2).contiguous().view(-1, nf) @ m.running_deconv
            corr = (w @ m.running_mean.unsqueeze(1)).view(w0.shape[0], -1).sum(1)
            w = w.view(-1, C // B, nf).transpose(1, 2).contiguous()
        else:
            w = w0.view(C // B, -1, nf) @ m.running_deconv
            corr = (w @ m.running_mean.view(-1, nf, 1)).view(w0.shape[0])
        b = -corr if m.bias is None else m.bias.detach() - corr
    return w.reshape(w0.shape).clone(), b.clone()


def _linear_folded(m):
    import torch
    B = int(m.block)
    w0 = m.weight.detach()
    with torch.no_grad():
        w = w0.view(-1, B) @ m.running_deconv
        corr = (w @ m.running_mean.unsqueeze(1)).view(w0.shape[0], -1).sum(1)
        b = -corr if m.bias is None else m.bias.detach() - corr
    return w.view(w0.shape).clone(), b.clone()


def _channel_folded(m, C):
    """(W [C, C], b [C]) of a ChannelDeconv's evaluation on C channels: the
    first c = (C // B) * B channels are B rows of C // B consecutive
    channels each, mixed by D after removing running_mean1, so W holds
    kron(D, I) and b = -(D mean1) per row; the leftover channels are
    normalised by running_mean2 and running_var (a diagonal)."""
    import torch
    B = int(m.block)
    if int(m.num_batches_tracked) == 0:
        raise ValueError("ChannelDeconv has not seen a training batch (num_batches_tracked 0): "
                         "its evaluation takes the means of its input and cannot be folded")
    k = C // B
    if k == 0:
        raise ValueError("ChannelDeconv: block %d is larger than the %d channels" % (B, C))
    c = k * B
    D = m.running_deconv.detach()
    dt = D.dtype
    with torch.no_grad():
        W = torch.zeros(C, C, dtype=dt, device=D.device)
        b = torch.zeros(C, dtype=dt, device=D.device)
        W[:c, :c] = torch.kron(D, torch.eye(k, dtype=dt, device=D.device))
        b[:c] = -(D @ m.running_mean1.view(B, 1).to(dt)).view(B).repeat_interleave(k)
        if c < C:
            inv = 1.0 / (m.running_var.view(()).to(dt) + m.eps).sqrt()
            idx = torch.arange(c, C, device=D.device)
            W[idx, idx] = inv
            b[c:] = -m.running_mean2.view(()).to(dt) * inv
    return W, b


def _input_dims(module, example_input):
    """{id(ChannelDeconv): (dims, channels)} of the inputs each
    ChannelDeconv of module sees on example_input (a copy runs it in
    evaluation mode)."""
    import torch
    probe = copy.deepcopy(module).eval()
    seen = {}
    originals = {id(pm): om for (_, pm), (_, om) in zip(probe.named_modules(), module.named_modules())}
    hooks = []
    for pm in probe.modules():
        if layer_kind(pm) == "channel":
            def hook(mod, inp, _om=originals[id(pm)]):
                seen[id(_om)] = (inp[0].dim(), int(inp[0].shape[1]))
            hooks.append(pm.register_forward_pre_hook(hook))
    with torch.no_grad():
        probe(example_input)
    for h in hooks:
        h.remove()
    return seen


def _plain(m, kind, seen):
    import torch
    import torch.nn as nn
    if kind == "conv2d":
        w, b = _conv_folded(m)
        p = nn.Conv2d(int(m.in_channels), int(m.out_channels), tuple(m.kernel_size),
                      stride=tuple(m.stride), padding=tuple(m.padding), dilation=tuple(m.dilation),
                      groups=int(m.groups), bias=True, padding_mode="zeros",
                      device=w.device, dtype=w.dtype)
    elif kind == "linear":
        w, b = _linear_folded(m)
        p = nn.Linear(int(m.in_features), int(m.out_features), bias=True,
                      device=w.device, dtype=w.dtype)
    else:
        if id(m) not in seen:
            raise ValueError("ChannelDeconv: its channels are known only from its input; "
                             "fold it with an example input (the CLI's --input-shape)")
        dims, C = seen[id(m)]
        W, b = _channel_folded(m, C)
        if dims == 2:
            p = nn.Linear(C, C, bias=True, device=W.device, dtype=W.dtype)
            w = W
        elif dims == 4:
            p = nn.Conv2d(C, C, 1, bias=True, device=W.device, dtype=W.dtype)
            w = W.view(C, C, 1, 1)
        else:
            raise ValueError("ChannelDeconv: a %d-D input cannot be folded" % dims)
    with torch.no_grad():
        p.weight.copy_(w)
        p.bias.copy_(b)
    p.train(m.training)
    return p


def fold(module, example_input=None):
    """A deep copy of module in which every FastDeconv is an nn.Conv2d,
    every Delinear an nn.Linear and every ChannelDeconv a 1x1 nn.Conv2d
    (nn.Linear where it sees 2-D input), each with the weight and bias of
    the layer's evaluation arithmetic (running mean and running
    deconvolution matrix folded in); every other module is copied as it is.
    The copy computes what module computes in evaluation mode.

    example_input: a batch the model accepts (run once on a copy in
    evaluation mode); needed where the model has a ChannelDeconv, whose
    channels and input dimensions only its input tells. ValueError names a
    layer that cannot be folded (a ChannelDeconv without an example input
    or that has not trained a batch)."""
    seen = _input_dims(module, example_input) if example_input is not None else {}
    targets = [(n, k, m) for n, k, m in layers(module)]
    plain = {}
    for name, kind, m in targets:
        try:
            plain[id(m)] = _plain(m, kind, seen)
        except ValueError as e:
            raise ValueError("%s: %s" % (name or "<model>", e))
    if layer_kind(module) is not None:
        return plain[id(module)]
    # Deep copy with the layers swapped in place of their copies.
    memo = {id(m): plain[id(m)] for _, _, m in targets}
    return copy.deepcopy(module, memo)


# ------------------------------------------------------------------ load

_GEOMETRY = {
    "conv2d": ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation",
               "groups", "bias"),
    "linear": ("in_features", "out_features", "bias"),
    "channel": (),
}


def load(module, outdir, missing_ok=False):
    """Loads the layer files OUTDIR/<module name>.safetensors (as export()
    names them; ndcl-run --save-state and ndcl-train --save write the same
    format) into the deconvolution layers of module, in place: every
    state_dict tensor (strictly: no tensor missing, none left over, shapes
    equal up to dimensions of size 1) and a conv layer's freeze counter
    (the attribute counter). A file whose kind or geometry differs from the
    module's is a ValueError naming both; so is a layer without a file
    unless missing_ok. Returns the names loaded."""
    import torch
    staged = []
    for name, kind, mod in layers(module):
        path = os.path.join(outdir, layer_file_name(name))
        if not os.path.exists(path):
            if missing_ok:
                continue
            raise ValueError("%s: no layer file %s" % (name or "<model>", path))
        tensors, md = layerfile.read_safetensors(path)
        mine = layerfile.layer_metadata(mod)
        if md.get("kind") != kind:
            raise ValueError("%s: %s holds a %s layer, the module is %s"
                             % (name or "<model>", path, md.get("kind"), kind))
        for key in _GEOMETRY[kind] + ("block",):
            a, b = md.get(key), mine.get(key)
            if key == "block" and a is not None and b is not None:
                # ndcl and the modules clamp the block alike
                ch = int(mine.get("in_channels", mine.get("in_features", 0)) or 0)
                if ch:
                    a = str(layerfile.effective_block(ch, int(a), int(mine.get("groups", 1))))
            if a != b:
                raise ValueError("%s: %s has %s %s, the module %s" % (name or "<model>", path, key, a, b))
        sd = mod.state_dict()
        new = OrderedDict()
        for k, ref in sd.items():
            if k not in tensors:
                raise ValueError("%s: %s lacks tensor %s" % (name or "<model>", path, k))
            t = torch.from_numpy(tensors[k].copy())
            if t.numel() != ref.numel() or [s for s in t.shape if s != 1] != \
                    [s for s in ref.shape if s != 1]:
                raise ValueError("%s: %s: tensor %s has shape %s, the module's %s"
                                 % (name or "<model>", path, k, list(t.shape), list(ref.shape)))
            new[k] = t.reshape(ref.shape).to(dtype=ref.dtype, device=ref.device)
        extra = [k for k in tensors if k not in sd and k != "counter"]
        if extra:
            raise ValueError("%s: %s holds tensors the module has not: %s"
                             % (name or "<model>", path, ", ".join(extra)))
        counter = int(tensors["counter"]) if "counter" in tensors else None
        staged.append((name, mod, new, counter))
    for name, mod, new, counter in staged:
        mod.load_state_dict(new, strict=True)
        if counter is not None:
            mod.counter = counter
    return [s[0] for s in staged]
