#!/usr/bin/python3
"""ndcl_torch.cli - ndcl-export-pytorch: a trained PyTorch model with
network deconvolution layers (FastDeconv, Delinear, ChannelDeconv: the
original repository's classes or ndcl_torch.deconv_torch's, matched by
class name) out to ndcl layer files, to a folded plain network and to ONNX.

  ndcl-export-pytorch MODEL [OUTDIR] [--build FILE.py:FUNCTION] [options]
  /usr/bin/python3 tools/pytorch/export_pytorch.py ...           (source tree)

Installed, this file is <python site>/ndcl_torch/cli.py and
<prefix>/bin/ndcl-export-pytorch is a symbolic link to it. See --help.
"""

import argparse
import importlib.util
import os
import sys
from collections import OrderedDict

if __name__ == "__main__" and not __package__:
    # Run through the bin/ link: the package is the directory of this
    # file's target, and its parent is the site directory that holds it.
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
    from ndcl_torch import cli as _cli
    sys.exit(_cli.main())

from . import export as export_module_files  # noqa: E402
from . import fold, layer_file_name, layerfile, layers  # noqa: E402

PROG = "ndcl-export-pytorch"

DESCRIPTION = """\
Exports the FastDeconv / Delinear / ChannelDeconv layers of a trained model
to ndcl layer files OUTDIR/<module name>.safetensors, and optionally the
folded plain network (--plain) and its ONNX file (--onnx)."""

EPILOG = """\
MODEL is a file written by torch.save of
  - a checkpoint as the original repository's main.py saves it:
    {'state_dict': ..., ...} (also 'model', 'model_state_dict', 'net'), or a
    bare state_dict; keys may carry DataParallel's 'module.' prefix. A
    state_dict does not hold stride, padding, dilation or eps: give the
    code that builds the network with --build FILE.py:FUNCTION. FUNCTION()
    returns the nn.Module (FILE's directory is put on sys.path, so it may
    import the repository's models/); the checkpoint is loaded into it
    strictly, and a key or shape that does not match is an error naming it.
  - a whole nn.Module: each layer's settings are read from the module. Its
    classes must be importable (--pythonpath DIR, the repository's root);
    a model whose classes live in the training script (__main__) cannot be
    unpickled anywhere else: save its state_dict and use --build, or call
    ndcl_torch.export(model, outdir) in the script itself.

Without --build, a state_dict exports only when every conv layer's
stride, padding and dilation are given (--stride/--padding/--dilation, or
per layer --set NAME.KEY=VALUE): geometry is never guessed. eps, n_iter,
momentum, sampling_stride (and freeze, freeze_iter) must be given too, or
taken from the original constructors' defaults with --use-defaults, which
prints every default it uses (conv: eps 1e-05, n_iter 5, momentum 0.1,
sampling_stride 3; linear: eps 1e-05, n_iter 5, momentum 0.1; channel:
eps 0.01, n_iter 5, momentum 0.1, sampling_stride 3; note that main.py
builds its ChannelDeconv with eps 1e-05).

--plain FILE.pt writes, with torch.save, the whole model with every
FastDeconv folded into an nn.Conv2d, every Delinear into an nn.Linear and
every ChannelDeconv into a 1x1 nn.Conv2d (nn.Linear on 2-D input): the
weights of the layers' evaluation arithmetic (running statistics), so it
computes the model's evaluation outputs with plain layers only (loading it
needs the classes of the model's other modules, as for the model itself).
--onnx FILE.onnx exports that folded network with torch.onnx for inputs of
--input-shape N,C,H,W, any batch with --dynamic-batch (a reshape sized
from the batch, e.g. x.view(x.size(0), -1), may not load in every runtime
with a dynamic batch). A model with a ChannelDeconv needs --input-shape for
--plain too (its channels are known only from its input).

Exit status: 0 on success; 1 when the model has no deconvolution layer or
a file cannot be read or written; 2 for usage errors and for a checkpoint
that does not fit (--build returning another architecture, mismatching
keys or shapes, a state_dict without the geometry).
"""

STATE_KEYS = ("state_dict", "model_state_dict", "model", "net")

