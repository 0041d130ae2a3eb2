#!/usr/bin/python3
"""golden.py - generates the golden data of tests/data/<case>/ from ndcl's
PyTorch reference (tools/pytorch/deconv_torch.py), float32, deterministic (fixed
seeds, one thread), and checks it against an independent float64 numpy
implementation written from the text of the README's "Arithmetic" section.

Usage (from anywhere; run with the system Python that has torch):
  /usr/bin/python3 tools/pytorch/golden.py            write tests/data/<case>/
  /usr/bin/python3 tools/pytorch/golden.py --out DIR  write DIR/<case>/ instead
  /usr/bin/python3 tools/pytorch/golden.py --verify   regenerate into a temporary
                                              directory and check that the
                                              committed files are identical
  --case NAME (repeatable) restricts to some cases.

Per case (see tests/data/README.md): layer.safetensors; x1.npy,
y_train1.npy, state_train1.safetensors, dy1.npy, dx1.npy, grads1.safetensors;
x2.npy, y_train2.npy, state_train2.safetensors; y_eval.npy, dy_eval.npy,
dx_eval.npy, grads_eval.safetensors; conv_freeze also x3.npy, y_train3.npy,
state_train3.safetensors.

Self-checks, each must pass or the script exits non-zero:
  - every output and state of every step against the float64 numpy
    reference (started from the previous step's written state file);
  - the first train step's dx / weight / bias gradients against central
    finite differences of the float64 reference (random directions);
  - conv eval output against F.conv2d with the folded W', b';
  - conv_freeze: the frozen third train step equals eval mode on x3.
"""

import argparse
import copy
import filecmp
import os
import shutil
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import layerfile  # noqa: E402
from deconv_torch import FastDeconv, Delinear, ChannelDeconv, save_layer  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(ROOT, "tests", "data")

# Agreement required between the float32 golden data and the float64
# reference, relative to the largest magnitude of the compared tensor.
TOL = 1e-4
# Finite-difference gradient agreement, relative to |grad|*|direction|.
FD_TOL = 1e-5

# name, kind, constructor kwargs, input shape, steps, seed
CASES = [
    ("conv_g1", "conv2d", dict(in_channels=8, out_channels=6, kernel_size=3, padding=1, block=4),
     (2, 8, 9, 9), 2, 101),
    ("conv_g2", "conv2d", dict(in_channels=8, out_channels=6, kernel_size=3, padding=1, groups=2),
     (3, 8, 12, 12), 2, 102),
    ("conv_1x1", "conv2d", dict(in_channels=8, out_channels=6, kernel_size=1, block=4),
     (3, 8, 7, 7), 2, 103),
    ("conv_s2d2", "conv2d", dict(in_channels=4, out_channels=6, kernel_size=3, stride=2, dilation=2,
                                 padding=2, block=4),
     (4, 4, 11, 11), 2, 104),
    ("conv_gcd", "conv2d", dict(in_channels=6, out_channels=5, kernel_size=3, padding=1, block=4,
                                eps=1e-3, n_iter=7, momentum=0.2),
     (2, 6, 10, 10), 2, 105),
    ("conv_bigblock", "conv2d", dict(in_channels=3, out_channels=4, kernel_size=3, sampling_stride=2),
     (2, 3, 12, 12), 2, 106),
    ("conv_nobias", "conv2d", dict(in_channels=8, out_channels=6, kernel_size=3, padding=1, block=4,
                                   bias=False),
     (2, 8, 9, 9), 2, 107),
    ("conv_freeze", "conv2d", dict(in_channels=4, out_channels=3, kernel_size=3, padding=1, block=2,
                                   freeze=True, freeze_iter=1),
     (2, 4, 9, 9), 3, 108),
    ("linear", "linear", dict(in_features=12, out_features=5, block=4), (16, 12), 2, 201),
    ("linear_gcd", "linear", dict(in_features=10, out_features=5, block=4, eps=1e-4, n_iter=6,
                                  momentum=0.05),
     (16, 10), 2, 202),
    ("linear_nobias", "linear", dict(in_features=12, out_features=5, block=4, bias=False),
     (16, 12), 2, 203),
    ("channel", "channel", dict(block=4), (3, 8, 6, 6), 2, 301),
    ("channel_left", "channel", dict(block=4), (3, 10, 6, 6), 2, 302),
    ("channel_2d", "channel", dict(block=3, n_iter=7), (20, 6), 2, 303),
]

