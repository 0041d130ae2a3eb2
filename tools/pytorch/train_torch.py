#!/usr/bin/python3
"""train_torch.py - the PyTorch anchor of ndcl-train: the same small CNN on
Fashion-MNIST, trained plain, with batch normalisation or with the original
network deconvolution modules (tools/pytorch/deconv_torch.py), with ndcl-train's
hyper-parameters and data order policy, timed the way ndcl-train times
itself. Also evaluates a folded model exported by `ndcl-train --save` in
the plain network (--evaluate). Run with the system Python that has
PyTorch: /usr/bin/python3 (Debian's python3-torch; install libopenblas0 so
that its matrix products use OpenBLAS: the script prints the rate it gets).

Networks (N = batch):
  plain  Conv2d(1,32,3,p=1) ReLU MaxPool2d(2) Conv2d(32,64,3,p=1) ReLU
         MaxPool2d(2) Flatten Linear(3136,10)
  bn     the same with BatchNorm2d after each convolution
  nd     FastDeconv(1,32,3,p=1,freeze=True,n_iter=15) ReLU MaxPool2d(2)
         FastDeconv(32,64,3,p=1) ReLU MaxPool2d(2) Flatten
         Delinear(3136,10,block=64)
Training: softmax cross-entropy, SGD (lr 0.05, momentum 0.9, weight decay
1e-4 on every parameter), the learning rate annealed by a cosine over every
step of the run (CosineAnnealingLR, T_max = steps, stepped per batch),
inputs scaled to [0, 1], PyTorch's default initialisation, each epoch a
fresh permutation from a seeded generator, the last partial batch dropped.
An epoch's `seconds` is the wall time of its training steps (batch gather,
forward, backward, update), evaluation excluded. --eval-every N evaluates
every N steps as well, and --target-acc A records the training time at
which the test accuracy first reached A, as ndcl-train does (the JSON's
"evals" and "target" of each run). --stop-at-target ends a run once it has
reached A (the rest of its schedule cannot change when it got there), and
--max-seconds S ends it once its training time passes S (evaluated there;
the JSON's "stopped" says which ended it); the last epoch is then partial.
"""

import argparse
import gzip
import json
import math
import os
import re
import struct
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from deconv_torch import Delinear, FastDeconv  # noqa: E402
import layerfile  # noqa: E402

DEFAULT_DATA = "/usr/share/datasets/fashion-mnist"


def read_idx(path, want_magic):
    """An IDX file (gzip) as a numpy uint8 array."""
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic != want_magic:
        raise ValueError("%s: magic 0x%08x, expected 0x%08x" % (path, magic, want_magic))
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    return arr[:int(np.prod(dims))].reshape(dims)


def load(data_dir, split, limit):
    prefix = "train" if split == "train" else "t10k"
    x = read_idx(os.path.join(data_dir, prefix + "-images-idx3-ubyte.gz"), 0x803)
    y = read_idx(os.path.join(data_dir, prefix + "-labels-idx1-ubyte.gz"), 0x801)
    if limit:
        x, y = x[:limit], y[:limit]
    xt = torch.from_numpy(x.astype(np.float32)).div_(255.0).unsqueeze(1).contiguous()
    return xt, torch.from_numpy(y.astype(np.int64))


def plain_net():
    return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(3136, 10))


