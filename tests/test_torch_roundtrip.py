#!/usr/bin/python3
"""test_torch_roundtrip.py - a trained network out of PyTorch and back, as a
user of the original repository does it: ndcl_torch (export, fold, load)
and ndcl-export-pytorch with --build, --plain and --onnx. Run with the
system Python (torch), ndcl-run's path in NDCL_RUN:

  NDCL_RUN=build/tools/run/ndcl-run /usr/bin/python3 tests/test_torch_roundtrip.py

The network (written to a scratch netdef.py, as a user's model file) is
ResNet-like: a 3x3 FastDeconv stem, a block with a stride-2 3x3 FastDeconv,
a depthwise (groups = channels) FastDeconv and a stride-2 1x1 downsampling
shortcut, a ChannelDeconv on the feature maps, one on the pooled 2-D
features, and a Delinear head. It trains a few batches and is saved as
main.py saves it: {'state_dict': ...} with DataParallel's 'module.'
prefixes. Checked:
  - the exported layer files run by ndcl-run give each layer's PyTorch
    output (evaluation, on the input the layer sees in the network);
  - the folded plain network, from fold() and from --plain, and its ONNX
    file run by OpenCV's DNN module (a runtime other than PyTorch) give the
    network's evaluation logits within 1e-5 relative;
  - layers stepped by ndcl-run --save-state load back with load() (strict
    load_state_dict, the conv counter included) and equal PyTorch's own
    training step of the same layer;
  - misuse exits 2 naming the problem: a state_dict without --build, a
    --build returning another architecture, a checkpoint whose shapes do
    not match.
"""

import copy
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools", "pytorch"))
import ndcl_torch  # noqa: E402

EXPORT = os.path.join(ROOT, "tools", "pytorch", "export_pytorch.py")

NETDEF = '''
import sys
sys.path.insert(0, %r)
import torch.nn as nn
import torch.nn.functional as F
from ndcl_torch.deconv_torch import FastDeconv, Delinear, ChannelDeconv


class Block(nn.Module):
    def __init__(self, cin, cout, stride, k2=3):
        super().__init__()
        self.conv1 = FastDeconv(cin, cout, 3, stride=stride, padding=1, block=4)
        self.conv2 = FastDeconv(cout, cout, k2, padding=k2 // 2, groups=cout, n_iter=3)
        self.shortcut = nn.Sequential(FastDeconv(cin, cout, 1, stride=stride))

    def forward(self, x):
        return F.relu(self.conv2(F.relu(self.conv1(x))) + self.shortcut(x))


class Net(nn.Module):
    def __init__(self, k2=3):
        super().__init__()
        self.conv1 = FastDeconv(3, 8, 3, padding=1, freeze=True, freeze_iter=2, n_iter=10)
        self.layer1 = Block(8, 16, 2, k2)
        self.deconv1 = ChannelDeconv(6, eps=1e-5, sampling_stride=2)
        self.deconv2 = ChannelDeconv(5, eps=1e-5)
        self.linear = Delinear(16, 10, block=8)

    def forward(self, x):
        out = self.layer1(F.relu(self.conv1(x)))
        out = self.deconv1(out)
        out = F.avg_pool2d(out, 4)
        out = out.view(out.size(0), -1)
        out = self.deconv2(out)
        return self.linear(out)


def build():
    return Net()


def build_wide():
    # the same names, another kernel: shapes that do not match
    return Net(k2=5)


def build_other():
    return nn.Sequential(FastDeconv(3, 8, 3, padding=1), nn.Flatten(), Delinear(512, 10))
''' % os.path.join(ROOT, "tools", "pytorch")