CLASSES = {"conv2d": FastDeconv, "linear": Delinear, "channel": ChannelDeconv}


# ----------------------------------------------------------- generation

def make_input(gen, shape, scale, offset):
    """randn, mixed across channels (so the covariance is not diagonal),
    times a scale plus a per-channel offset (so means are non-zero)."""
    C = shape[1]
    z = torch.randn(shape, generator=gen, dtype=torch.float64)
    mix = torch.eye(C, dtype=torch.float64) + 0.5 * torch.randn(C, C, generator=gen, dtype=torch.float64)
    off = offset + 0.5 * torch.randn(C, generator=gen, dtype=torch.float64)
    x = torch.einsum("dc,nc...->nd...", mix, z) * scale
    x = x + off.view((1, C) + (1,) * (len(shape) - 2))
    return x.float().contiguous()


def npsave(path, t):
    np.save(path, np.ascontiguousarray(t.detach().cpu().numpy().astype(np.float32)))


def grads_of(module):
    out = {}
    for name in ("weight", "bias"):
        p = getattr(module, name, None)
        if p is not None:
            out[name] = p.grad.detach().clone()
    return out


def step_with_grad(module, x, gen, d, tag):
    """One forward with loss = sum(y * dy) and its backward; writes
    y_<tag>, dy, dx and grads files."""
    xr = x.clone().requires_grad_(True)
    y = module(xr)
    dy = torch.randn(y.shape, generator=gen, dtype=torch.float64).float()
    (y * dy).sum().backward()
    suffix = "1" if tag == "train1" else "_eval"
    npsave(os.path.join(d, "y_%s.npy" % tag), y)
    npsave(os.path.join(d, "dy%s.npy" % suffix), dy)
    npsave(os.path.join(d, "dx%s.npy" % suffix), xr.grad)
    g = grads_of(module)
    if g:
        layerfile.write_safetensors(os.path.join(d, "grads%s.safetensors" % suffix),
                                    {k: v for k, v in g.items()},
                                    {"step": tag, "loss": "sum(y * dy)"})
    module.zero_grad(set_to_none=True)
    return y.detach()


def generate_case(out_dir, case):
    name, kind, kw, shape, steps, seed = case
    d = os.path.join(out_dir, name)
    os.makedirs(d, exist_ok=True)
    torch.manual_seed(seed)
    module = CLASSES[kind](**kw)  # PyTorch's default init from the seed
    gen = torch.Generator().manual_seed(seed * 7919)
    scale, offset = 1.5, 0.75
    save_layer(module, os.path.join(d, "layer.safetensors"))

    # train step 1, with gradients
    module.train()
    x1 = make_input(gen, shape, scale, offset)
    npsave(os.path.join(d, "x1.npy"), x1)
    step_with_grad(module, x1, gen, d, "train1")
    save_layer(module, os.path.join(d, "state_train1.safetensors"))

    # train step 2
    x2 = make_input(gen, shape, scale, offset)
    npsave(os.path.join(d, "x2.npy"), x2)
    with torch.no_grad():
        y2 = module(x2)
    npsave(os.path.join(d, "y_train2.npy"), y2)
    save_layer(module, os.path.join(d, "state_train2.safetensors"))

    # eval on x2 from state_train2, with gradients
    module.eval()
    y_eval = step_with_grad(module, x2, gen, d, "eval")
    checks = []
    if kind == "conv2d":
        w, b = module.folded()
        y_direct = F.conv2d(x2, w, b, module.stride, module.padding, module.dilation, module.groups)
        checks.append(("eval vs conv2d(W', b')", rel_err(y_eval.numpy(), y_direct.numpy())))

    # further train steps (conv_freeze: the third one is frozen)
    for s in range(3, steps + 1):
        module.train()
        xs = make_input(gen, shape, scale, offset)
        npsave(os.path.join(d, "x%d.npy" % s), xs)
        frozen = module.freeze and module.counter > module.freeze_iter
        if frozen:
            m_eval = copy.deepcopy(module).eval()
            with torch.no_grad():
                y_e = m_eval(xs)
        with torch.no_grad():
            ys = module(xs)
        if frozen:
            checks.append(("frozen train step %d vs eval" % s, rel_err(ys.numpy(), y_e.numpy())))
        npsave(os.path.join(d, "y_train%d.npy" % s), ys)
        save_layer(module, os.path.join(d, "state_train%d.safetensors" % s))
    return checks


