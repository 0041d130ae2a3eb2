#!/usr/bin/python3
"""export_pytorch.py - exports the network deconvolution layers of a PyTorch
model (FastDeconv, Delinear, ChannelDeconv: the original repository's
classes or tools/deconv_torch.py's, matched by class name) to ndcl layer
files: OUTDIR/<module name>.safetensors, one per layer (format: see
tools/layerfile.py; tensors by their state_dict names and shapes, as the
README's "Arithmetic" section lists them).

  /usr/bin/python3 tools/export_pytorch.py MODEL OUTDIR [options]
  ndcl-export-pytorch MODEL OUTDIR [options]          (installed copy)

Installed, this file lives in <prefix>/share/ndcl beside layerfile.py and
deconv_torch.py (so that models of deconv_torch's classes unpickle), and
<prefix>/bin/ndcl-export-pytorch is a symbolic link to it.

MODEL is a file written by torch.save of either
  - a whole nn.Module: every deconvolution submodule is written with its
    state_dict and its constructor arguments read from its attributes
    (the original FastDeconv stores sampling_stride*stride and the clamped
    block; both are handled). Unpickling needs the module's classes to be
    importable: pass the original repository's root with --pythonpath.
  - a state_dict (or a dict holding one under "state_dict" / "model" /
    "model_state_dict" / "net"): keys are grouped by prefix and each
    group's kind is inferred from its tensors (running_mean1 -> channel;
    running_deconv with a 4-D weight -> conv2d, with a 2-D weight ->
    linear). Shapes give channels, kernel, groups and block; the rest
    cannot be inferred and must be given with the options below (or
    --use-defaults for the original constructors' defaults).
"""

import argparse
import os
import sys
from collections import OrderedDict

# realpath: run through the installed bin/ndcl-export-pytorch link, the
# modules beside it are those of share/ndcl.
HERE = os.path.dirname(os.path.realpath(__file__))
sys.path.insert(0, HERE)

import layerfile  # noqa: E402

EPILOG = """\
state_dict input: values that a state_dict does not hold
  conv2d : --stride --padding --dilation --sampling-stride --eps --n-iter --momentum
           (optional, default false / 100 / 0: --freeze --freeze-iter --counter)
  linear : --eps --n-iter --momentum
  channel: --eps --n-iter --momentum --sampling-stride
Each option applies to every layer of a kind that has it; --eps etc. can be
given per kind as --conv-eps / --linear-eps / --channel-eps (also n-iter,
momentum, sampling-stride). --set NAME.KEY=VALUE overrides one layer
(e.g. --set features.0.padding=3). A value missing for a layer is an error
unless --use-defaults fills it with the original constructor's default
(conv: stride 1, padding 0, dilation 1, sampling_stride 3, eps 1e-5,
n_iter 5, momentum 0.1; linear: eps 1e-5, n_iter 5, momentum 0.1;
channel: eps 1e-2, n_iter 5, momentum 0.1, sampling_stride 3).
stride/padding/dilation accept "k" or "kh,kw".

Whole-module input ignores these options. Files are named after the module
name in the model ("features.0.safetensors"); a model that is itself one
layer is written as "layer.safetensors". Exit status 1 when the model has
no deconvolution layer or a value is missing, 2 on usage errors.
"""

STATE_KEYS = ("state_dict", "model_state_dict", "model", "net")

DEFAULTS = {
    "conv2d": dict(stride="1", padding="0", dilation="1", sampling_stride="3", eps="1e-05",
                   n_iter="5", momentum="0.1", freeze="false", freeze_iter="100", counter="0"),
    "linear": dict(eps="1e-05", n_iter="5", momentum="0.1"),
    "channel": dict(eps="0.01", n_iter="5", momentum="0.1", sampling_stride="3"),
}
REQUIRED = {
    "conv2d": ("stride", "padding", "dilation", "sampling_stride", "eps", "n_iter", "momentum"),
    "linear": ("eps", "n_iter", "momentum"),
    "channel": ("eps", "n_iter", "momentum", "sampling_stride"),
}
OPTIONAL = {"conv2d": ("freeze", "freeze_iter", "counter"), "linear": (), "channel": ()}


