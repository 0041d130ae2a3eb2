#!/usr/bin/python3
"""layerfile.py - source-tree alias of ndcl_torch.layerfile (tools/pytorch),
so that the scripts beside it import it as layerfile."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ndcl_torch.layerfile  # noqa: E402

sys.modules[__name__] = ndcl_torch.layerfile
