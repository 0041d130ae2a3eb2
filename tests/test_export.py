#!/usr/bin/python3
"""test_export.py - tests of tools/pytorch/export_pytorch.py and the layer file
writer/reader (ndcl_torch.layerfile), with the PyTorch reference modules of
ndcl_torch.deconv_torch (tools/pytorch). Run with the system Python (torch):

  /usr/bin/python3 tests/test_export.py      (exit status 0 when all pass)

A small nn.Sequential (FastDeconv with stride 2 and a clamped block,
ChannelDeconv with leftover channels, Delinear with a gcd block) takes one
training step and is saved with torch.save, whole and as a state_dict; the
exporter's files are parsed back and compared with the module: names,
shapes, dtypes, metadata and values, and a module rebuilt from each file
must compute what the original computes.
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
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOOLS = os.path.join(ROOT, "tools", "pytorch")
sys.path.insert(0, TOOLS)
import layerfile  # noqa: E402
import deconv_torch  # noqa: E402
from deconv_torch import FastDeconv, Delinear, ChannelDeconv  # noqa: E402

EXPORT = os.path.join(TOOLS, "export_pytorch.py")


def build_model():
    torch.manual_seed(7)
    return nn.Sequential(
        FastDeconv(3, 8, 3, stride=2, padding=1, sampling_stride=2),  # block 64 -> 3
        ChannelDeconv(3),                                              # 8 = 2*3 + 2 left
        nn.ReLU(),
        nn.Flatten(),
        Delinear(8 * 6 * 6, 5, block=64, eps=1e-4),                    # 288: block gcd 32
    )


def run_export(*args):
    p = subprocess.run([sys.executable, EXPORT] + [str(a) for a in args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, universal_newlines=True)
    return p.returncode, p.stdout, p.stderr


EXPECTED_META = {
    "0": {"kind": "conv2d", "in_channels": "3", "out_channels": "8", "kernel_size": "3",
          "stride": "2", "padding": "1", "dilation": "1", "groups": "1", "bias": "true",
          "block": "3", "sampling_stride": "2", "eps": "1e-05", "n_iter": "5",
          "momentum": "0.1", "freeze": "false", "freeze_iter": "100"},
    "1": {"kind": "channel", "block": "3", "eps": "0.01", "n_iter": "5", "momentum": "0.1",
          "sampling_stride": "3"},
    "4": {"kind": "linear", "in_features": "288", "out_features": "5", "bias": "true",
          "block": "32", "eps": "0.0001", "n_iter": "5", "momentum": "0.1"},
}

EXPECTED_SHAPES = {
    "0": {"weight": (8, 3, 3, 3), "bias": (8,), "running_mean": (27,),
          "running_deconv": (27, 27), "counter": ()},
    "1": {"running_mean1": (3, 1), "running_deconv": (3, 3), "running_mean2": (1, 1),
          "running_var": (1, 1), "num_batches_tracked": ()},
    "4": {"weight": (5, 288), "bias": (5,), "running_mean": (32,), "running_deconv": (32, 32)},
}


class ExportTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        torch.set_num_threads(1)
        cls.tmp = tempfile.mkdtemp(prefix="ndcl-export-test-")
        cls.model = build_model()
        cls.model.train()
        g = torch.Generator().manual_seed(3)
        cls.x = torch.randn(4, 3, 12, 12, generator=g) * 1.5 + 0.5
        cls.model(cls.x)  # one training step
        cls.xe = torch.randn(4, 3, 12, 12, generator=g) * 1.5 + 0.5
        cls.model_path = os.path.join(cls.tmp, "model.pt")
        torch.save(cls.model, cls.model_path)
        cls.sd_path = os.path.join(cls.tmp, "state.pt")
        torch.save(cls.model.state_dict(), cls.sd_path)

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp)

    def outdir(self, name):
        return os.path.join(self.tmp, name)

    def check_files(self, out, counter=1):
        for name, meta in EXPECTED_META.items():
            path = os.path.join(out, name + ".safetensors")
            self.assertTrue(os.path.exists(path), path)
            tensors, md = layerfile.read_safetensors(path)
            self.assertEqual(md, meta, name)
            mod = self.model[int(name)]
            sd = mod.state_dict()
            expected_names = list(sd) + (["counter"] if meta["kind"] == "conv2d" else [])
            self.assertEqual(list(tensors), expected_names, name)
            for k, shape in EXPECTED_SHAPES[name].items():
                self.assertEqual(tensors[k].shape, shape, "%s.%s" % (name, k))
            for k, v in sd.items():
                want = v.detach().numpy()
                self.assertEqual(tensors[k].dtype, np.int64 if k == "num_batches_tracked" else np.float32)
                self.assertTrue(np.array_equal(tensors[k], want), "%s.%s differs" % (name, k))
            if meta["kind"] == "conv2d":
                self.assertEqual(tensors["counter"].dtype, np.int64)
                self.assertEqual(int(tensors["counter"]), counter)
            if meta["kind"] == "channel":
                self.assertEqual(int(tensors["num_batches_tracked"]), 1)

            # A module rebuilt from the file computes what the original does.
            re = deconv_torch.load_layer(path)
            self.assertEqual(re.block, mod.block)
            if meta["kind"] == "conv2d":
                self.assertEqual(re.sampling_stride, mod.sampling_stride)
            x = self.layer_input(int(name))
            for train in (False, True):
                a = deconv_torch.load_layer(path)
                if meta["kind"] == "conv2d":
                    a.counter = mod.counter
                b = copy.deepcopy(mod)
                a.train(train)
                b.train(train)
                with torch.no_grad():
                    self.assertTrue(torch.equal(a(x), b(x)), "%s train=%s" % (name, train))

    def layer_input(self, index):
        x = self.xe
        with torch.no_grad():
            for i in range(index):
                m = self.model[i]
                if layerfile.layer_kind(m) is not None:
                        m = copy.deepcopy(m).eval()
                x = m(x)
        return x

    def test_whole_module(self):
        out = self.outdir("module")
        rc, so, se = run_export(self.model_path, out)
        self.assertEqual(rc, 0, se)
        lines = so.strip().splitlines()
        self.assertEqual(len(lines), 3, so)
        self.assertEqual(sorted(os.listdir(out)), ["0.safetensors", "1.safetensors", "4.safetensors"])
        self.check_files(out)

    def test_state_dict(self):
        out = self.outdir("sd")
        rc, so, se = run_export(self.sd_path, out)
        self.assertEqual(rc, 2)
        self.assertIn("geometry", se)
        self.assertIn("--build", se)
        self.assertFalse(os.path.exists(out) and os.listdir(out), "nothing written on error")
        rc, so, se = run_export(self.sd_path, out, "--stride", 2, "--padding", 1, "--dilation", 1,
                                "--conv-sampling-stride", 2, "--channel-sampling-stride", 3,
                                "--conv-eps", 1e-5, "--channel-eps", 1e-2, "--linear-eps", 1e-4,
                                "--n-iter", 5, "--momentum", 0.1, "--counter", 1)
        self.assertEqual(rc, 0, se)
        self.assertEqual(len(so.strip().splitlines()), 3, so)
        self.check_files(out)
        # Identical bytes to the whole-module export.
        mod_out = self.outdir("module_cmp")
        rc, _, se = run_export(self.model_path, mod_out)
        self.assertEqual(rc, 0, se)
        for f in os.listdir(mod_out):
            with open(os.path.join(out, f), "rb") as a, open(os.path.join(mod_out, f), "rb") as b:
                self.assertEqual(a.read(), b.read(), f)

    def test_state_dict_set_and_defaults(self):
        ckpt = os.path.join(self.tmp, "ckpt.pt")
        torch.save({"epoch": 3, "state_dict": self.model.state_dict()}, ckpt)
        out = self.outdir("sd_defaults")
        # Defaults never give geometry: dilation left out is an error.
        rc, so, se = run_export(ckpt, out, "--use-defaults", "--set", "0.stride=2",
                                "--set", "0.padding=1", "--set", "0.sampling_stride=2",
                                "--set", "4.eps=0.0001", "--counter", 1)
        self.assertEqual(rc, 2, se)
        self.assertIn("0 (dilation)", se)
        rc, so, se = run_export(ckpt, out, "--use-defaults", "--set", "0.stride=2",
                                "--set", "0.padding=1", "--set", "0.dilation=1",
                                "--set", "0.sampling_stride=2",
                                "--set", "4.eps=0.0001", "--counter", 1)
        self.assertEqual(rc, 0, se)
        self.check_files(out)
        # Every default used is printed.
        self.assertIn("default 1 (channel): eps = 0.01", se)
        self.assertNotIn("stride =", se.replace("sampling_stride =", ""))

    def test_original_class_names(self):
        # Classes from another module (as the original repository's
        # models/deconv.py) are matched by name; --pythonpath finds them.
        pkg = os.path.join(self.tmp, "fakerepo")
        os.makedirs(os.path.join(pkg, "models"), exist_ok=True)
        with open(os.path.join(pkg, "models", "__init__.py"), "w") as f:
            f.write("")
        with open(os.path.join(pkg, "models", "deconv.py"), "w") as f:
            f.write("import deconv_torch\n"
                    "class FastDeconv(deconv_torch.FastDeconv): pass\n"
                    "class Delinear(deconv_torch.Delinear): pass\n")
        sys.path.insert(0, pkg)
        try:
            from models import deconv as orig
            torch.manual_seed(1)
            m = nn.Sequential(orig.FastDeconv(4, 4, 3, padding=1, block=2, freeze=True),
                              nn.Flatten(), orig.Delinear(4 * 25, 3, bias=False))
            m.train()
            m(torch.randn(2, 4, 5, 5))
            path = os.path.join(self.tmp, "orig.pt")
            torch.save(m, path)
        finally:
            sys.path.remove(pkg)
            for k in [k for k in sys.modules if k == "models" or k.startswith("models.")]:
                del sys.modules[k]
        out = self.outdir("orig")
        rc, so, se = run_export(path, out)
        self.assertNotEqual(rc, 0)  # models.deconv not importable without --pythonpath
        self.assertIn("--pythonpath", se)
        rc, so, se = run_export(path, out, "--pythonpath", pkg)
        self.assertEqual(rc, 0, se)
        t, md = layerfile.read_safetensors(os.path.join(out, "0.safetensors"))
        self.assertEqual(md["freeze"], "true")
        self.assertEqual(md["block"], "2")
        self.assertEqual(int(t["counter"]), 1)
        t, md = layerfile.read_safetensors(os.path.join(out, "2.safetensors"))
        self.assertEqual(md["bias"], "false")
        self.assertNotIn("bias", t)
        self.assertEqual(md["block"], "100")

    def test_no_layers(self):
        path = os.path.join(self.tmp, "plain.pt")
        torch.save(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)), path)
        rc, so, se = run_export(path, self.outdir("plain"))
        self.assertNotEqual(rc, 0)
        self.assertIn("no FastDeconv", se)
        sd = os.path.join(self.tmp, "plain_sd.pt")
        torch.save(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)).state_dict(), sd)
        rc, so, se = run_export(sd, self.outdir("plain_sd"), "--use-defaults")
        self.assertNotEqual(rc, 0)
        self.assertIn("no FastDeconv", se)

    def test_grouped_and_nonsquare_state_dict(self):
        torch.manual_seed(2)
        m = nn.Sequential(FastDeconv(8, 6, (3, 1), padding=1, groups=2, bias=False))
        m.train()
        m(torch.randn(2, 8, 7, 7))
        path = os.path.join(self.tmp, "g2.pt")
        torch.save(m.state_dict(), path)
        out = self.outdir("g2")
        rc, so, se = run_export(path, out, "--use-defaults", "--stride", "1", "--padding", "1",
                                "--dilation", "1")
        self.assertEqual(rc, 0, se)
        t, md = layerfile.read_safetensors(os.path.join(out, "0.safetensors"))
        self.assertEqual((md["groups"], md["kernel_size"], md["block"], md["bias"]),
                         ("2", "3,1", "4", "false"))
        self.assertEqual(t["running_deconv"].shape, (2, 12, 12))
        self.assertEqual(t["running_mean"].shape, (24,))
        re = deconv_torch.load_layer(os.path.join(out, "0.safetensors"))
        x = torch.randn(2, 8, 7, 7)
        m.eval()
        re.eval()
        with torch.no_grad():
            self.assertTrue(torch.equal(re(x), m[0](x)))


class LayerFileTest(unittest.TestCase):
    def test_roundtrip(self):
        tmp = tempfile.mkdtemp(prefix="ndcl-layerfile-test-")
        try:
            path = os.path.join(tmp, "t.safetensors")
            tensors = {"a": np.arange(6, dtype=np.float32).reshape(2, 3),
                       "b": np.array(5, dtype=np.int64),
                       "c": np.linspace(0, 1, 3),
                       "d": torch.tensor([1.5, -2.0], dtype=torch.float64).float()}
            layerfile.write_safetensors(path, tensors, {"kind": "x", "note": "é"})
            with open(path, "rb") as f:
                raw = f.read()
            n = int.from_bytes(raw[:8], "little")
            self.assertEqual(n % 8, 0)
            t, md = layerfile.read_safetensors(path)
            self.assertEqual(list(t), ["a", "b", "c", "d"])
            self.assertEqual(md, {"kind": "x", "note": "é"})
            self.assertEqual(t["b"].shape, ())
            self.assertEqual(t["b"].dtype, np.int64)
            self.assertEqual(t["c"].dtype, np.float64)
            self.assertTrue(np.array_equal(t["a"], tensors["a"]))
            self.assertTrue(np.array_equal(t["d"], np.array([1.5, -2.0], dtype=np.float32)))
            self.assertEqual(len(raw), 8 + n + 24 + 8 + 24 + 8)
        finally:
            shutil.rmtree(tmp)

    def test_golden_layer_files_load(self):
        data = os.path.join(ROOT, "tests", "data")
        if not os.path.isdir(data):
            self.skipTest("no tests/data")
        for case in sorted(os.listdir(data)):
            path = os.path.join(data, case, "layer.safetensors")
            if os.path.exists(path):
                m = deconv_torch.load_layer(path)
                self.assertIsNotNone(layerfile.layer_kind(m), case)


if __name__ == "__main__":
    unittest.main()
