"""The command line: ``napari-inceptseg segment | evaluate | demo`` (``main.py``)."""