DEFAULTS = {
    "conv2d": dict(sampling_stride="3", eps="1e-05", n_iter="5", momentum="0.1",
                   freeze="false", freeze_iter="100", counter="0"),
    "linear": dict(eps="1e-05", n_iter="5", momentum="0.1"),
    "channel": dict(eps="0.01", n_iter="5", momentum="0.1", sampling_stride="3"),
}
GEOMETRY = {"conv2d": ("stride", "padding", "dilation"), "linear": (), "channel": ()}
SETTINGS = {
    "conv2d": ("sampling_stride", "eps", "n_iter", "momentum"),
    "linear": ("eps", "n_iter", "momentum"),
    "channel": ("eps", "n_iter", "momentum", "sampling_stride"),
}
OPTIONAL = {"conv2d": ("freeze", "freeze_iter", "counter"), "linear": (), "channel": ()}


class UsageError(Exception):
    """Exit status 2: the input does not fit or the options do not suffice."""


class FileError(Exception):
    """Exit status 1."""


def is_tensor_dict(obj):
    import torch
    return isinstance(obj, dict) and len(obj) > 0 and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


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


def layer_values(args, kind, name, used_defaults, check=True):
    """Hyper-parameter strings for one layer from the options; (values,
    names of the geometry values missing)."""
    vals = {}
    if kind == "conv2d":
        vals.update(freeze="false", freeze_iter="100", counter="0")
    short = {"conv2d": "conv", "linear": "linear", "channel": "channel"}[kind]
    keys = GEOMETRY[kind] + SETTINGS[kind] + OPTIONAL[kind]
    for key in keys:
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
            raise UsageError("--set %r: expected NAME.KEY=VALUE" % item)
        key = key.replace("-", "_")
        if lname == name:
            if key not in keys:
                raise UsageError("--set %s: %s layers have no setting %r" % (item, kind, key))
            vals[key] = value
    missing_geometry = [k for k in GEOMETRY[kind] if k not in vals]
    missing = [k for k in SETTINGS[kind] if k not in vals]
    if not check:
        return vals, missing_geometry
    if missing and args.use_defaults:
        for k in missing:
            vals[k] = DEFAULTS[kind][k]
            used_defaults.append("%s (%s): %s = %s" % (name or "<top>", kind, k, vals[k]))
        missing = []
    if missing:
        raise UsageError("%s (%s): a state_dict does not hold %s; build the model with --build "
                         "FILE.py:FUNCTION, or pass %s (or --use-defaults for the original "
                         "constructors' defaults)" % (name or "<top>", kind, ", ".join(missing),
                                                      " ".join("--" + k.replace("_", "-")
                                                               for k in missing)))
    return vals, missing_geometry


def check_pair(s, what, name):
    try:
        a, b = layerfile.parse_pair(s)
    except ValueError:
        raise UsageError("%s: bad %s %r" % (name, what, s))
    return str(a) if a == b else "%d,%d" % (a, b)


def check_num(s, conv, what, name):
    try:
        return repr(conv(s)) if conv is float else str(conv(s))
    except ValueError:
        raise UsageError("%s: bad %s %r" % (name, what, s))


