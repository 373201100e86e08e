"""The method itself: the networks, the clustering and continuity loss, the hand-written
backward pass of the memory-lean step, and the optimiser (torch).
"""