class ExportError(Exception):
    pass


def out_name(name):
    return (name if name else "layer") + ".safetensors"


def is_tensor_dict(obj):
    import torch
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


# ------------------------------------------------------------ whole module

def export_module(model, outdir):
    written = []
    for name, mod in model.named_modules():
        kind = layerfile.layer_kind(mod)
        if kind is None:
            continue
        try:
            tensors, md = layerfile.layer_tensors_metadata(mod)
        except ValueError as e:
            raise ExportError("%s: %s" % (name or "<model>", e))
        written.append((os.path.join(outdir, out_name(name)), kind, name, tensors, md))
    for path, kind, name, tensors, md in written:
        layerfile.write_safetensors(path, tensors, md)
    return [w[:3] for w in written]


# -------------------------------------------------------------- state_dict

def group_state_dict(sd):
    groups = OrderedDict()
    for key, t in sd.items():
        prefix, _, local = key.rpartition(".")
        groups.setdefault(prefix, OrderedDict())[local] = t
    return groups


def infer_kind(g):
    if "running_mean1" in g and "running_deconv" in g:
        return "channel"
    if "running_deconv" in g and "running_mean" in g and "weight" in g:
        if g["weight"].dim() == 4:
            return "conv2d"
        if g["weight"].dim() == 2:
            return "linear"
    return None


def layer_values(args, kind, name):
    """Hyper-parameter strings for one layer from the options."""
    vals = {}
    if args.use_defaults:
        vals.update(DEFAULTS[kind])
    elif kind == "conv2d":
        vals.update(freeze="false", freeze_iter="100", counter="0")
    short = {"conv2d": "conv", "linear": "linear", "channel": "channel"}[kind]
    for key in REQUIRED[kind] + OPTIONAL[kind]:
        v = getattr(args, key, None)
        per_kind = getattr(args, "%s_%s" % (short, key), None)
        if per_kind is not None:
            v = per_kind
        if v is not None:
            vals[key] = str(v)
    for item in args.set or []:
        lhs, eq, value = item.partition("=")
        lname, _, key = lhs.rpartition(".")
        if not eq or not key:
            raise ExportError("--set %r: expected NAME.KEY=VALUE" % item)
        key = key.replace("-", "_")
        if lname == name:
            if key not in REQUIRED[kind] + OPTIONAL[kind]:
                raise ExportError("--set %s: %s layers have no setting %r" % (item, kind, key))
            vals[key] = value
    missing = [k for k in REQUIRED[kind] if k not in vals]
    if missing:
        raise ExportError("%s (%s): cannot infer %s from a state_dict; pass %s or --use-defaults"
                          % (name or "<top>", kind, ", ".join(missing),
                             " ".join("--" + k.replace("_", "-") for k in missing)))
    return vals


def check_pair(s, what, name):
    try:
        a, b = layerfile.parse_pair(s)
    except ValueError:
        raise ExportError("%s: bad %s %r" % (name, what, s))
    return str(a) if a == b else "%d,%d" % (a, b)


def check_num(s, conv, what, name):
    try:
        return repr(conv(s)) if conv is float else str(conv(s))
    except ValueError:
        raise ExportError("%s: bad %s %r" % (name, what, s))


