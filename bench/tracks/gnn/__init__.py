"""The GNN track: graph networks under structure, feature and point-cloud attacks, with graph defenses attacked adaptively."""

import warnings

# torch_geometric scripts a few helpers at import time; torch 2.14 warns about every one, on every import
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)
warnings.filterwarnings("ignore", message=r"'torch_geometric\.contrib' contains experimental code", category=UserWarning)