def state_dict_layers(sd, args):
    """[(path, kind, name, tensors, metadata)] of the layers of a state_dict
    given the geometry and settings as options."""
    import numpy as np
    written = []
    used_defaults = []
    sd = strip_prefix(sd, ())
    groups = [(p, g, infer_kind(g)) for p, g in group_state_dict(sd).items()]
    groups = [(p, g, k) for p, g, k in groups if k is not None]
    # The geometry first: without it no layer can be written right.
    no_geometry = []
    for prefix, g, kind in groups:
        _, missing_geometry = layer_values(args, kind, prefix, [], check=False)
        if missing_geometry:
            no_geometry.append("%s (%s)" % (prefix or "<top>", ", ".join(missing_geometry)))
    if no_geometry:
        raise UsageError("a state_dict does not hold the geometry of %d conv layer(s): %s; give "
                         "the code that builds the model with --build FILE.py:FUNCTION (or every "
                         "layer's --stride, --padding, --dilation)"
                         % (len(no_geometry), "; ".join(no_geometry[:8]) +
                            ("; ..." if len(no_geometry) > 8 else "")))
    for prefix, g, kind in groups:
        v, _ = layer_values(args, kind, prefix, used_defaults)
        md = OrderedDict(kind=kind)
        tensors = OrderedDict()
        if kind == "conv2d":
            w, rd = g["weight"], g["running_deconv"]
            Cout, Cg, kh, kw = (int(s) for s in w.shape)
            G = int(rd.shape[0]) if rd.dim() == 3 else 1
            nf = int(rd.shape[-1])
            C = Cg * G
            if nf % (kh * kw) != 0:
                raise UsageError("%s: running_deconv %s does not fit a %dx%d kernel"
                                 % (prefix, list(rd.shape), kh, kw))
            B = nf // (kh * kw)
            if G > 1 and B != Cg:
                raise UsageError("%s: grouped running_deconv %s does not match weight %s"
                                 % (prefix, list(rd.shape), list(w.shape)))
            stride = check_pair(v["stride"], "stride", prefix)
            if "," in stride:
                raise UsageError("%s: non-square stride %s is not supported" % (prefix, stride))
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
        for k in g:
            if k in names:
                tensors[k] = g[k]
        missing = [k for k in names if k not in tensors and k != "bias"]
        if missing:
            raise UsageError("%s (%s): state_dict lacks %s" % (prefix, kind, ", ".join(missing)))
        if kind == "conv2d":
            counter = g["counter"] if "counter" in g else int(v["counter"])
            tensors["counter"] = np.array(int(counter), dtype=np.int64)
        written.append((os.path.join(args.outdir, layer_file_name(prefix)), kind, prefix,
                        tensors, md))
    for line in used_defaults:
        print("%s: default %s" % (PROG, line), file=sys.stderr)
    return written


# ----------------------------------------------------------------- --build

def build_model(spec):
    """FUNCTION() of FILE.py, which must return an nn.Module."""
    import torch.nn as nn
    path, sep, func = spec.rpartition(":")
    if not sep or not path or not func:
        raise UsageError("--build %r: expected FILE.py:FUNCTION" % spec)
    if not os.path.isfile(path):
        raise UsageError("--build %s: no file %s" % (spec, path))
    d = os.path.dirname(os.path.abspath(path))
    if d not in sys.path:
        sys.path.insert(0, d)
    # Under its own name where free, so that classes defined in FILE pickle
    # (--plain) under a name that imports again with FILE's directory on
    # the path.
    name = os.path.splitext(os.path.basename(path))[0]
    if name in sys.modules or not name.isidentifier():
        name = "ndcl_build_" + "".join(c if c.isalnum() else "_" for c in name)
    mod_spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(mod_spec)
    sys.modules[name] = mod
    try:
        mod_spec.loader.exec_module(mod)
    except Exception as e:
        raise UsageError("--build %s: importing %s failed: %s: %s"
                         % (spec, path, type(e).__name__, e))
    fn = getattr(mod, func, None)
    if not callable(fn):
        raise UsageError("--build %s: %s has no function %s" % (spec, path, func))
    try:
        model = fn()
    except Exception as e:
        raise UsageError("--build %s: %s() failed: %s: %s" % (spec, func, type(e).__name__, e))
    if not isinstance(model, nn.Module):
        raise UsageError("--build %s: %s() returned %s, not an nn.Module"
                         % (spec, func, type(model).__name__))
    return model, mod


def strip_prefix(sd, model_keys):
    """sd without DataParallel's "module." prefix where the model's keys
    lack it."""
    if sd and all(k.startswith("module.") for k in sd) and \
            not any(k.startswith("module.") for k in model_keys):
        return OrderedDict((k[len("module."):], v) for k, v in sd.items())
    return sd