def rel(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


class RoundTrip(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.ndcl_run = os.environ.get("NDCL_RUN")
        torch.set_num_threads(1)
        cls.tmp = tempfile.mkdtemp(prefix="ndcl-torch-roundtrip-")
        with open(os.path.join(cls.tmp, "netdef.py"), "w") as f:
            f.write(NETDEF)
        sys.path.insert(0, cls.tmp)
        import netdef
        cls.netdef = netdef
        torch.manual_seed(4)
        g = torch.Generator().manual_seed(5)
        cls.model = netdef.build()
        cls.model.train()
        for _ in range(4):
            cls.model(torch.randn(8, 3, 8, 8, generator=g) * 1.5 + 0.5)
        cls.model.eval()
        cls.x = torch.randn(5, 3, 8, 8, generator=g) * 1.5 + 0.5
        with torch.no_grad():
            cls.logits = cls.model(cls.x)
        # As main.py saves it from a DataParallel model.
        sd = {"module." + k: v for k, v in cls.model.state_dict().items()}
        cls.ckpt = os.path.join(cls.tmp, "ckpt.pth.tar")
        torch.save({"epoch": 4, "state_dict": sd, "best_acc": 0.5}, cls.ckpt)

    @classmethod
    def tearDownClass(cls):
        sys.path.remove(cls.tmp)
        shutil.rmtree(cls.tmp)

    def path(self, *names):
        return os.path.join(self.tmp, *names)

    def export(self, *args):
        p = subprocess.run([sys.executable, EXPORT] + [str(a) for a in args], cwd=self.tmp,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True)
        return p.returncode, p.stdout, p.stderr

    def run_tool(self, *args):
        if not self.ndcl_run:
            self.skipTest("NDCL_RUN (the path of ndcl-run) is not set")
        p = subprocess.run([self.ndcl_run] + [str(a) for a in args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, universal_newlines=True)
        self.assertEqual(p.returncode, 0, "ndcl-run %s: %s" % (" ".join(map(str, args)), p.stderr))

    def layer_inputs(self, model, x):
        """{name: (input, output)} of every deconvolution layer on x, in
        evaluation mode."""
        seen = {}
        hooks = []
        for name, kind, m in ndcl_torch.layers(model):
            def hook(mod, inp, out, _name=name):
                seen[_name] = (inp[0].detach().clone(), out.detach().clone())
            hooks.append(m.register_forward_hook(hook))
        with torch.no_grad():
            model(x)
        for h in hooks:
            h.remove()
        return seen

    # ------------------------------------------------------------ export

    def test_checkpoint_exports_and_runs(self):
        out = self.path("layers")
        rc, so, se = self.export("ckpt.pth.tar", out, "--build", "netdef.py:build")
        self.assertEqual(rc, 0, se)
        names = [n for n, _, _ in ndcl_torch.layers(self.model)]
        self.assertEqual(sorted(os.listdir(out)), sorted(n + ".safetensors" for n in names))
        self.assertEqual(len(so.strip().splitlines()), len(names))
        # The geometry is the modules': stride 2 and padding 1 where built so.
        from ndcl_torch import layerfile
        _, md = layerfile.read_safetensors(os.path.join(out, "layer1.conv1.safetensors"))
        self.assertEqual((md["stride"], md["padding"], md["kernel_size"]), ("2", "1", "3"))
        _, md = layerfile.read_safetensors(os.path.join(out, "layer1.shortcut.0.safetensors"))
        self.assertEqual((md["stride"], md["padding"], md["kernel_size"]), ("2", "0", "1"))
        _, md = layerfile.read_safetensors(os.path.join(out, "layer1.conv2.safetensors"))
        self.assertEqual((md["groups"], md["n_iter"]), ("16", "3"))
        _, md = layerfile.read_safetensors(os.path.join(out, "deconv1.safetensors"))
        self.assertEqual((md["eps"], md["sampling_stride"]), ("1e-05", "2"))
        # Each layer through ndcl-run on the input it sees in the network.
        io = self.layer_inputs(self.model, self.x)
        for name in names:
            xin, want = io[name]
            xp, yp = self.path("in_%s.npy" % name), self.path("out_%s.npy" % name)
            np.save(xp, xin.numpy())
            self.run_tool(os.path.join(out, name + ".safetensors"), "--input", xp,
                          "--output", yp, "--mode", "eval")
            got = np.load(yp)
            self.assertEqual(got.shape, tuple(want.shape), name)
            self.assertLess(rel(got, want.numpy()), 1e-5, name)

    def test_export_function_in_process(self):
        # What a training script whose classes live in __main__ calls.
        out = self.path("inproc")
        written = ndcl_torch.export(self.model, out)
        self.assertEqual([w[2] for w in written], [n for n, _, _ in ndcl_torch.layers(self.model)])
        m = self.netdef.build()
        m.load_state_dict(self.model.state_dict())
        for _, _, mod in ndcl_torch.layers(m):  # scramble, then load back
            for b in mod.buffers():
                b.add_(1)
        self.assertEqual(len(ndcl_torch.load(m, out)), len(written))
        for (k, a), (_, b) in zip(m.state_dict().items(), self.model.state_dict().items()):
            self.assertTrue(torch.equal(a, b), k)
        self.assertEqual(m.conv1.counter, self.model.conv1.counter)

    # -------------------------------------------------------------- fold

    def test_fold(self):
        plain = ndcl_torch.fold(self.model, self.x[:1])
        kinds = {n: type(m).__name__ for n, m in plain.named_modules()}
        self.assertEqual(kinds["conv1"], "Conv2d")
        self.assertEqual(kinds["layer1.conv2"], "Conv2d")
        self.assertEqual(plain.layer1.conv2.groups, 16)
        self.assertEqual(plain.layer1.conv1.stride, (2, 2))
        self.assertEqual(kinds["deconv1"], "Conv2d")  # on [N, 16, 4, 4]
        self.assertEqual(kinds["deconv2"], "Linear")  # on [N, 16]
        self.assertEqual(kinds["linear"], "Linear")
        self.assertFalse(any(ndcl_torch.layer_kind(m) for m in plain.modules()))
        plain.eval()
        with torch.no_grad():
            self.assertLess(rel(plain(self.x), self.logits), 1e-5)
        # The original is untouched.
        self.assertEqual(type(self.model.conv1).__name__, "FastDeconv")
        # A ChannelDeconv cannot be folded without knowing its input.
        with self.assertRaises(ValueError) as cm:
            ndcl_torch.fold(self.model)
        self.assertIn("deconv1", str(cm.exception))

    def test_plain_and_onnx(self):
        rc, so, se = self.export("ckpt.pth.tar", "--build", "netdef.py:build", "--plain",
                                 "plain.pt", "--onnx", "net.onnx", "--input-shape", "5,3,8,8")
        self.assertEqual(rc, 0, se)
        try:
            plain = torch.load(self.path("plain.pt"), weights_only=False)
        except TypeError:  # a torch without weights_only
            plain = torch.load(self.path("plain.pt"))
        self.assertFalse(any(ndcl_torch.layer_kind(m) for m in plain.modules()))
        plain.eval()
        with torch.no_grad():
            self.assertLess(rel(plain(self.x), self.logits), 1e-5)
        try:
            import onnx
            import cv2
        except ImportError as e:
            self.skipTest("ONNX check needs python3-onnx and python3-opencv: %s" % e)
        onnx.checker.check_model(onnx.load(self.path("net.onnx")))
        net = cv2.dnn.readNetFromONNX(self.path("net.onnx"))
        net.setInput(self.x.numpy())
        self.assertLess(rel(net.forward(), self.logits.numpy()), 1e-5)
        # Any batch: the graph's input has a free first dimension.
        rc, so, se = self.export("ckpt.pth.tar", "--build", "netdef.py:build", "--onnx",
                                 "dyn.onnx", "--input-shape", "1,3,8,8", "--dynamic-batch")
        self.assertEqual(rc, 0, se)
        g = onnx.load(self.path("dyn.onnx")).graph
        self.assertEqual(g.input[0].type.tensor_type.shape.dim[0].dim_param, "batch")

    # ------------------------------------------------------ the way back

    def test_stepped_layers_load_back(self):
        out = self.path("step_in")
        ndcl_torch.export(self.model, out)
        back = self.path("step_out")
        os.makedirs(back, exist_ok=True)
        io = self.layer_inputs(self.model, self.x)
        stepped = {}
        for name in ("layer1.conv1", "deconv1", "linear"):
            xp = self.path("step_%s.npy" % name)
            np.save(xp, io[name][0].numpy())
            self.run_tool(os.path.join(out, name + ".safetensors"), "--input", xp, "--mode",
                          "train", "--output", self.path("y_%s.npy" % name), "--save-state",
                          os.path.join(back, name + ".safetensors"))
            mod = copy.deepcopy(dict(self.model.named_modules())[name]).train()
            with torch.no_grad():
                mod(io[name][0])
            stepped[name] = mod
        m = self.netdef.build()
        m.load_state_dict(self.model.state_dict(), strict=True)
        m.conv1.counter = self.model.conv1.counter
        loaded = ndcl_torch.load(m, back, missing_ok=True)
        self.assertEqual(sorted(loaded), ["deconv1", "layer1.conv1", "linear"])
        mods = dict(m.named_modules())
        for name, ref in stepped.items():
            for k, want in ref.state_dict().items():
                got = mods[name].state_dict()[k]
                if want.is_floating_point():
                    self.assertLess(rel(got.numpy(), want.numpy()), 1e-5, "%s.%s" % (name, k))
                else:
                    self.assertTrue(torch.equal(got, want), "%s.%s" % (name, k))
        self.assertEqual(mods["layer1.conv1"].counter, stepped["layer1.conv1"].counter)
        self.assertEqual(mods["layer1.conv1"].counter, self.model.layer1.conv1.counter + 1)
        # The whole network with the stepped layers loads strictly into a new one.
        fresh = self.netdef.build()
        fresh.load_state_dict(m.state_dict(), strict=True)
        # A file of another layer is refused, naming both.
        shutil.copy(os.path.join(back, "layer1.conv1.safetensors"),
                    os.path.join(back, "conv1.safetensors"))
        with self.assertRaises(ValueError) as cm:
            ndcl_torch.load(m, back, missing_ok=True)
        self.assertIn("conv1", str(cm.exception))

    def test_model_of_a_training_script(self):
        # Classes defined in the script that trains and saves the whole
        # model (__main__): not importable anywhere else.
        script = self.path("train_script.py")
        with open(script, "w") as f:
            f.write("import sys\n"
                    "sys.path.insert(0, %r)\n"
                    "import torch, torch.nn as nn\n"
                    "from ndcl_torch.deconv_torch import FastDeconv, Delinear\n"
                    "class Small(nn.Module):\n"
                    "    def __init__(self):\n"
                    "        super().__init__()\n"
                    "        self.conv = FastDeconv(3, 4, 3, padding=1, freeze=True)\n"
                    "        self.fc = Delinear(4 * 8 * 8, 3, block=16)\n"
                    "    def forward(self, x):\n"
                    "        return self.fc(self.conv(x).flatten(1))\n"
                    "def make():\n"
                    "    return Small()\n"
                    "if __name__ == '__main__':\n"
                    "    torch.manual_seed(0)\n"
                    "    m = make().train()\n"
                    "    for _ in range(3):\n"
                    "        m(torch.randn(4, 3, 8, 8))\n"
                    "    torch.save(m, sys.argv[1])\n" % os.path.join(ROOT, "tools", "pytorch"))
        subprocess.run([sys.executable, script, self.path("script_model.pt")], check=True)
        rc, so, se = self.export("script_model.pt", self.path("script_out"))
        self.assertEqual(rc, 1)
        self.assertIn("__main__", se)
        self.assertIn("--build", se)
        rc, so, se = self.export("script_model.pt", self.path("script_out"), "--build",
                                 "train_script.py:make")
        self.assertEqual(rc, 0, se)
        from ndcl_torch import layerfile
        t, md = layerfile.read_safetensors(self.path("script_out", "conv.safetensors"))
        self.assertEqual((md["padding"], md["freeze"]), ("1", "true"))
        self.assertEqual(int(t["counter"]), 3)  # the pickled module's own counter
        self.assertEqual(sorted(os.listdir(self.path("script_out"))),
                         ["conv.safetensors", "fc.safetensors"])

    # ------------------------------------------------------------- misuse

    def test_misuse_exits_2(self):
        rc, so, se = self.export("ckpt.pth.tar", self.path("m1"))
        self.assertEqual(rc, 2)
        self.assertIn("--build", se)
        self.assertIn("layer1.conv1 (stride, padding, dilation)", se)
        self.assertFalse(os.path.exists(self.path("m1")), "nothing written")
        rc, so, se = self.export("ckpt.pth.tar", self.path("m2"), "--build",
                                 "netdef.py:build_other")
        self.assertEqual(rc, 2)
        self.assertIn("does not fit", se)
        self.assertIn("layer1.conv1.weight", se)  # not in the model
        self.assertIn("0.weight", se)  # not in the checkpoint
        rc, so, se = self.export("ckpt.pth.tar", self.path("m3"), "--build",
                                 "netdef.py:build_wide")
        self.assertEqual(rc, 2)
        self.assertIn("layer1.conv2.weight: checkpoint [16, 1, 3, 3], model [16, 1, 5, 5]", se)
        self.assertFalse(os.path.exists(self.path("m3")), "nothing written")
        rc, so, se = self.export("ckpt.pth.tar", self.path("m4"), "--build", "netdef.py:nope")
        self.assertEqual(rc, 2)
        self.assertIn("no function nope", se)
        rc, so, se = self.export("ckpt.pth.tar", "--build", "netdef.py:build", "--plain", "p.pt")
        self.assertEqual(rc, 2)
        self.assertIn("--input-shape", se)


if __name__ == "__main__":
    unittest.main()