# -------------------------------------------- independent float64 reference

def isqrt_ns(A, n_iter):
    """Coupled Newton-Schulz: Y0 = A/|A|_F, Z0 = I, T = (3I - ZY)/2,
    Y = YT, Z = TZ; D = Z/sqrt(|A|_F)."""
    n = A.shape[0]
    a = np.sqrt((A * A).sum())
    Y = A / a
    Z = np.eye(n)
    I = np.eye(n)
    for _ in range(n_iter):
        T = 0.5 * (3.0 * I - Z @ Y)
        Y = Y @ T
        Z = T @ Z
    return Z / np.sqrt(a)


def mean_cov(X, eps):
    mu = X.mean(0)
    Xc = X - mu
    return mu, Xc.T @ Xc / X.shape[0] + eps * np.eye(X.shape[1])


def md_conv(md):
    kh, kw = layerfile.parse_pair(md["kernel_size"])
    return dict(C=int(md["in_channels"]), Cout=int(md["out_channels"]), kh=kh, kw=kw,
                s=int(md["stride"]), p=int(md["padding"]), dil=int(md["dilation"]),
                G=int(md["groups"]), bias=layerfile.parse_bool(md["bias"]),
                B=layerfile.effective_block(int(md["in_channels"]), int(md["block"]), int(md["groups"])),
                ss=int(md["sampling_stride"]), eps=float(md["eps"]), n_iter=int(md["n_iter"]),
                m=float(md["momentum"]), freeze=layerfile.parse_bool(md["freeze"]),
                freeze_iter=int(md["freeze_iter"]))


def ref_patches(x, a):
    """Step 1: sampled im2col rows, columns c*kh*kw + i*kw + j."""
    N, C, H, W = x.shape
    S, kh, kw, p, dl = a["ss"] * a["s"], a["kh"], a["kw"], a["p"], a["dil"]
    if kh * kw == 1:
        return x.transpose(0, 2, 3, 1).reshape(-1, C)[::S * S]
    xp = np.zeros((N, C, H + 2 * p, W + 2 * p))
    xp[:, :, p:p + H, p:p + W] = x
    Ho = (H + 2 * p - dl * (kh - 1) - 1) // S + 1
    Wo = (W + 2 * p - dl * (kw - 1) - 1) // S + 1
    rows = np.zeros((N, Ho, Wo, C, kh, kw))
    for i in range(kh):
        for j in range(kw):
            rows[:, :, :, :, i, j] = xp[:, :, i * dl:i * dl + (Ho - 1) * S + 1:S,
                                        j * dl:j * dl + (Wo - 1) * S + 1:S].transpose(0, 2, 3, 1)
    return rows.reshape(N * Ho * Wo, C * kh * kw)


def ref_conv(st, md, x, train):
    a = md_conv(md)
    C, Cout, G, B = a["C"], a["Cout"], a["G"], a["B"]
    nf = a["kh"] * a["kw"] * B
    per = C // B
    st = {k: v.copy() for k, v in st.items()}
    counter = int(st.get("counter", 0))
    frozen = a["freeze"] and counter > a["freeze_iter"]
    if train:
        counter += 1
        if a["freeze_iter"] * 10:
            counter %= a["freeze_iter"] * 10
        st["counter"] = np.array(counter)
    rm = st["running_mean"].reshape(-1)
    rd = st["running_deconv"].reshape((G, nf, nf) if G > 1 else (nf, nf))
    # block g of a row holds columns f*(C/B) + g
    idx = np.array([[f * per + g for f in range(nf)] for g in range(per)])
    if train and not frozen:
        X = ref_patches(x, a)
        if G == 1:
            Xb = np.concatenate([X[:, idx[g]] for g in range(per)], axis=0)
            mu, cov = mean_cov(Xb, a["eps"])
            D = isqrt_ns(cov, a["n_iter"])
        else:
            mus, Ds = [], []
            for g in range(G):
                mu_g, cov_g = mean_cov(X[:, g * nf:(g + 1) * nf], a["eps"])
                mus.append(mu_g)
                Ds.append(isqrt_ns(cov_g, a["n_iter"]))
            mu, D = np.concatenate(mus), np.stack(Ds)
        m = a["m"]
        st["running_mean"] = ((1 - m) * rm + m * mu).reshape(st["running_mean"].shape)
        st["running_deconv"] = ((1 - m) * rd + m * D).reshape(st["running_deconv"].shape)
    else:
        mu, D = rm, rd
    # fold (step 7)
    W = st["weight"]
    Wf = W.reshape(Cout, -1).copy()
    Wn = np.zeros_like(Wf)
    b = st["bias"].copy() if a["bias"] else np.zeros(Cout)
    if G == 1:
        for g in range(per):
            Wp = Wf[:, idx[g]] @ D
            Wn[:, idx[g]] = Wp
            b -= Wp @ mu
    else:
        og = Cout // G
        for g in range(G):
            Wp = Wf[g * og:(g + 1) * og] @ D[g]
            Wn[g * og:(g + 1) * og] = Wp
            b[g * og:(g + 1) * og] -= Wp @ mu[g * nf:(g + 1) * nf]
    y = F.conv2d(torch.from_numpy(x), torch.from_numpy(Wn.reshape(W.shape)), torch.from_numpy(b),
                 a["s"], a["p"], a["dil"], G).numpy()
    return y, st


