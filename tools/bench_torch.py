#!/usr/bin/python3
"""bench_torch.py - the PyTorch side of ndcl-bench's layer rows: times a
plain nn.Conv2d forward and the FastDeconv forward (tools/deconv_torch.py,
the original's arithmetic) in train and eval mode on the CPU, and prints
each layer's median over the conv's median, as ndcl-bench's vs_conv.

Usage (system Python, which has torch):
  /usr/bin/python3 tools/bench_torch.py [--preset cifar-resnet18|small]
      [--shape N,C,H,W,Cout,k[,stride,padding,groups,block,ss]]...
      [--runs 10] [--warmup 2] [--threads 2] [--grad] [--json]

Timing: time.perf_counter around one forward call (PyTorch's CPU ops are
synchronous), --warmup untimed calls first, then --runs timed calls with
the three modules interleaved round-robin so that load from other
processes hits them alike; min and median reported. Forwards run under
torch.no_grad() unless --grad (then autograd records the graph, as in
training). Inputs and weights are random from a fixed seed. Note that the
original's eval forward folds the running statistics into the weights on
every call, where ndcl caches W', b'.
"""

import argparse
import json
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deconv_torch import FastDeconv  # noqa: E402

PRESETS = {
    "cifar-resnet18": ["128,64,32,32,64,3,1,1", "128,128,16,16,128,3,1,1",
                       "128,256,8,8,256,3,1,1", "128,512,4,4,512,3,1,1"],
    "small": ["8,16,16,16,16,3,1,1", "8,32,8,8,32,3,1,1"],
}


def parse_shape(text):
    """N,C,H,W,Cout,k[,stride,padding,groups,block,ss] with ndcl-bench's
    defaults (stride 1, padding k/2, groups 1, block 64, ss 3)."""
    try:
        v = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError("bad shape %r: not integers" % text)
    if not 6 <= len(v) <= 11:
        raise argparse.ArgumentTypeError("bad shape %r: %d values (6 to 11)" % (text, len(v)))
    defaults = [1, v[5] // 2, 1, 64, 3]
    v += defaults[len(v) - 6:]
    keys = ["n", "c", "h", "w", "cout", "k", "stride", "padding", "groups", "block", "ss"]
    return dict(zip(keys, v))


def shape_text(s):
    return "%dx%dx%dx%d->%d k%d" % (s["n"], s["c"], s["h"], s["w"], s["cout"], s["k"])


def bench_shape(s, runs, warmup, grad):
    torch.manual_seed(1)
    x = torch.rand(s["n"], s["c"], s["h"], s["w"]) * 2 - 1
    common = dict(stride=s["stride"], padding=s["padding"], groups=s["groups"])
    conv = nn.Conv2d(s["c"], s["cout"], s["k"], **common)
    deconv_train = FastDeconv(s["c"], s["cout"], s["k"], block=s["block"],
                              sampling_stride=s["ss"], **common)
    deconv_eval = FastDeconv(s["c"], s["cout"], s["k"], block=s["block"],
                             sampling_stride=s["ss"], **common)
    with torch.no_grad():
        for m in (deconv_train, deconv_eval):
            m.weight.copy_(conv.weight)
            m.bias.copy_(conv.bias)
    deconv_train.train()
    deconv_eval.eval()
    calls = [("conv", conv), ("layer-train", deconv_train), ("layer-eval", deconv_eval)]
    times = {name: [] for name, _ in calls}
    cold = {}
    ctx = torch.enable_grad() if grad else torch.no_grad()
    with ctx:
        for name, m in calls:
            t0 = time.perf_counter()
            m(x)
            cold[name] = (time.perf_counter() - t0) * 1e3
        for _ in range(warmup):
            for _, m in calls:
                m(x)
        for _ in range(runs):
            for name, m in calls:
                t0 = time.perf_counter()
                m(x)
                times[name].append((time.perf_counter() - t0) * 1e3)
    rows = []
    conv_med = statistics.median(times["conv"])
    for name, _ in calls:
        med = statistics.median(times[name])
        row = {"suite": name, "shape": shape_text(s), "runs": runs,
               "cold_ms": round(cold[name], 3), "min_ms": round(min(times[name]), 3),
               "median_ms": round(med, 3)}
        if name != "conv":
            row["vs_conv"] = round(med / conv_med, 3)
        rows.append(row)
    return rows


def blas_info():
    """The BLAS torch.mm uses (the Newton-Schulz, covariance and fold
    products) and its speed here: nn.Conv2d goes through oneDNN instead, so
    a slow BLAS inflates every ratio. Debian's torch is built with
    BLAS_INFO=generic: whatever libblas.so.3 is installed (the reference
    BLAS unless OpenBLAS or BLIS is)."""
    cfg = torch.__config__.show()
    info = next((t.split("=", 1)[1] for t in cfg.replace(",", " ").split()
                 if t.startswith("BLAS_INFO=")), "?")
    a, b = torch.rand(2048, 576), torch.rand(576, 576)
    a @ b
    t0 = time.perf_counter()
    for _ in range(3):
        a @ b
    dt = (time.perf_counter() - t0) / 3
    return info, 2.0 * 2048 * 576 * 576 / dt / 1e9


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--preset", action="append", choices=sorted(PRESETS))
    ap.add_argument("--shape", action="append", type=parse_shape, default=[])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--grad", action="store_true",
                    help="record the autograd graph (training) instead of no_grad")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    if a.runs < 1 or a.warmup < 0 or a.threads < 1:
        ap.error("--runs >= 1, --warmup >= 0, --threads >= 1")
    shapes = list(a.shape)
    for p in a.preset or ([] if shapes else ["cifar-resnet18"]):
        shapes += [parse_shape(t) for t in PRESETS[p]]
    torch.set_num_threads(a.threads)

    blas, mm_gflops = blas_info()
    rows = []
    for i, s in enumerate(shapes):
        print("[%d/%d] %s" % (i + 1, len(shapes), shape_text(s)), file=sys.stderr, flush=True)
        rows += bench_shape(s, a.runs, a.warmup, a.grad)
    if a.json:
        print(json.dumps(rows, indent=2))
        return
    print("# PyTorch %s on the CPU, %d threads, %s; time.perf_counter around each "
          "forward; %d warmup, %d timed runs, interleaved per shape"
          % (torch.__version__, torch.get_num_threads(),
             "autograd recording" if a.grad else "no_grad", a.warmup, a.runs))
    print("# BLAS_INFO=%s: torch.mm 2048x576x576 at %.1f GFLOPS (nn.Conv2d uses oneDNN)"
          % (blas, mm_gflops))
    head = ["suite", "shape", "runs", "cold ms", "min ms", "median ms", "vs conv"]
    cells = [[r["suite"], r["shape"], str(r["runs"]), "%.3f" % r["cold_ms"],
              "%.3f" % r["min_ms"], "%.3f" % r["median_ms"],
              "%.2fx" % r["vs_conv"] if "vs_conv" in r else "-"] for r in rows]
    width = [max(len(c[k]) for c in cells + [head]) for k in range(len(head))]
    for c in [head] + cells:
        print("  ".join(c[k].ljust(width[k]) if k < 2 else c[k].rjust(width[k])
                        for k in range(len(head))))


if __name__ == "__main__":
    main()
