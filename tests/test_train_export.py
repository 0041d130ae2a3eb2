#!/usr/bin/python3
"""test_train_export.py - the model ndcl-train saves, checked in PyTorch.
Run with the system Python (torch), the tool's path in NDCL_TRAIN:

  NDCL_TRAIN=build/tools/train/ndcl-train /usr/bin/python3 tests/test_train_export.py

A short run of each network saves DIR/model.safetensors and the layer
files DIR/0, 3, 7.safetensors. The folded model must load unchanged
(load_state_dict, strict) into the plain network the tool's help names
and classify the test images as the tool reported (the same number
right); and the original modules rebuilt from the layer files
(tools/pytorch/deconv_torch.py, evaluation mode) must compute the same logits.

Training itself: from the tool's initial weights (a run with a learning
rate of 1e-30 saves them unchanged), two steps on the same 128 images
(two epochs of one batch: momentum and the cosine schedule both act) in
PyTorch, with the original modules for --net nd, give the losses and the
weights the tool's two steps give.
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
sys.path.insert(0, os.path.join(ROOT, "tools", "pytorch"))
import deconv_torch  # noqa: E402
import layerfile  # noqa: E402
import torch.nn.functional as F  # noqa: E402
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
        # The same weights in two implementations whose sums run in other
        # orders: the logits agree to float rounding, so only an image whose
        # two best logits are that close may be classified otherwise.
        top2 = logits.topk(2, dim=1).values
        close = int(((top2[:, 0] - top2[:, 1]) <= 1e-4 * logits.abs().max()).sum())
        self.assertLessEqual(abs(right - round(acc * TEST_IMAGES)), close,
                             "%s: PyTorch classifies %d of %d right, ndcl-train reported "
                             "%.4f (%d images have their two best logits within rounding)"
                             % (net, right, TEST_IMAGES, acc, close))
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

    def tool_steps(self, net, name, lr, epochs):
        d = os.path.join(self.tmp.name, name)
        j = d + ".json"
        p = subprocess.run([self.tool, "--net", net, "--limit", "128", "--batch", "128",
                            "--epochs", str(epochs), "--lr", repr(lr), "--test-limit", "100",
                            "--save", d, "--json", j, "-q"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           universal_newlines=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(j) as f:
            losses = [l for e in json.load(f)["epochs"] for l in e["losses"]]
        params = []
        for i in (0, 3, 7):
            layer = deconv_torch.load_layer(os.path.join(d, "%d.safetensors" % i))
            params += [layer.weight.detach().clone(), layer.bias.detach().clone()]
        return losses, params

    def check_steps(self, net, tol):
        _, init = self.tool_steps(net, net + "-init", 1e-30, 1)
        losses, after = self.tool_steps(net, net + "-steps", 0.05, 2)
        if net == "plain":
            model = plain_net()
        else:
            model = nn.Sequential(
                deconv_torch.FastDeconv(1, 32, 3, padding=1, freeze=True, n_iter=15),
                nn.ReLU(), nn.MaxPool2d(2), deconv_torch.FastDeconv(32, 64, 3, padding=1),
                nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(), deconv_torch.Delinear(3136, 10, block=64))
        with torch.no_grad():
            for p, v in zip(model.parameters(), init):
                p.copy_(v)
        x, y = load(DEFAULT_DATA, "train", 128)
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=2)
        model.train()
        for step in range(2):
            loss = F.cross_entropy(model(x), y)
            self.assertAlmostEqual(loss.item(), losses[step], delta=1e-5 * loss.item(),
                                   msg="%s: step %d loss" % (net, step + 1))
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        names = ["0.weight", "0.bias", "3.weight", "3.bias", "7.weight", "7.bias"]
        for name, p, got, p0 in zip(names, model.parameters(), after, init):
            want = p.detach() - p0
            err = float((got - p0 - want).abs().max() / want.abs().max())
            self.assertLess(err, tol, "%s %s: the two steps' update differs by %g (relative)"
                            % (net, name, err))

    def test_plain_steps_match_pytorch(self):
        self.check_steps("plain", 1e-4)

    def test_nd_steps_match_pytorch(self):
        # The gradients of the deconvolved layers go through 5 to 15
        # Newton-Schulz iterations in float32.
        self.check_steps("nd", 2e-2)

    def test_nd(self):
        self.check("nd")

    def test_plain(self):
        self.check("plain")


if __name__ == "__main__":
    unittest.main()
