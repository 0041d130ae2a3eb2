#!/usr/bin/python3
"""export_pytorch.py - ndcl-export-pytorch run from the source tree: the
exporter itself is ndcl_torch.cli (tools/pytorch/ndcl_torch/cli.py; see its
--help). Installed, bin/ndcl-export-pytorch links to the package's cli.py.

  /usr/bin/python3 tools/pytorch/export_pytorch.py MODEL [OUTDIR] [options]
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from ndcl_torch import cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli.main())
