"""The default method's regions, from the network's clusters to a cut (numpy, scipy,
scikit-image and higra; no torch). One level per module, arrows pointing down:

- :mod:`.method`: the pipeline and its block-aware entry point, which a run in memory
  and a Dask block both call; the finishing on a region graph; the hierarchy's cut;
- :mod:`.hierarchy`: the region hierarchy (higra's binary partition tree), cuts, UCM;
- :mod:`.pixels`: superpixel vote, connected pieces, small regions and rims absorbed;
- :mod:`.merges`: greedy merges on a region graph, and the size-weighted grouping;
- :mod:`.graph`: the region graph measured on a label image (:class:`~.graph.RegionStats`).
"""
