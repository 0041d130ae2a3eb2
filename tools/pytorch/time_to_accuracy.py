#!/usr/bin/python3
"""time_to_accuracy.py - wall time to a test accuracy, ndcl-train beside
PyTorch: runs tools/pytorch/train_torch.py (plain, batch norm, the original network
deconvolution modules) and ndcl-train (--net nd, --net plain, and any
ndcl-train variants asked for) one after the other on this machine, each
with the same schedule of E epochs (the cosine over the whole run), and
prints, per network, the test accuracy after each epoch with the cumulative
training time, the mean epoch time, and the training time at which the test
accuracy first reached the target (evaluation excluded; evaluated every
--eval-every steps and after every epoch). --plot draws accuracy against
training time for every run on one chart (gnuplot). Run with the system
Python that has PyTorch: /usr/bin/python3.

--epochs and --torch-epochs take a list (2,3,4): every network is run
once per schedule length, and the summary gives each network's best time
to the target over its schedules. With --cutoff, ndcl-train runs first and
each PyTorch run ends once it reached the target or once its training time
passed the best time ndcl-train took to reach it (it cannot be the faster
one then; its row says "not reached within S s"), which keeps a sweep of
PyTorch schedules short.

Example (the README's Training table):
  /usr/bin/python3 tools/pytorch/time_to_accuracy.py --epochs 2,3 \\
      --torch-epochs 2,3,4,5,6 --cutoff --target-acc 0.9 --plot time-to-acc.png
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def run(cmd):
    print("$ " + " ".join(shlex.quote(c) for c in cmd), flush=True)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       universal_newlines=True)
    if p.returncode != 0:
        sys.exit("time_to_accuracy.py: %s exited %d:\n%s" % (cmd[0], p.returncode, p.stderr))
    return p.stdout


def common(args, epochs):
    c = ["--epochs", str(epochs), "--batch", str(args.batch), "--seed", str(args.seed),
         "--data", args.data, "--eval-every", str(args.eval_every),
         "--target-acc", str(args.target_acc)]
    if args.limit:
        c += ["--limit", str(args.limit)]
    if args.test_limit:
        c += ["--test-limit", str(args.test_limit)]
    return c


def torch_runs(args, tmp, epochs, cutoff):
    out = os.path.join(tmp, "torch-%d.json" % epochs)
    cmd = ["/usr/bin/python3", os.path.join(HERE, "train_torch.py"), "--json", out,
           "--threads", str(args.threads)] + common(args, epochs)
    if cutoff:
        cmd += ["--stop-at-target", "--max-seconds", "%.1f" % cutoff]
    for n in args.torch:
        cmd += ["--net", n]
    text = run(cmd)
    print(text.splitlines()[0])  # torch's BLAS and GEMM rate
    with open(out) as f:
        j = json.load(f)
    names = {"plain": "PyTorch plain", "bn": "PyTorch batch norm",
             "nd": "PyTorch ND (original modules)"}
    return [{"name": names[r["net"]], "schedule": epochs, "epochs": r["epochs"],
             "evals": r["evals"], "target": r["target"], "stopped": r.get("stopped"),
             "cutoff": cutoff} for r in j["runs"]]


def ndcl_run(args, tmp, variant, epochs, i):
    out = os.path.join(tmp, "ndcl-%d.json" % i)
    cmd = [args.ndcl, "-q", "--json", out, "--net"] + shlex.split(variant) + common(args, epochs)
    run(cmd)
    with open(out) as f:
        j = json.load(f)
    return {"name": "ndcl-train --net " + variant, "schedule": epochs, "epochs": j["epochs"],
            "evals": j["evals"], "target": j.get("target"), "stopped": None, "cutoff": None}


def hit_seconds(r):
    t = r["target"] or {}
    return t.get("seconds")


def table(runs, args):
    print("\n| network | schedule | test acc after each epoch (cumulative training s) "
          "| s/epoch | time to %.2f |" % args.target_acc)
    print("|---|---|---|---|---|")
    for r in runs:
        cum, cells, full = 0.0, [], []
        for i, e in enumerate(r["epochs"]):
            cum += e["seconds"]
            cells.append("%.4f (%.1f)" % (e["test_acc"], cum))
            # A stopped run's last epoch is partial.
            if not (r["stopped"] and i == len(r["epochs"]) - 1):
                full.append(e["seconds"])
        t = r["target"] or {}
        if t.get("seconds") is not None:
            hit = "%.1f s (epoch %.2f)" % (t["seconds"], t["epoch"])
        elif r["stopped"] == "max-seconds":
            hit = "not reached within %.1f s" % r["cutoff"]
        else:
            hit = "not reached"
        per = "%.1f" % (sum(full) / len(full)) if full else "-"
        print("| %s | %d-epoch | %s | %s | %s |" % (r["name"], r["schedule"],
                                                    ", ".join(cells), per, hit))
    print("\nBest time to %.2f per network over its schedules:" % args.target_acc)
    best = {}
    for r in runs:
        sec = hit_seconds(r)
        if sec is not None and (best.get(r["name"]) is None or sec < best[r["name"]][0]):
            best[r["name"]] = (sec, r["schedule"])
        best.setdefault(r["name"], None)
    for name, b in best.items():
        print("  %-40s %s" % (name, "%.1f s (%d-epoch schedule)" % b if b else "not reached"))


def plot(runs, path):
    lines = ["set terminal pngcairo size 1200,600 font ',10'",
             "set key outside right top vertical font ',9'",
             "set output '%s'" % path,
             "set xlabel 'training time (s, evaluation excluded)'",
             "set ylabel 'test accuracy'", "set grid"]
    data, plots = [], []
    for i, r in enumerate(runs):
        data.append("$r%d << EOD" % i)
        data += ["%g %g" % (e["seconds"], e["test_acc"]) for e in r["evals"]]
        data.append("EOD")
        plots.append("$r%d using 1:2 with linespoints title '%s, %d epochs'"
                     % (i, r["name"], r["schedule"]))
    script = "\n".join(lines + data + ["plot " + ", ".join(plots)]) + "\n"
    p = subprocess.run(["gnuplot"], input=script, universal_newlines=True)
    if p.returncode != 0:
        sys.exit("time_to_accuracy.py: gnuplot failed")
    print("plot: %s" % path)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("--ndcl", default=os.path.join(HERE, "..", "..", "build", "tools", "train",
                                                  "ndcl-train"),
                   help="the ndcl-train binary (default: build/tools/train/ndcl-train)")
    p.add_argument("--variant", action="append",
                   help="ndcl-train's --net value and flags, repeatable (default: nd, plain)")
    p.add_argument("--torch", action="append", choices=["plain", "bn", "nd"],
                   help="PyTorch networks, repeatable (default: all three)")
    p.add_argument("--epochs", default="3",
                   help="schedule lengths for ndcl-train, a list (default 3)")
    p.add_argument("--torch-epochs",
                   help="schedule lengths for PyTorch, a list (default: --epochs)")
    p.add_argument("--cutoff", action="store_true",
                   help="ndcl-train first; PyTorch runs end at the target or at ndcl's "
                        "best time to it")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=2, help="PyTorch's threads")
    p.add_argument("--eval-every", type=int, default=100)
    p.add_argument("--target-acc", type=float, default=0.9)
    p.add_argument("--limit", type=int, default=0)
    p.add_argument("--test-limit", type=int, default=0)
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--json", help="write every run's record here")
    p.add_argument("--plot", metavar="FILE.png")
    p.add_argument("--from-json", metavar="FILE",
                   help="no runs: the table and plot of an earlier --json")
    args = p.parse_args()
    if not 0 < args.target_acc <= 1:
        p.error("--target-acc must be in (0, 1]")
    if args.from_json:
        with open(args.from_json) as f:
            runs = json.load(f)
        table(runs, args)
        if args.plot:
            plot(runs, args.plot)
        return
    try:
        args.epochs = [int(e) for e in args.epochs.split(",")]
        args.torch_epochs = ([int(e) for e in args.torch_epochs.split(",")]
                             if args.torch_epochs else args.epochs)
    except ValueError:
        p.error("--epochs and --torch-epochs take lists of integers such as 2,3")
    if min(args.epochs + args.torch_epochs) < 1 or args.eval_every < 1:
        p.error("--epochs, --torch-epochs and --eval-every must be >= 1")
    if not os.access(args.ndcl, os.X_OK):
        p.error("--ndcl %s is not an executable (build first, or name it)" % args.ndcl)
    args.torch = args.torch or ["plain", "bn", "nd"]
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        def ndcl_side():
            i = 0
            for v in args.variant or ["nd", "plain"]:
                for e in args.epochs:
                    runs.append(ndcl_run(args, tmp, v, e, i))
                    i += 1
        if args.cutoff:
            ndcl_side()
            hits = [hit_seconds(r) for r in runs if hit_seconds(r) is not None]
            cutoff = min(hits) if hits else None
            if cutoff is None:
                print("no ndcl-train run reached the target: PyTorch runs are not cut off")
        else:
            cutoff = None
        for e in args.torch_epochs:
            runs.extend(torch_runs(args, tmp, e, cutoff))
        if not args.cutoff:
            ndcl_side()
    if args.json:  # first: the runs are worth keeping whatever follows
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    table(runs, args)
    if args.plot:
        plot(runs, args.plot)


if __name__ == "__main__":
    main()