def ref_linear(st, md, x, train):
    Fin, Fout = int(md["in_features"]), int(md["out_features"])
    B = layerfile.effective_block(Fin, int(md["block"]))
    eps, n_iter, m = float(md["eps"]), int(md["n_iter"]), float(md["momentum"])
    bias = layerfile.parse_bool(md["bias"])
    st = {k: v.copy() for k, v in st.items()}
    if train:
        mu, cov = mean_cov(x.reshape(-1, B), eps)
        D = isqrt_ns(cov, n_iter)
        st["running_mean"] = (1 - m) * st["running_mean"] + m * mu
        st["running_deconv"] = (1 - m) * st["running_deconv"] + m * D
    else:
        mu, D = st["running_mean"], st["running_deconv"]
    Wp = st["weight"].reshape(Fout, Fin // B, B) @ D
    y = x @ Wp.reshape(Fout, Fin).T
    # Without a bias the correction still applies, from b = 0 (as the original).
    y = y + ((st["bias"] if bias else 0.0) - (Wp @ mu).sum(1))
    return y, st


def ref_channel(st, md, x, train):
    B, eps = int(md["block"]), float(md["eps"])
    n_iter, m, ss = int(md["n_iter"]), float(md["momentum"]), int(md["sampling_stride"])
    shape = x.shape
    if x.ndim == 2:
        x = x.reshape(x.shape[0], x.shape[1], 1, 1)
    N, C, H, W = x.shape
    HW = H * W
    per = C // B
    c = per * B
    sub = ss * ss if (ss > 1 and H >= ss and W >= ss) else 1
    st = {k: v.copy() for k, v in st.items()}
    first = int(st["num_batches_tracked"]) == 0
    xf = x.reshape(N, C, HW)
    # row r: channels r*per .. r*per+per-1, columns in (k, n, pixel) order
    x1 = np.zeros((B, per * N * HW))
    for r in range(B):
        for k in range(per):
            for n in range(N):
                x1[r, (k * N + n) * HW:(k * N + n + 1) * HW] = xf[n, r * per + k]
    xs = x1[:, ::sub]
    mu1 = xs.mean(1, keepdims=True)
    cov = xs @ xs.T / xs.shape[1] + eps * np.eye(B)  # uncentred
    if first:
        st["running_mean1"] = mu1.reshape(st["running_mean1"].shape)
    if train:
        st["running_mean1"] = (1 - m) * st["running_mean1"] + m * mu1.reshape(st["running_mean1"].shape)
        D = isqrt_ns(cov, n_iter)
        if first:
            st["running_deconv"] = D.copy()
        st["running_deconv"] = (1 - m) * st["running_deconv"] + m * D
    else:
        mu1 = st["running_mean1"].reshape(B, 1)
        D = st["running_deconv"]
    y1 = D @ (x1 - mu1)
    y = np.zeros_like(xf)
    for r in range(B):
        for k in range(per):
            for n in range(N):
                y[n, r * per + k] = y1[r, (k * N + n) * HW:(k * N + n + 1) * HW]
    if c != C:
        rest = xf[:, c:].reshape(N, -1)[:, ::sub]
        mean2 = rest.mean()
        var = ((rest - mean2) ** 2).sum() / (rest.size - 1)
        if first:
            st["running_mean2"] = np.full(st["running_mean2"].shape, mean2)
            st["running_var"] = np.full(st["running_var"].shape, var)
        if train:
            st["running_mean2"] = (1 - m) * st["running_mean2"] + m * mean2
            st["running_var"] = (1 - m) * st["running_var"] + m * var
        else:
            mean2, var = float(st["running_mean2"].reshape(())), float(st["running_var"].reshape(()))
        y[:, c:] = (xf[:, c:] - mean2) / np.sqrt(var + eps)
    if train:
        st["num_batches_tracked"] = np.array(int(st["num_batches_tracked"]) + 1)
    return y.reshape(shape), st


REF = {"conv2d": ref_conv, "linear": ref_linear, "channel": ref_channel}


def rel_err(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return float("inf")
    scale = max(np.abs(b).max(), 1e-30) if b.size else 1.0
    return float(np.abs(a - b).max() / scale) if b.size else 0.0


def expected_layout(md):
    """name -> (shape, numpy dtype) of a layer file: the state_dict shapes
    (README, "Arithmetic", parameter shapes) and the counters."""
    f32, i64 = np.dtype("float32"), np.dtype("int64")
    kind = md["kind"]
    out = {}
    if kind == "conv2d":
        a = md_conv(md)
        nf = a["kh"] * a["kw"] * a["B"]
        out["weight"] = ((a["Cout"], a["C"] // a["G"], a["kh"], a["kw"]), f32)
        if a["bias"]:
            out["bias"] = ((a["Cout"],), f32)
        if a["G"] == 1:
            out["running_mean"] = ((nf,), f32)
            out["running_deconv"] = ((nf, nf), f32)
        else:
            out["running_mean"] = ((a["C"] * a["kh"] * a["kw"],), f32)
            out["running_deconv"] = ((a["G"], nf, nf), f32)
        out["counter"] = ((), i64)
    elif kind == "linear":
        Fin, Fout = int(md["in_features"]), int(md["out_features"])
        B = layerfile.effective_block(Fin, int(md["block"]))
        out["weight"] = ((Fout, Fin), f32)
        if layerfile.parse_bool(md["bias"]):
            out["bias"] = ((Fout,), f32)
        out["running_mean"] = ((B,), f32)
        out["running_deconv"] = ((B, B), f32)
    else:
        B = int(md["block"])
        out["running_mean1"] = ((B, 1), f32)
        out["running_deconv"] = ((B, B), f32)
        out["running_mean2"] = ((1, 1), f32)
        out["running_var"] = ((1, 1), f32)
        out["num_batches_tracked"] = ((), i64)
    return out


def check_layout(path):
    t, md = layerfile.read_safetensors(path)
    exp = expected_layout(md)
    got = {k: (v.shape, v.dtype) for k, v in t.items()}
    assert list(t) == list(exp) and got == exp, "%s: layout %s, expected %s" % (path, got, exp)


def load_state(path):
    t, md = layerfile.read_safetensors(path)
    return {k: v.astype(np.float64) if v.dtype.kind == "f" else v for k, v in t.items()}, md


def check_case(out_dir, case):
    """Compares the written files with the float64 reference; returns a
    list of (what, relative error, tolerance)."""
    name, kind, kw, shape, steps, seed = case
    d = os.path.join(out_dir, name)
    ref = REF[kind]
    res = []

    def ld(f):
        return np.load(os.path.join(d, f)).astype(np.float64)

    for f in sorted(os.listdir(d)):
        if f.startswith(("layer", "state_")):
            check_layout(os.path.join(d, f))
        elif f.startswith("grads"):
            t, _ = layerfile.read_safetensors(os.path.join(d, f))
            exp = expected_layout(layerfile.read_safetensors(os.path.join(d, "layer.safetensors"))[1])
            assert {k: (v.shape, v.dtype) for k, v in t.items()} == \
                {k: exp[k] for k in ("weight", "bias") if k in exp}, "%s/%s: layout" % (d, f)
    st_prev, md = load_state(os.path.join(d, "layer.safetensors"))
    for s in range(1, steps + 1):
        x = ld("x%d.npy" % s)
        y, st = ref(st_prev, md, x, True)
        res.append(("y_train%d" % s, rel_err(ld("y_train%d.npy" % s), y), TOL))
        st_file, md_s = load_state(os.path.join(d, "state_train%d.safetensors" % s))
        assert md_s == md, "metadata changed between steps"
        assert list(st_file) == list(st), "tensor names %s vs %s" % (list(st_file), list(st))
        for k in st:
            if st[k].dtype.kind == "f":
                res.append(("state_train%d.%s" % (s, k), rel_err(st_file[k], st[k].reshape(st_file[k].shape)), TOL))
            else:
                assert int(st_file[k]) == int(st[k]), "%s: %s %d vs %d" % (name, k, int(st_file[k]), int(st[k]))
        st_prev = st_file
        if s == 2:
            y, st_e = ref(st_file, md, x, False)
            res.append(("y_eval", rel_err(ld("y_eval.npy"), y), TOL))
            for k in st_e:  # eval changes nothing
                assert np.array_equal(np.asarray(st_e[k]), np.asarray(st_file[k])), k

    # gradients of train step 1 (and eval) by central finite differences
    rng = np.random.RandomState(seed)
    st0, _ = load_state(os.path.join(d, "layer.safetensors"))
    st2, _ = load_state(os.path.join(d, "state_train2.safetensors"))
    for tag, st_base, x, train, suf in (("train1", st0, ld("x1.npy"), True, "1"),
                                        ("eval", st2, ld("x2.npy"), False, "_eval")):
        dy = ld("dy%s.npy" % suf)
        grads = {"x": ld("dx%s.npy" % suf)}
        gpath = os.path.join(d, "grads%s.safetensors" % suf)
        if os.path.exists(gpath):
            for k, v in layerfile.read_safetensors(gpath)[0].items():
                grads[k] = v.astype(np.float64)
        for what, g in grads.items():
            for _ in range(2):
                v = rng.randn(*g.shape)
                h = 1e-5 * max(1.0, np.abs(x).max() if what == "x" else np.abs(st_base[what]).max())

                def loss(t):
                    if what == "x":
                        return (ref(st_base, md, x + t * v, train)[0] * dy).sum()
                    s2 = dict(st_base)
                    s2[what] = st_base[what] + t * v
                    return (ref(s2, md, x, train)[0] * dy).sum()
                fd = (loss(h) - loss(-h)) / (2 * h)
                ad = (g * v).sum()
                err = abs(fd - ad) / max(np.linalg.norm(g) * np.linalg.norm(v), 1e-30)
                res.append(("d%s/%s" % (what, tag), err, FD_TOL))
    return res


# ------------------------------------------------------------------ main

def file_list(d):
    out = []
    for root, _, files in os.walk(d):
        for f in files:
            out.append(os.path.relpath(os.path.join(root, f), d))
    return sorted(out)


def generate_all(out_dir, cases):
    ok = True
    for case in cases:
        checks = generate_case(out_dir, case)
        res = [(w, e, TOL) for w, e in checks] + check_case(out_dir, case)
        worst = max(res, key=lambda r: r[1] / r[2])
        bad = [r for r in res if not (r[1] <= r[2])]
        print("%-14s %2d checks, worst %-28s %.2e%s" % (case[0], len(res), worst[0], worst[1],
                                                       "" if not bad else "  FAILED"))
        for w, e, t in bad:
            print("    FAILED %s: %.3e > %.1e" % (w, e, t))
        ok = ok and not bad
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default=DEFAULT_OUT, help="output directory (default tests/data)")
    ap.add_argument("--verify", action="store_true",
                    help="regenerate into a temporary directory and compare with --out")
    ap.add_argument("--case", action="append", help="only this case (repeatable)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    cases = [c for c in CASES if not args.case or c[0] in args.case]
    if args.case and len(cases) != len(args.case):
        sys.exit("unknown case in %s; cases: %s" % (args.case, ", ".join(c[0] for c in CASES)))
    if args.verify:
        tmp = tempfile.mkdtemp(prefix="ndcl-golden-")
        try:
            ok = generate_all(tmp, cases)
            for c in cases:
                a, b = os.path.join(tmp, c[0]), os.path.join(args.out, c[0])
                fa, fb = file_list(a), file_list(b) if os.path.isdir(b) else []
                if fa != fb:
                    print("%s: file lists differ: %s" % (c[0], sorted(set(fa) ^ set(fb))))
                    ok = False
                    continue
                for f in fa:
                    if not filecmp.cmp(os.path.join(a, f), os.path.join(b, f), shallow=False):
                        print("%s/%s differs from the regenerated file" % (c[0], f))
                        ok = False
        finally:
            shutil.rmtree(tmp)
        print("verify: %s" % ("identical" if ok else "DIFFERENCES"))
    else:
        ok = generate_all(args.out, cases)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