def export_state_dict(sd, outdir, args):
    import numpy as np
    written = []
    for prefix, g in group_state_dict(sd).items():
        kind = infer_kind(g)
        if kind is None:
            continue
        v = layer_values(args, kind, prefix)
        md = OrderedDict(kind=kind)
        tensors = OrderedDict()
        if kind == "conv2d":
            w, rd = g["weight"], g["running_deconv"]
            Cout, Cg, kh, kw = (int(s) for s in w.shape)
            G = int(rd.shape[0]) if rd.dim() == 3 else 1
            nf = int(rd.shape[-1])
            C = Cg * G
            if nf % (kh * kw) != 0:
                raise ExportError("%s: running_deconv %s does not fit a %dx%d kernel"
                                  % (prefix, list(rd.shape), kh, kw))
            B = nf // (kh * kw)
            if G > 1 and B != Cg:
                raise ExportError("%s: grouped running_deconv %s does not match weight %s"
                                  % (prefix, list(rd.shape), list(w.shape)))
            stride = check_pair(v["stride"], "stride", prefix)
            if "," in stride:
                raise ExportError("%s: non-square stride %s is not supported" % (prefix, stride))
            md.update(in_channels=str(C), out_channels=str(Cout),
                      kernel_size=str(kh) if kh == kw else "%d,%d" % (kh, kw),
                      stride=stride, padding=check_pair(v["padding"], "padding", prefix),
                      dilation=check_pair(v["dilation"], "dilation", prefix), groups=str(G),
                      bias="true" if "bias" in g else "false", block=str(B),
                      sampling_stride=check_num(v["sampling_stride"], int, "sampling_stride", prefix),
                      eps=check_num(v["eps"], float, "eps", prefix),
                      n_iter=check_num(v["n_iter"], int, "n_iter", prefix),
                      momentum=check_num(v["momentum"], float, "momentum", prefix),
                      freeze="true" if str(v["freeze"]).lower() in ("1", "true", "yes") else "false",
                      freeze_iter=check_num(v["freeze_iter"], int, "freeze_iter", prefix))
            names = ("weight", "bias", "running_mean", "running_deconv")
        elif kind == "linear":
            w = g["weight"]
            md.update(in_features=str(int(w.shape[1])), out_features=str(int(w.shape[0])),
                      bias="true" if "bias" in g else "false",
                      block=str(int(g["running_deconv"].shape[-1])),
                      eps=check_num(v["eps"], float, "eps", prefix),
                      n_iter=check_num(v["n_iter"], int, "n_iter", prefix),
                      momentum=check_num(v["momentum"], float, "momentum", prefix))
            names = ("weight", "bias", "running_mean", "running_deconv")
        else:
            md.update(block=str(int(g["running_deconv"].shape[-1])),
                      eps=check_num(v["eps"], float, "eps", prefix),
                      n_iter=check_num(v["n_iter"], int, "n_iter", prefix),
                      momentum=check_num(v["momentum"], float, "momentum", prefix),
                      sampling_stride=check_num(v["sampling_stride"], int, "sampling_stride", prefix))
            names = ("running_mean1", "running_deconv", "running_mean2", "running_var",
                     "num_batches_tracked")
        # state_dict order first, then anything of ours the dict carries
        for k in g:
            if k in names:
                tensors[k] = g[k]
        missing = [k for k in names if k not in tensors and k != "bias"]
        if missing:
            raise ExportError("%s (%s): state_dict lacks %s" % (prefix, kind, ", ".join(missing)))
        if kind == "conv2d":
            counter = g["counter"] if "counter" in g else int(v["counter"])
            tensors["counter"] = np.array(int(counter), dtype=np.int64)
        written.append((os.path.join(outdir, out_name(prefix)), kind, prefix, tensors, md))
    # Only once every layer is complete, so an error writes nothing.
    for path, kind, prefix, tensors, md in written:
        layerfile.write_safetensors(path, tensors, md)
    return [w[:3] for w in written]


# -------------------------------------------------------------------- main

