#!/usr/bin/python3
"""deconv_torch.py - source-tree alias of ndcl_torch.deconv_torch
(tools/pytorch): ndcl's PyTorch FastDeconv, Delinear and ChannelDeconv, so
that the scripts beside it import them as deconv_torch."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ndcl_torch.deconv_torch  # noqa: E402

sys.modules[__name__] = ndcl_torch.deconv_torch