def make_net(kind):
    if kind == "plain":
        return plain_net()
    if kind == "bn":
        return nn.Sequential(nn.Conv2d(1, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU(),
                             nn.MaxPool2d(2), nn.Conv2d(32, 64, 3, padding=1),
                             nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             nn.Linear(3136, 10))
    if kind == "nd":
        return nn.Sequential(FastDeconv(1, 32, 3, padding=1, freeze=True, n_iter=15),
                             nn.ReLU(), nn.MaxPool2d(2), FastDeconv(32, 64, 3, padding=1),
                             nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                             Delinear(3136, 10, block=64))
    raise ValueError(kind)


def accuracy(model, x, y, batch=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            correct += (model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item()
    return correct / x.shape[0]


def blas_library():
    """The BLAS that Debian's alternatives give libblas.so.3 (torch's
    'generic' BLAS), as the process has it mapped."""
    with open("/proc/self/maps") as f:
        for line in f:
            if "libblas.so" in line or "libopenblas" in line:
                return os.path.realpath(line.split()[-1])
    return "?"


def gemm_rate():
    a, b = torch.randn(1024, 1024), torch.randn(1024, 1024)
    torch.mm(a, b)
    t = time.perf_counter()
    for _ in range(5):
        torch.mm(a, b)
    return 2 * 1024 ** 3 * 5 / (time.perf_counter() - t) / 1e9


def train(args, net):
    torch.manual_seed(args.seed)
    xtr, ytr = load(args.data, "train", args.limit)
    xte, yte = load(args.data, "test", args.test_limit)
    model = make_net(net)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=args.momentum,
                          weight_decay=args.weight_decay)
    n = xtr.shape[0]
    steps_per_epoch = n // args.batch
    if steps_per_epoch == 0:
        sys.exit("train_torch.py: --batch %d is larger than the %d training images"
                 % (args.batch, n))
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps_per_epoch * args.epochs)
    gen = torch.Generator().manual_seed(args.seed)
    epochs, evals, trained = [], [], 0.0

    def evaluation(step, seconds):
        acc = accuracy(model, xte, yte)
        evals.append({"step": step, "epoch": step / steps_per_epoch, "seconds": seconds,
                      "test_acc": acc})
        return acc

    stopped = None

    def should_stop(acc, seconds):
        nonlocal stopped
        if args.stop_at_target and args.target_acc and acc >= args.target_acc:
            stopped = "target"
        elif args.max_seconds and seconds >= args.max_seconds:
            stopped = "max-seconds"
        return stopped is not None

    for epoch in range(1, args.epochs + 1):
        perm = torch.randperm(n, generator=gen)
        total, losses, t0 = 0.0, [], time.perf_counter()
        model.train()
        for s in range(steps_per_epoch):
            idx = perm[s * args.batch:(s + 1) * args.batch]
            loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            total += losses[-1]
            step = (epoch - 1) * steps_per_epoch + s + 1
            if s + 1 == steps_per_epoch:
                break  # the epoch's own evaluation follows
            te = time.perf_counter()
            so_far = trained + te - t0
            if (args.max_seconds and so_far >= args.max_seconds) or (
                    args.eval_every and step % args.eval_every == 0):
                acc = evaluation(step, so_far)
                model.train()
                t0 += time.perf_counter() - te
                if should_stop(acc, so_far):
                    break
        seconds = time.perf_counter() - t0
        trained += seconds
        done = len(losses)
        if stopped:
            acc = evals[-1]["test_acc"]
        else:
            acc = evaluation(epoch * steps_per_epoch, trained)
            should_stop(acc, trained)
        epochs.append({"epoch": epoch, "train_loss": total / done, "test_acc": acc,
                       "seconds": seconds, "losses": losses, "steps": done})
        print("%-5s epoch %d/%d: train_loss %.4f  test_acc %.4f  %.1f s (%.1f ms/step)%s"
              % (net, epoch, args.epochs, total / done, acc, seconds, 1000 * seconds / done,
                 "" if done == steps_per_epoch else " after %d of %d steps" % (
                     done, steps_per_epoch)), flush=True)
        if stopped:
            print("%-5s stopped (%s) after %.1f s of training" % (net, stopped, trained),
                  flush=True)
            break
    target = None
    if args.target_acc:
        hit = next((e for e in evals if e["test_acc"] >= args.target_acc), None)
        target = {"test_acc": args.target_acc, "seconds": hit and hit["seconds"]}
        if hit:
            target.update(step=hit["step"], epoch=hit["epoch"], reached_acc=hit["test_acc"])
            print("%-5s target test accuracy %.4f reached at step %d (epoch %.2f) after "
                  "%.1f s of training" % (net, args.target_acc, hit["step"], hit["epoch"],
                                          hit["seconds"]), flush=True)
        else:
            print("%-5s target test accuracy %.4f not reached" % (net, args.target_acc),
                  flush=True)
    return epochs, evals, target, stopped


def evaluate(args):
    """Test accuracy of a folded model file in the plain network."""
    tensors, _ = layerfile.read_safetensors(args.evaluate)
    model = plain_net()
    model.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v))
                           for k, v in tensors.items()})
    xte, yte = load(args.data, "test", args.test_limit)
    acc = accuracy(model, xte, yte)
    print(json.dumps({"model": args.evaluate, "test_images": xte.shape[0], "test_acc": acc}))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--net", choices=["plain", "bn", "nd"], action="append",
                   help="repeatable; default: all three")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--limit", type=int, default=0, help="the first N training images")
    p.add_argument("--test-limit", type=int, default=0, help="the first N test images")
    p.add_argument("--eval-every", type=int, default=0, metavar="N",
                   help="evaluate every N steps as well as after every epoch")
    p.add_argument("--target-acc", type=float, default=0, metavar="A",
                   help="record when the test accuracy first reached A (0 < A <= 1)")
    p.add_argument("--stop-at-target", action="store_true",
                   help="end a run once it has reached --target-acc")
    p.add_argument("--max-seconds", type=float, default=0, metavar="S",
                   help="end a run once its training time passes S seconds")
    p.add_argument("--json", help="write the results to this file")
    p.add_argument("--evaluate", metavar="MODEL.safetensors",
                   help="only evaluate a folded model (ndcl-train --save) in the plain net")
    args = p.parse_args()
    if args.eval_every < 0:
        p.error("--eval-every must be >= 1")
    if not 0 <= args.target_acc <= 1:
        p.error("--target-acc must be in (0, 1]")
    if args.max_seconds < 0:
        p.error("--max-seconds must be > 0")
    if args.stop_at_target and not args.target_acc:
        p.error("--stop-at-target needs --target-acc")
    torch.set_num_threads(args.threads)
    if args.evaluate:
        evaluate(args)
        return
    rate = gemm_rate()
    blas = re.search(r"BLAS_INFO=(\w+)", torch.__config__.show())
    print("# torch %s, %d threads, BLAS_INFO=%s, libblas.so.3 -> %s; torch.mm 1024^3: "
          "%.1f GFLOPS" % (torch.__version__, args.threads, blas.group(1) if blas else "?",
                           blas_library(), rate), flush=True)
    out = {"torch": torch.__version__, "threads": args.threads, "mm_gflops": rate,
           "blas": blas_library(),
           "batch": args.batch, "lr": args.lr, "momentum": args.momentum,
           "weight_decay": args.weight_decay, "seed": args.seed, "limit": args.limit,
           "runs": []}
    for net in args.net or ["plain", "bn", "nd"]:
        epochs, evals, target, stopped = train(args, net)
        out["runs"].append({"net": net, "epochs": epochs, "evals": evals, "target": target,
                            "stopped": stopped})
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
