"""The segmentation dock's settings between napari sessions: one small JSON file in the
user's config folder (``NAPARI_INCEPTSEG_CONFIG_DIR`` overrides it, e.g. in tests).
Free of Qt and napari: a file that cannot be read gives no settings and the reason, which
the dock shows.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from ..io import atomic_write

log = logging.getLogger(__name__)

FILE_NAME = "dock-settings.json"


def settings_path() -> Path:
    """The settings file: in ``NAPARI_INCEPTSEG_CONFIG_DIR``, else the user's config folder."""
    folder = os.environ.get("NAPARI_INCEPTSEG_CONFIG_DIR")
    if not folder:
        from platformdirs import user_config_dir

        folder = user_config_dir("napari-inceptseg", appauthor=False)
    return Path(folder) / FILE_NAME


def load_settings() -> tuple[dict[str, Any], str | None]:
    """``(settings, problem)``: the saved settings ({} when there are none), or {} and a
    sentence saying why they could not be read (an unreadable folder or file, broken or
    absurdly nested JSON, not a mapping).
    """
    path = settings_path()
    try:
        if not path.is_file():
            return {}, None
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(
                f"expected a mapping of setting names to values, found {type(data).__name__}"
            )
    except (OSError, ValueError, RecursionError) as exc:
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        log.warning("ignoring the saved dock settings in %s: %s", path, why)
        return {}, (
            f"napari-inceptseg: the saved dock settings in {path} could not be read ({why}); "
            "the dock starts with the defaults"
        )
    return data, None


def save_settings(values: dict[str, Any]) -> None:
    """Write the settings (a failure is logged: the dock works without them)."""
    path = settings_path()
    text = json.dumps(values, indent=1, sort_keys=True)
    try:
        atomic_write(path, lambda tmp: Path(tmp).write_text(text), overwrite=True)
    except OSError as exc:
        log.warning("could not save the dock settings to %s: %s", path, exc)