def parse_args(argv):
    ap = argparse.ArgumentParser(
        prog=os.path.basename(sys.argv[0]) or "export_pytorch.py",
        description="Exports the FastDeconv / Delinear / ChannelDeconv layers of a model saved "
                    "with torch.save (a whole nn.Module or a state_dict) to ndcl layer files "
                    "OUTDIR/<module name>.safetensors.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", metavar="MODEL", help="file written by torch.save (module or state_dict)")
    ap.add_argument("outdir", metavar="OUTDIR", help="directory for the layer files (created)")
    ap.add_argument("--pythonpath", action="append", default=[], metavar="DIR",
                    help="add DIR to sys.path before loading (e.g. the original repository)")
    sd = ap.add_argument_group("state_dict input (ignored for a whole module)")
    sd.add_argument("--stride", help="conv stride")
    sd.add_argument("--padding", help="conv padding")
    sd.add_argument("--dilation", help="conv dilation")
    sd.add_argument("--sampling-stride", dest="sampling_stride", type=int,
                    help="sampling stride as given to the constructor (conv and channel)")
    sd.add_argument("--eps", type=float, help="eps (all kinds)")
    sd.add_argument("--n-iter", dest="n_iter", type=int, help="Newton-Schulz iterations (all kinds)")
    sd.add_argument("--momentum", type=float, help="momentum (all kinds)")
    for short in ("conv", "linear", "channel"):
        sd.add_argument("--%s-eps" % short, dest="%s_eps" % short, type=float, help=argparse.SUPPRESS)
        sd.add_argument("--%s-n-iter" % short, dest="%s_n_iter" % short, type=int, help=argparse.SUPPRESS)
        sd.add_argument("--%s-momentum" % short, dest="%s_momentum" % short, type=float,
                        help=argparse.SUPPRESS)
    for short in ("conv", "channel"):
        sd.add_argument("--%s-sampling-stride" % short, dest="%s_sampling_stride" % short, type=int,
                        help=argparse.SUPPRESS)
    sd.add_argument("--freeze", action="store_const", const="true", help="conv: freeze=true")
    sd.add_argument("--freeze-iter", dest="freeze_iter", type=int, help="conv freeze_iter (default 100)")
    sd.add_argument("--counter", type=int, help="conv freeze counter (default 0)")
    sd.add_argument("--set", action="append", metavar="NAME.KEY=VALUE",
                    help="one layer's value, e.g. features.0.padding=3 (repeatable)")
    sd.add_argument("--use-defaults", action="store_true",
                    help="fill values not given with the original constructors' defaults")
    return ap.parse_args(argv)


def load_model(path):
    import torch
    try:
        return torch.load(path, map_location="cpu")
    except TypeError:  # newer torch: weights_only defaults to True
        return torch.load(path, map_location="cpu", weights_only=False)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    for p in args.pythonpath:
        sys.path.insert(0, os.path.abspath(p))
    import torch.nn as nn
    try:
        obj = load_model(args.model)
    except (ModuleNotFoundError, AttributeError) as e:
        print("export_pytorch.py: cannot unpickle %s: %s (pass the module's source root with "
              "--pythonpath)" % (args.model, e), file=sys.stderr)
        return 1
    except Exception as e:  # unreadable file
        print("export_pytorch.py: cannot load %s: %s" % (args.model, e), file=sys.stderr)
        return 1
    if isinstance(obj, dict) and not is_tensor_dict(obj):
        for k in STATE_KEYS:
            if k in obj and (isinstance(obj[k], nn.Module) or is_tensor_dict(obj[k])):
                obj = obj[k]
                break
    os.makedirs(args.outdir, exist_ok=True)
    try:
        if isinstance(obj, nn.Module):
            written = export_module(obj, args.outdir)
        elif is_tensor_dict(obj):
            written = export_state_dict(obj, args.outdir, args)
        else:
            print("export_pytorch.py: %s holds neither an nn.Module nor a state_dict (%s)"
                  % (args.model, type(obj).__name__), file=sys.stderr)
            return 1
    except ExportError as e:
        print("export_pytorch.py: %s" % e, file=sys.stderr)
        return 1
    if not written:
        print("export_pytorch.py: %s has no FastDeconv, Delinear or ChannelDeconv layer"
              % args.model, file=sys.stderr)
        return 1
    for path, kind, name in written:
        print("%s  %s  %s" % (path, kind, name or "<model>"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
