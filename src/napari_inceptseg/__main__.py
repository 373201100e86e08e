"""``python -m napari_inceptseg``: the ``napari-inceptseg`` command."""

import sys

from .cli.main import main

sys.exit(main())