def load_into(model, sd, spec):
    """Loads sd into model strictly; UsageError naming every key that is
    missing, unexpected or of another shape."""
    own = model.state_dict()
    sd = strip_prefix(sd, own)
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = ["%s: checkpoint %s, model %s" % (k, list(sd[k].shape), list(own[k].shape))
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]

    def listing(what, keys):
        return "%d %s (%s%s)" % (len(keys), what, ", ".join(keys[:6]), ", ..." if len(keys) > 6 else "")
    problems = []
    if missing:
        problems.append(listing("key(s) of the model missing from the checkpoint", missing))
    if unexpected:
        problems.append(listing("key(s) of the checkpoint not in the model", unexpected))
    if shapes:
        problems.append(listing("tensor(s) of another shape", shapes))
    if problems:
        raise UsageError("the checkpoint does not fit the model --build %s returns: %s"
                         % (spec, "; ".join(problems)))
    model.load_state_dict(sd, strict=True)


# -------------------------------------------------------------------- main

def parse_args(argv):
    ap = argparse.ArgumentParser(prog=PROG, description=DESCRIPTION, epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", metavar="MODEL", help="file written by torch.save "
                    "(checkpoint, state_dict or whole module)")
    ap.add_argument("outdir", metavar="OUTDIR", nargs="?",
                    help="directory for the layer files (created); may be left out with "
                         "--plain or --onnx")
    ap.add_argument("--build", metavar="FILE.py:FUNCTION",
                    help="the code that builds the network: FUNCTION() of FILE.py returns the "
                         "nn.Module the checkpoint is loaded into (strictly)")
    ap.add_argument("--pythonpath", action="append", default=[], metavar="DIR",
                    help="add DIR to sys.path before loading (e.g. the original repository)")
    out = ap.add_argument_group("plain network")
    out.add_argument("--plain", metavar="FILE.pt",
                     help="write the folded plain network (torch.save of the whole module)")
    out.add_argument("--onnx", metavar="FILE.onnx", help="write the folded network as ONNX")
    out.add_argument("--input-shape", metavar="N,C,H,W",
                     help="the input of --onnx (and of --plain for a ChannelDeconv)")
    out.add_argument("--dynamic-batch", action="store_true",
                     help="--onnx: the batch dimension left free")
    out.add_argument("--opset", type=int, default=13, help="--onnx: ONNX opset (default 13)")
    sd = ap.add_argument_group("state_dict without --build")
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
                    help="eps, n_iter, momentum, sampling_stride not given: the original "
                         "constructors' defaults, each printed (never stride, padding, dilation)")
    args = ap.parse_args(argv)
    if not args.outdir and not args.plain and not args.onnx:
        ap.error("nothing to write: give OUTDIR, --plain or --onnx")
    if args.onnx and not args.input_shape:
        ap.error("--onnx needs --input-shape N,C,H,W")
    if args.dynamic_batch and not args.onnx:
        ap.error("--dynamic-batch applies to --onnx")
    if args.input_shape:
        try:
            args.input_shape = tuple(int(s) for s in args.input_shape.split(","))
            if not args.input_shape or min(args.input_shape) < 1:
                raise ValueError
        except ValueError:
            ap.error("--input-shape %r: expected positive integers N,C,H,W" % args.input_shape)
    return args


def load_file(path, build_mod=None):
    """torch.load of path; classes pickled from a training script's
    __main__ are looked up in the --build module (which stands in for
    __main__ while the file loads: pickle imports a class's module by
    name, and torch.load does not honour every pickle_module)."""
    import torch
    main = sys.modules.get("__main__")
    if build_mod is not None:
        sys.modules["__main__"] = build_mod
    try:
        try:  # whole modules: newer torch loads only weights by default
            return torch.load(path, map_location="cpu", weights_only=False)
        except TypeError:  # a torch without weights_only
            return torch.load(path, map_location="cpu")
    finally:
        if main is not None:
            sys.modules["__main__"] = main


def unwrap(obj):
    import torch.nn as nn
    if isinstance(obj, dict) and not is_tensor_dict(obj):
        for k in STATE_KEYS:
            if k in obj and (isinstance(obj[k], nn.Module) or is_tensor_dict(obj[k])):
                return obj[k]
    return obj


