"""The docks' pure models, free of Qt and napari (the widgets in ``_widgets/`` stay thin):
the segmentation dock's state and decisions (:mod:`.model`), its settings between
sessions (:mod:`.settings`), a result's recipe as a script or a command (:mod:`.recipe`),
and the Detail slider's recut of a labels layer (:mod:`.detail`).
"""
