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

Example (the README's Training table):
  /usr/bin/python3 tools/pytorch/time_to_accuracy.py --epochs 3 --target-acc 0.9 \\
      --ndcl build/tools/train/ndcl-train --variant "nd --stats-every 4" \\
      --plot time-to-acc.png
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


def common(args):
    c = ["--epochs", str(args.epochs), "--batch", str(args.batch), "--seed", str(args.seed),
         "--data", args.data, "--eval-every", str(args.eval_every),
         "--target-acc", str(args.target_acc)]
    if args.limit:
        c += ["--limit", str(args.limit)]
    if args.test_limit:
        c += ["--test-limit", str(args.test_limit)]
    return c


def torch_runs(args, tmp):
    out = os.path.join(tmp, "torch.json")
    cmd = ["/usr/bin/python3", os.path.join(HERE, "train_torch.py"), "--json", out,
           "--threads", str(args.threads)] + common(args)
    for n in args.torch:
        cmd += ["--net", n]
    text = run(cmd)
    print(text.splitlines()[0])  # torch's BLAS and GEMM rate
    with open(out) as f:
        j = json.load(f)
    names = {"plain": "PyTorch plain", "bn": "PyTorch batch norm",
             "nd": "PyTorch ND (original modules)"}
    return [{"name": names[r["net"]], "epochs": r["epochs"], "evals": r["evals"],
             "target": r["target"]} for r in j["runs"]]


def ndcl_run(args, tmp, variant, i):
    out = os.path.join(tmp, "ndcl-%d.json" % i)
    cmd = [args.ndcl, "-q", "--json", out, "--net"] + shlex.split(variant) + common(args)
    run(cmd)
    with open(out) as f:
        j = json.load(f)
    return {"name": "ndcl-train --net " + variant, "epochs": j["epochs"],
            "evals": j["evals"], "target": j.get("target")}


def table(runs, args):
    print("\n| network | test acc after each epoch (cumulative training s) | s/epoch "
          "| time to %.2f |" % args.target_acc)
    print("|---|---|---|---|")
    for r in runs:
        cum, cells = 0.0, []
        for e in r["epochs"]:
            cum += e["seconds"]
            cells.append("%.4f (%.1f)" % (e["test_acc"], cum))
        t = r["target"] or {}
        hit = ("%.1f s (epoch %.2f)" % (t["seconds"], t["epoch"])
               if t.get("seconds") is not None else "not reached")
        print("| %s | %s | %.1f | %s |" % (r["name"], ", ".join(cells),
                                           cum / len(r["epochs"]), hit))


def plot(runs, path):
    lines = ["set terminal pngcairo size 900,560",
             "set output '%s'" % path,
             "set xlabel 'training time (s, evaluation excluded)'",
             "set ylabel 'test accuracy'", "set key below", "set grid"]
    data, plots = [], []
    for i, r in enumerate(runs):
        data.append("$r%d << EOD" % i)
        data += ["%g %g" % (e["seconds"], e["test_acc"]) for e in r["evals"]]
        data.append("EOD")
        plots.append("$r%d using 1:2 with linespoints title '%s'" % (i, r["name"]))
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
    p.add_argument("--epochs", type=int, default=3)
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
    args = p.parse_args()
    if not 0 < args.target_acc <= 1:
        p.error("--target-acc must be in (0, 1]")
    if args.epochs < 1 or args.eval_every < 1:
        p.error("--epochs and --eval-every must be >= 1")
    if not os.access(args.ndcl, os.X_OK):
        p.error("--ndcl %s is not an executable (build first, or name it)" % args.ndcl)
    args.torch = args.torch or ["plain", "bn", "nd"]
    with tempfile.TemporaryDirectory() as tmp:
        runs = torch_runs(args, tmp)
        for i, v in enumerate(args.variant or ["nd", "plain"]):
            runs.append(ndcl_run(args, tmp, v, i))
    table(runs, args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(runs, f, indent=1)
    if args.plot:
        plot(runs, args.plot)


if __name__ == "__main__":
    main()
