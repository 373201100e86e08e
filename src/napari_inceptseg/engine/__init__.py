"""The engine: numpy and torch in, numpy out; no napari, Qt or magicgui. Three levels,
arrows pointing down: ``workflow/`` (a run, from inputs to result) uses ``machine/``
(fitting a run to the machine), which uses ``modeling/`` (the method's networks, loss
and optimiser).

``workflow.segment.segment_iter`` is the one generator every caller drives (the API,
the CLI, the dock). Importing this package does not import torch; it imports
``machine.runtime`` first, which sets the CPU's transparent-huge-page switch, so that
torch (imported when a run starts) allocates large tensors from huge pages.
"""

from .machine import runtime

__all__ = ["runtime"]
