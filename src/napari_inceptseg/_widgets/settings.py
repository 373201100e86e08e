"""The dock's settings between napari sessions: one small JSON file in the user's
config folder (``NAPARI_INCEPTSEG_CONFIG_DIR`` overrides it, e.g. in tests)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Dict, Iterator

log = logging.getLogger(__name__)

FILE_NAME = "dock-settings.json"


def settings_path() -> Path:
    folder = os.environ.get("NAPARI_INCEPTSEG_CONFIG_DIR")
    if not folder:
        from platformdirs import user_config_dir

        folder = user_config_dir("napari-inceptseg", appauthor=False)
    return Path(folder) / FILE_NAME


def load_settings() -> Dict[str, Any]:
    """The saved settings, or {} when there are none; when they cannot be read (an
    unreadable folder or file, broken or absurdly nested JSON, not a mapping) the dock
    starts from the defaults and a napari notification says why."""
    path = settings_path()
    try:
        if not path.is_file():
            return {}
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError(f"expected a mapping of setting names to values, found {type(data).__name__}")
    except (OSError, ValueError, RecursionError) as exc:
        _ignored(path, exc)
        return {}
    return data


def _ignored(path: Path, exc: BaseException) -> None:
    from napari.utils.notifications import show_warning

    why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
    log.warning("ignoring the saved dock settings in %s: %s", path, why)
    show_warning(f"napari-inceptseg: the saved dock settings in {path} could not be read ({why}); "
                 "the dock starts with the defaults")


def save_settings(values: Dict[str, Any]) -> None:
    """Write the settings (a failure is logged: the dock works without them)."""
    path = settings_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(values, indent=1, sort_keys=True))
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not save the dock settings to %s: %s", path, exc)


class KeptSettings:
    """The dock's widgets whose values are kept between sessions (by name), and one
    folding section (``advanced_open``)."""

    def __init__(self, widgets: Dict[str, Any], section):
        self.widgets, self.section = widgets, section
        self.quiet = False  # while restoring: the changes are not saved one by one

    @contextlib.contextmanager
    def quietly(self) -> Iterator[None]:
        self.quiet = True
        try:
            yield
        finally:
            self.quiet = False

    def values(self) -> Dict[str, Any]:
        return {**{name: w.value for name, w in self.widgets.items()}, "advanced_open": self.section.is_open}

    def save(self) -> None:
        save_settings(self.values())

    def restore(self, saved: Dict[str, Any]) -> None:
        """Apply saved values: the preset first, then each value it may have changed."""
        with self.quietly():
            for name in ["preset", *(k for k in saved if k != "preset")]:
                if name in saved and name in self.widgets:
                    try:
                        self.widgets[name].value = saved[name]
                    except (ValueError, TypeError, KeyError, RecursionError) as exc:  # e.g. an absent device
                        log.warning("dock setting %s=%r not restored: %s", name, saved[name], exc)
            self.section.set_open(bool(saved.get("advanced_open", False)))
