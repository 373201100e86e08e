"""The engine: numpy and torch in, numpy out; no napari, Qt or magicgui.

``loop.segment_iter`` is the one generator every caller drives (the API, the CLI,
the dock). Importing this package does not import torch; it imports ``runtime``
first, which sets the CPU's transparent-huge-page switch, so that torch (imported
when a run starts) allocates large tensors from huge pages.
"""

from . import runtime

__all__ = ["runtime"]
