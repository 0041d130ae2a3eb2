#!/usr/bin/python3
"""test_train_export.py - the model ndcl-train saves, checked in PyTorch.
Run with the system Python (torch), the tool's path in NDCL_TRAIN:

  NDCL_TRAIN=build/tools/train/ndcl-train /usr/bin/python3 tests/test_train_export.py

A short run of each network saves DIR/model.safetensors and the layer
files DIR/0, 3, 7.safetensors. The folded model must load unchanged
(load_state_dict, strict) into the plain network the tool's help names
and classify the test images as the tool reported (the same number
right); and the original modules rebuilt from the layer files
(tools/deconv_torch.py, evaluation mode) must compute the same logits.
"""

import json
import os
import subprocess
import sys
import tempfile
import unittest

import torch
import torch.nn as nn

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import deconv_torch  # noqa: E402
import layerfile  # noqa: E402
from train_torch import DEFAULT_DATA, load, plain_net  # noqa: E402

TEST_IMAGES = 1000


class SavedModel(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tool = os.environ.get("NDCL_TRAIN")
        if not cls.tool:
            raise unittest.SkipTest("NDCL_TRAIN (the path of ndcl-train) is not set")
        cls.tmp = tempfile.TemporaryDirectory(prefix="ndcl-train-export-")
        cls.xte, cls.yte = load(DEFAULT_DATA, "test", TEST_IMAGES)
        torch.set_num_threads(2)

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def run_tool(self, net):
        d = os.path.join(self.tmp.name, net)
        j = os.path.join(self.tmp.name, net + ".json")
        p = subprocess.run([self.tool, "--net", net, "--limit", "640", "--batch", "64",
                            "--test-limit", str(TEST_IMAGES), "--save", d, "--json", j, "-q"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(j) as f:
            return d, json.load(f)["epochs"][-1]["test_acc"]

    def check(self, net):
        d, acc = self.run_tool(net)
        tensors, _ = layerfile.read_safetensors(os.path.join(d, "model.safetensors"))
        self.assertEqual(sorted(tensors), ["0.bias", "0.weight", "3.bias", "3.weight",
                                           "7.bias", "7.weight"])
        model = plain_net()
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in tensors.items()})
        model.eval()
        with torch.no_grad():
            logits = model(self.xte)
        right = int((logits.argmax(1) == self.yte).sum())
        self.assertEqual(right, round(acc * TEST_IMAGES),
                         "%s: PyTorch classifies %d of %d right, ndcl-train reported %.4f"
                         % (net, right, TEST_IMAGES, acc))
        # The layer files, in the original modules, compute the same logits.
        layers = [deconv_torch.load_layer(os.path.join(d, "%d.safetensors" % i))
                  for i in (0, 3, 7)]
        nd = nn.Sequential(layers[0], nn.ReLU(), nn.MaxPool2d(2), layers[1], nn.ReLU(),
                           nn.MaxPool2d(2), nn.Flatten(), layers[2])
        nd.eval()
        with torch.no_grad():
            ref = nd(self.xte)
        err = float((logits - ref).abs().max() / ref.abs().max())
        self.assertLess(err, 1e-4, "%s: folded model vs layer files: rel err %g" % (net, err))
        # Trained (ten steps): well above chance, 0.1, on the test images.
        self.assertGreater(acc, 0.3, net)

    def test_nd(self):
        self.check("nd")

    def test_plain(self):
        self.check("plain")


if __name__ == "__main__":
    unittest.main()
