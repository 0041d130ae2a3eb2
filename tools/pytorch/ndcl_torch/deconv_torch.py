"""ndcl_torch.deconv_torch - ndcl's own clean PyTorch implementation of the three
network deconvolution modules of Ye et al. (ICLR 2020): FastDeconv,
Delinear and ChannelDeconv, with the original code's constructor arguments,
defaults, state_dict names and shapes and arithmetic (the README's
"Arithmetic" section),
quirks included. It is the reference the golden data (tools/pytorch/golden.py) is
generated with. Source-tree scripts import it as deconv_torch
(tools/pytorch/deconv_torch.py re-exports it).

Deliberate differences from the original repository's code, all where the
original fails:
  - FastDeconv(bias=False): the mean correction is still applied, with the
    bias starting at 0 (the original computes None - tensor and crashes).
  - ChannelDeconv with C not a multiple of block takes the leftover
    channels with x[:, c:].reshape(N, -1) (same values as the original's
    .view).
  - ChannelDeconv in eval mode before any training batch
    (num_batches_tracked == 0): the means are copied from the batch as in
    the original, and running_deconv is used as it is (the original
    references an unassigned variable and crashes).
  - ChannelDeconv with block > C (no whitened channel): ValueError (the
    original fails on an empty view).
  - FastDeconv with freeze_iter = 0: the counter just counts (the original
    divides by zero).
  - FastDeconv accepts a non-square kernel (kh, kw): nf = kh*kw*B and the
    im2col path is taken when kh*kw > 1 (the original only builds square
    kernels and tests kernel_size[0] > 1). stride must be square.
Kept quirks: the interleaved block view, ChannelDeconv's uncentred
covariance, its first-batch copy of running_mean1/running_mean2/running_var
(also in eval mode), its unbiased variance; Delinear without a bias still
applies the mean correction from b = 0, as the original's main module does.

Also here: save_layer(module, path) / load_layer(path) for ndcl's
safetensors layer files (see layerfile.py).
"""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.modules import conv
from torch.nn.modules.utils import _pair

from . import layerfile


def isqrt_newton_schulz(A, n_iter):
    """Coupled Newton-Schulz inverse square root of one matrix, unrolled so
    autograd differentiates through it (as the original)."""
    dim = A.shape[0]
    normA = A.norm()
    Y = A.div(normA)
    I = torch.eye(dim, dtype=A.dtype, device=A.device)
    Z = torch.eye(dim, dtype=A.dtype, device=A.device)
    for _ in range(n_iter):
        T = 0.5 * (3.0 * I - Z @ Y)
        Y = Y @ T
        Z = T @ Z
    return Z / torch.sqrt(normA)


def isqrt_newton_schulz_batch(A, n_iter):
    """The same for a batch (G, n, n); each matrix uses its own norm."""
    batch, dim, _ = A.shape
    normA = A.view(batch, -1).norm(2, 1).view(batch, 1, 1)
    Y = A.div(normA)
    I = torch.eye(dim, dtype=A.dtype, device=A.device).unsqueeze(0).expand_as(A)
    Z = torch.eye(dim, dtype=A.dtype, device=A.device).unsqueeze(0).expand_as(A)
    for _ in range(n_iter):
        T = 0.5 * (3.0 * I - Z.bmm(Y))
        Y = Y.bmm(T)
        Z = T.bmm(Z)
    return Z / torch.sqrt(normA)


def _clamp_block(channels, block):
    if block > channels:
        return channels
    if channels % block != 0:
        return math.gcd(block, channels)
    return block