def export_onnx(folded, args):
    import torch
    folded = folded.eval()
    x = torch.zeros(args.input_shape, dtype=next(folded.parameters()).dtype)
    kw = {}
    if args.dynamic_batch:
        kw["dynamic_axes"] = {"input": {0: "batch"}, "output": {0: "batch"}}
    with torch.no_grad():
        torch.onnx.export(folded, x, args.onnx, input_names=["input"], output_names=["output"],
                          opset_version=args.opset, do_constant_folding=True, **kw)
    try:
        import onnx
    except ImportError:
        return
    onnx.checker.check_model(onnx.load(args.onnx))


def run(args):
    import torch
    import torch.nn as nn
    for p in args.pythonpath:
        sys.path.insert(0, os.path.abspath(p))
    # Whole models pickled with ndcl's own modules under their source-tree
    # name load with the installed package.
    from . import deconv_torch
    sys.modules.setdefault("deconv_torch", deconv_torch)
    build_mod = None
    model = None
    if args.build:
        model, build_mod = build_model(args.build)
    try:
        obj = load_file(args.model, build_mod)
    except (ModuleNotFoundError, AttributeError) as e:
        hint = ("the model's classes were defined in the training script itself (__main__): "
                "save its state_dict and pass --build FILE.py:FUNCTION, or call "
                "ndcl_torch.export(model, OUTDIR) in the script" if "__main__" in str(e) else
                "pass the module's source root with --pythonpath, or save the state_dict and "
                "pass --build FILE.py:FUNCTION")
        raise FileError("cannot unpickle %s: %s (%s)" % (args.model, e, hint))
    except Exception as e:
        raise FileError("cannot load %s: %s" % (args.model, e))
    obj = unwrap(obj)
    if isinstance(obj, nn.Module):
        if model is not None:
            # A whole model (its classes found through --build where they
            # were pickled from a script's __main__) is itself the model,
            # attributes such as the freeze counter included; it must
            # still be what --build builds.
            load_into(model, obj.state_dict(), args.build)
        model = obj
    elif is_tensor_dict(obj):
        if model is not None:
            load_into(model, obj, args.build)
    else:
        raise FileError("%s holds neither an nn.Module nor a state_dict (%s)"
                        % (args.model, type(obj).__name__))

    if model is None:  # a state_dict without --build
        if args.plain or args.onnx:
            raise UsageError("--plain and --onnx need the model: give --build FILE.py:FUNCTION")
        if not args.outdir:
            raise UsageError("nothing to write")
        written = state_dict_layers(obj, args)
        if not written:
            raise FileError("%s has no FastDeconv, Delinear or ChannelDeconv layer" % args.model)
        os.makedirs(args.outdir, exist_ok=True)
        for path, kind, prefix, tensors, md in written:
            layerfile.write_safetensors(path, tensors, md)
        for path, kind, name, _, _ in written:
            print("%s  %s  %s" % (path, kind, name or "<model>"))
        return 0

    if not layers(model):
        raise FileError("%s has no FastDeconv, Delinear or ChannelDeconv layer" % args.model)
    if args.outdir:
        try:
            written = export_module_files(model, args.outdir)
        except ValueError as e:
            raise UsageError(str(e))
        for path, kind, name in written:
            print("%s  %s  %s" % (path, kind, name or "<model>"))
    if args.plain or args.onnx:
        example = None
        if args.input_shape:
            example = torch.zeros(args.input_shape, dtype=next(model.parameters()).dtype)
        try:
            folded = fold(model, example)
        except ValueError as e:
            raise UsageError(str(e))
        except RuntimeError as e:  # the example input does not fit the model
            raise UsageError("--input-shape %s: the model fails on it: %s"
                             % (",".join(map(str, args.input_shape)), e))
        if args.plain:
            torch.save(folded, args.plain)
            print("%s  plain  %d layers folded" % (args.plain, len(layers(model))))
        if args.onnx:
            export_onnx(folded, args)
            print("%s  onnx  input %s%s" % (args.onnx, ",".join(map(str, args.input_shape)),
                                           ", any batch" if args.dynamic_batch else ""))
    return 0


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return run(args)
    except UsageError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return 2
    except FileError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return 1
    except OSError as e:
        print("%s: %s" % (PROG, e), file=sys.stderr)
        return 1