class FastDeconv(conv._ConvNd):
    """Deconvolved 2-D convolution (steps 1-8 below). Attributes as the
    original: block (clamped), num_features (nf), sampling_stride (the
    given sampling_stride times stride), counter, freeze, freeze_iter,
    track_running_stats."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
                 groups=1, bias=True, eps=1e-5, n_iter=5, momentum=0.1, block=64,
                 sampling_stride=3, freeze=False, freeze_iter=100):
        self.momentum = momentum
        self.n_iter = n_iter
        self.eps = eps
        self.counter = 0
        self.track_running_stats = True
        super(FastDeconv, self).__init__(
            in_channels, out_channels, _pair(kernel_size), _pair(stride), _pair(padding),
            _pair(dilation), False, _pair(0), groups, bias, padding_mode='zeros')
        if self.stride[0] != self.stride[1]:
            raise ValueError("FastDeconv: stride must be square, got %r" % (self.stride,))
        self.block_arg = block  # as given (recorded in layer files)
        block = _clamp_block(in_channels, block)
        if groups > 1:
            block = in_channels // groups
        self.block = block
        kh, kw = self.kernel_size
        self.num_features = kh * kw * block
        if groups == 1:
            self.register_buffer('running_mean', torch.zeros(self.num_features))
            self.register_buffer('running_deconv', torch.eye(self.num_features))
        else:
            self.register_buffer('running_mean', torch.zeros(kh * kw * in_channels))
            self.register_buffer('running_deconv',
                                 torch.eye(self.num_features).repeat(in_channels // block, 1, 1))
        self.sampling_stride = sampling_stride * self.stride[0]
        self.freeze_iter = freeze_iter
        self.freeze = freeze

    def forward(self, x):
        N, C, H, W = x.shape
        B = self.block
        nf = self.num_features
        # Decided from the counter before this step advances it.
        frozen = self.freeze and (self.counter > self.freeze_iter)
        if self.training and self.track_running_stats:
            self.counter += 1
            period = self.freeze_iter * 10
            if period != 0:
                self.counter %= period

        if self.training and not frozen:
            # 1. im2col with stride S = sampling_stride*stride: rows (n, oy, ox),
            #    columns c*kh*kw + i*kw + j; a 1x1 kernel takes every S^2-th pixel.
            kh, kw = self.kernel_size
            if kh * kw > 1:
                X = F.unfold(x, self.kernel_size, self.dilation, self.padding,
                             self.sampling_stride).transpose(1, 2).contiguous()
            else:
                X = x.permute(0, 2, 3, 1).contiguous().view(-1, C)[::self.sampling_stride ** 2, :]
            if self.groups == 1:
                # 2. Interleaved blocks: block g holds columns f*(C/B) + g.
                X = X.view(-1, nf, C // B).transpose(1, 2).contiguous().view(-1, nf)
            else:
                X = X.view(-1, X.shape[-1])
            # 3. Mean over all rows.
            X_mean = X.mean(0)
            X = X - X_mean.unsqueeze(0)
            # 4-5. Covariance and its inverse square root.
            if self.groups == 1:
                Id = torch.eye(X.shape[1], dtype=X.dtype, device=X.device)
                Cov = torch.addmm(Id, X.t(), X, beta=self.eps, alpha=1. / X.shape[0])
                deconv = isqrt_newton_schulz(Cov, self.n_iter)
            else:
                X = X.view(-1, self.groups, nf).transpose(0, 1)
                Id = torch.eye(nf, dtype=X.dtype, device=X.device).expand(self.groups, nf, nf)
                Cov = torch.baddbmm(Id, X.transpose(1, 2), X, beta=self.eps, alpha=1. / X.shape[1])
                deconv = isqrt_newton_schulz_batch(Cov, self.n_iter)
            # 6. Running statistics (no first-batch copy).
            if self.track_running_stats:
                with torch.no_grad():
                    self.running_mean.mul_(1 - self.momentum)
                    self.running_mean.add_(X_mean.detach() * self.momentum)
                    self.running_deconv.mul_(1 - self.momentum)
                    self.running_deconv.add_(deconv.detach() * self.momentum)
        else:
            X_mean = self.running_mean
            deconv = self.running_deconv

        # 7. Fold D and the mean into the weight and the bias.
        if self.groups == 1:
            w = self.weight.view(-1, nf, C // B).transpose(1, 2).contiguous().view(-1, nf) @ deconv
            corr = (w @ (X_mean.unsqueeze(1))).view(self.weight.shape[0], -1).sum(1)
            b = -corr if self.bias is None else self.bias - corr
            w = w.view(-1, C // B, nf).transpose(1, 2).contiguous()
        else:
            w = self.weight.view(C // B, -1, nf) @ deconv
            corr = (w @ (X_mean.view(-1, nf, 1))).view(self.weight.shape[0])
            b = -corr if self.bias is None else self.bias - corr
        w = w.view(self.weight.shape)
        # 8. One ordinary convolution.
        return F.conv2d(x, w, b, self.stride, self.padding, self.dilation, self.groups)

    def folded(self):
        """(W', b') of evaluation mode: the running statistics folded into
        the weight and bias, as forward() computes them."""
        C = self.in_channels
        B = self.block
        nf = self.num_features
        with torch.no_grad():
            if self.groups == 1:
                w = self.weight.view(-1, nf, C // B).transpose(1, 2).contiguous().view(-1, nf) @ self.running_deconv
                corr = (w @ self.running_mean.unsqueeze(1)).view(self.weight.shape[0], -1).sum(1)
                w = w.view(-1, C // B, nf).transpose(1, 2).contiguous()
            else:
                w = self.weight.view(C // B, -1, nf) @ self.running_deconv
                corr = (w @ self.running_mean.view(-1, nf, 1)).view(self.weight.shape[0])
            b = -corr if self.bias is None else self.bias - corr
            return w.reshape(self.weight.shape).clone(), b.clone()


class Delinear(nn.Module):
    """Deconvolved linear layer: whitens rows of B contiguous
    features."""
    __constants__ = ['bias', 'in_features', 'out_features']

    def __init__(self, in_features, out_features, bias=True, eps=1e-5, n_iter=5, momentum=0.1,
                 block=512):
        super(Delinear, self).__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.weight = nn.Parameter(torch.empty(out_features, in_features))
        if bias:
            self.bias = nn.Parameter(torch.empty(out_features))
        else:
            self.register_parameter('bias', None)
        self.reset_parameters()
        self.block_arg = block  # as given (recorded in layer files)
        self.block = _clamp_block(in_features, block)
        self.momentum = momentum
        self.n_iter = n_iter
        self.eps = eps
        self.register_buffer('running_mean', torch.zeros(self.block))
        self.register_buffer('running_deconv', torch.eye(self.block))

    def reset_parameters(self):
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in)
            nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, input):
        if self.training:
            X = input.reshape(-1, self.block)
            X_mean = X.mean(0)
            X = X - X_mean.unsqueeze(0)
            Id = torch.eye(X.shape[1], dtype=X.dtype, device=X.device)
            Cov = torch.addmm(Id, X.t(), X, beta=self.eps, alpha=1. / X.shape[0])
            deconv = isqrt_newton_schulz(Cov, self.n_iter)
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum)
                self.running_mean.add_(X_mean.detach() * self.momentum)
                self.running_deconv.mul_(1 - self.momentum)
                self.running_deconv.add_(deconv.detach() * self.momentum)
        else:
            X_mean = self.running_mean
            deconv = self.running_deconv

        w = self.weight.view(-1, self.block) @ deconv
        # As the original's main module: without a bias the mean correction
        # still applies, from b = 0.
        corr = (w @ (X_mean.unsqueeze(1))).view(self.weight.shape[0], -1).sum(1)
        b = -corr if self.bias is None else self.bias - corr
        w = w.view(self.weight.shape)
        return F.linear(input, w, b)

    def extra_repr(self):
        return 'in_features={}, out_features={}, bias={}, block={}'.format(
            self.in_features, self.out_features, self.bias is not None, self.block)


class ChannelDeconv(nn.Module):
    """Channel deconvolution: whitens B groups of channels
    (uncentred covariance), normalises the leftover channels."""

    def __init__(self, block, eps=1e-2, n_iter=5, momentum=0.1, sampling_stride=3):
        super(ChannelDeconv, self).__init__()
        self.eps = eps
        self.n_iter = n_iter
        self.momentum = momentum
        self.block = block
        self.register_buffer('running_mean1', torch.zeros(block, 1))
        self.register_buffer('running_deconv', torch.eye(block))
        self.register_buffer('running_mean2', torch.zeros(1, 1))
        self.register_buffer('running_var', torch.ones(1, 1))
        self.register_buffer('num_batches_tracked', torch.tensor(0, dtype=torch.long))
        self.sampling_stride = sampling_stride

    def forward(self, x):
        x_shape = x.shape
        if x.dim() == 2:
            x = x.view(x.shape[0], x.shape[1], 1, 1)
        if x.dim() != 4:
            raise ValueError("ChannelDeconv: input must be (N, C) or (N, C, H, W), got %r"
                             % (tuple(x_shape),))
        N, C, H, W = x.size()
        B = self.block
        c = (C // B) * B
        if c == 0:
            raise ValueError("ChannelDeconv: block %d is larger than the %d channels" % (B, C))
        first = bool(self.num_batches_tracked == 0)
        sample = self.sampling_stride > 1 and H >= self.sampling_stride and W >= self.sampling_stride

        # 1. The first c channels as B rows; statistics on every ss^2-th column.
        if c != C:
            x1 = x[:, :c].permute(1, 0, 2, 3).contiguous().view(B, -1)
        else:
            x1 = x.permute(1, 0, 2, 3).contiguous().view(B, -1)
        x1_s = x1[:, ::self.sampling_stride ** 2] if sample else x1
        mean1 = x1_s.mean(-1, keepdim=True)
        with torch.no_grad():
            if first:
                self.running_mean1.copy_(mean1.detach())
            if self.training:
                self.running_mean1.mul_(1 - self.momentum)
                self.running_mean1.add_(mean1.detach() * self.momentum)
        if not self.training:
            mean1 = self.running_mean1
        x1 = x1 - mean1

        # 2. D = Cov^-1/2 of the uncentred sample (x1_s is taken before centring).
        if self.training:
            cov = x1_s @ x1_s.t() / x1_s.shape[1] + self.eps * torch.eye(B, dtype=x.dtype, device=x.device)
            deconv = isqrt_newton_schulz(cov, self.n_iter)
            with torch.no_grad():
                if first:
                    self.running_deconv.copy_(deconv.detach())
                self.running_deconv.mul_(1 - self.momentum)
                self.running_deconv.add_(deconv.detach() * self.momentum)
        else:
            deconv = self.running_deconv
        x1 = deconv @ x1
        x1 = x1.view(c, N, H, W).permute(1, 0, 2, 3)

        # 3. The leftover channels: one scalar mean and unbiased variance.
        if c != C:
            x_tmp = x[:, c:].reshape(N, -1)
            x_s = x_tmp[:, ::self.sampling_stride ** 2] if sample else x_tmp
            mean2 = x_s.mean()
            var = x_s.var()
            with torch.no_grad():
                if first:
                    self.running_mean2.copy_(mean2.detach())
                    self.running_var.copy_(var.detach())
                if self.training:
                    self.running_mean2.mul_(1 - self.momentum)
                    self.running_mean2.add_(mean2.detach() * self.momentum)
                    self.running_var.mul_(1 - self.momentum)
                    self.running_var.add_(var.detach() * self.momentum)
            if not self.training:
                mean2 = self.running_mean2
                var = self.running_var
            x_tmp = (x[:, c:] - mean2) / (var + self.eps).sqrt()
            x1 = torch.cat([x1, x_tmp], dim=1)

        if self.training:
            self.num_batches_tracked.add_(1)
        return x1.reshape(x_shape)

    def extra_repr(self):
        return 'block={}, eps={}, n_iter={}, momentum={}, sampling_stride={}'.format(
            self.block, self.eps, self.n_iter, self.momentum, self.sampling_stride)


# ------------------------------------------------------------ layer files

def save_layer(module, path):
    """Writes module's layer file; for this file's classes the block is the
    one given to the constructor (attribute block_arg)."""
    layerfile.write_layer(path, module, block=getattr(module, "block_arg", None))


def module_from_metadata(md):
    """A freshly constructed module from layer file metadata."""
    kind = md["kind"]
    if kind == "conv2d":
        return FastDeconv(int(md["in_channels"]), int(md["out_channels"]),
                          layerfile.parse_pair(md["kernel_size"]),
                          stride=layerfile.parse_pair(md["stride"]),
                          padding=layerfile.parse_pair(md["padding"]),
                          dilation=layerfile.parse_pair(md["dilation"]),
                          groups=int(md["groups"]), bias=layerfile.parse_bool(md["bias"]),
                          eps=float(md["eps"]), n_iter=int(md["n_iter"]),
                          momentum=float(md["momentum"]), block=int(md["block"]),
                          sampling_stride=int(md["sampling_stride"]),
                          freeze=layerfile.parse_bool(md["freeze"]),
                          freeze_iter=int(md["freeze_iter"]))
    if kind == "linear":
        return Delinear(int(md["in_features"]), int(md["out_features"]),
                        bias=layerfile.parse_bool(md["bias"]), eps=float(md["eps"]),
                        n_iter=int(md["n_iter"]), momentum=float(md["momentum"]),
                        block=int(md["block"]))
    if kind == "channel":
        return ChannelDeconv(int(md["block"]), eps=float(md["eps"]), n_iter=int(md["n_iter"]),
                             momentum=float(md["momentum"]),
                             sampling_stride=int(md["sampling_stride"]))
    raise ValueError("unknown layer kind %r" % (kind,))


def load_layer(path, dtype=torch.float32):
    """A module built from a layer file with its tensors loaded (a stored
    shape may differ from the module's only by dimensions of size 1)."""
    tensors, md = layerfile.read_safetensors(path)
    m = module_from_metadata(md)
    sd = m.state_dict()
    new = {}
    for name, ref in sd.items():
        if name not in tensors:
            raise ValueError("%s: missing tensor %s" % (path, name))
        t = torch.from_numpy(tensors[name])
        if t.numel() != ref.numel() or [s for s in t.shape if s != 1] != [s for s in ref.shape if s != 1]:
            raise ValueError("%s: tensor %s has shape %s, expected %s"
                             % (path, name, list(t.shape), list(ref.shape)))
        new[name] = t.reshape(ref.shape).to(ref.dtype)
    m.load_state_dict(new)
    if md["kind"] == "conv2d":
        m.counter = int(tensors["counter"]) if "counter" in tensors else 0
    return m.to(dtype)
