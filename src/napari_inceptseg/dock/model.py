"""The segmentation dock's state and logic, free of Qt and napari.

In the style of napari-animation's model beside its widgets: every setting the dock
shows, the presets, the settings kept between sessions, which run is going, the name of
its result and the recipe that reproduces a result live here, in plain Python that tests
drive without a display. The dock (``_widgets/segment.py``) only binds its controls to
a :class:`SegmentDockModel` and shows what it says.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from ..params import SegmentParams, check_field
from ..presets import PRESETS, method_fields, preset_params
from .recipe import as_command, as_python
from .settings import load_settings, save_settings

log = logging.getLogger(__name__)

CURRENT, ALL = "current slice", "all slices"
#: the dock's own settings (besides the engine's), with their defaults
DOCK_DEFAULTS: dict[str, Any] = {
    "preset": "default",
    "device": "auto",
    "seed": -1,
    "preview_every": 10,
    "keep_preview": False,
    "warm_start": True,
    "slices": CURRENT,
}
#: the engine settings the dock shows as controls (device and seed are the dock's own)
ENGINE_FIELDS = tuple(
    f.name for f in dataclasses.fields(SegmentParams) if f.name not in ("device", "seed")
)
#: seeds the seed box takes: -1 draws one
SEED_RANGE = (-1, 2**31 - 1)
PREVIEW_RANGE = (0, 10000)


def default_values() -> dict[str, Any]:
    """Every setting of the dock at the default method's value."""
    params = preset_params("default")
    return {**DOCK_DEFAULTS, **{name: getattr(params, name) for name in ENGINE_FIELDS}}


class SegmentDockModel:
    """The dock's settings and its run, without widgets.

    Parameters
    ----------
    devices : list of str
        The device choices, ``"auto"`` first, then the devices present.
    autosave : bool
        Save the settings to the user's config folder after every change.

    Examples
    --------
    >>> model = SegmentDockModel(["auto", "cpu"], autosave=False)
    >>> model.set("preset", "paper-vanilla")
    >>> model.parameters().max_iter
    1000
    """

    def __init__(self, devices: list[str], autosave: bool = True):
        self.devices = list(devices)
        self.autosave = autosave
        self.values = default_values()
        self.advanced_open = False
        self.run: Any = None
        self._listeners: list[Callable[[str, Any], None]] = []
        self._quiet = False

    # --- settings -----------------------------------------------------------------------

    @staticmethod
    def dock_fields() -> tuple[str, ...]:
        """The names of the dock's own settings (besides the engine's)."""
        return tuple(DOCK_DEFAULTS)

    def subscribe(self, listener: Callable[[str, Any], None]) -> None:
        """Call ``listener(name, value)`` whenever the model changes a setting itself
        (a preset, the defaults, saved settings).
        """
        self._listeners.append(listener)

    def set(self, name: str, value: Any) -> None:
        """A setting changed (by the user); a new preset sets every method setting."""
        if name not in self.values:
            raise KeyError(f"the dock has no setting {name!r}")
        self.values[name] = value
        if name == "preset" and not self._quiet:
            self.apply_preset(value)
        self.save()

    def set_advanced_open(self, value: bool) -> None:
        """Whether the "Advanced settings" section is open (kept between sessions)."""
        self.advanced_open = bool(value)
        self.save()

    def apply_preset(self, name: str | None = None) -> None:
        """Every method setting to the preset's value (device, seed and memory stay)."""
        settings = preset_params(name or self.values["preset"])
        with self._changing():
            for field_name in method_fields():
                self._put(field_name, getattr(settings, field_name))

    def restore_defaults(self) -> None:
        """Every setting back to the default method's, and saved so."""
        with self._changing():
            for name, value in default_values().items():
                self._put(name, value)
            self.advanced_open = False
        self.save()

    def settings(self) -> dict[str, Any]:
        """What is kept between sessions: every setting and the Advanced section's state."""
        return {**self.values, "advanced_open": self.advanced_open}

    def restore(self, saved: Mapping[str, Any]) -> list[str]:
        """Apply saved settings, the preset first; values that are not valid for their
        setting are left at the default and named in the list returned.
        """
        skipped = []
        with self._changing():
            for name in ["preset", *(k for k in saved if k != "preset")]:
                if name not in saved or name not in self.values:
                    continue
                try:
                    self._put(name, self.checked(name, saved[name]))
                    if name == "preset":  # its method settings, then the saved ones
                        self.apply_preset(saved[name])
                except (ValueError, TypeError) as exc:
                    log.warning("dock setting %s=%r not restored: %s", name, saved[name], exc)
                    skipped.append(name)
            self.advanced_open = saved.get("advanced_open", False) is True
        return skipped

    def load(self) -> str | None:
        """Restore the settings saved by the last session; the problem, if any, in words."""
        saved, problem = load_settings()
        self.restore(saved)
        return problem

    def save(self) -> None:
        """Save the settings (unless quiet or ``autosave`` is off)."""
        if self.autosave and not self._quiet:
            save_settings(self.settings())

    def checked(self, name: str, value: Any) -> Any:
        """``value`` if it is valid for setting ``name``; ValueError or TypeError if not."""
        if name in ENGINE_FIELDS:
            return check_field(name, value)
        choices = {"preset": list(PRESETS), "device": self.devices, "slices": [CURRENT, ALL]}
        if name in choices:
            if value not in choices[name]:
                raise ValueError(f"{value!r} is not one of {choices[name]}")
            return value
        if name in ("keep_preview", "warm_start"):
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be true or false")
            return value
        lo, hi = SEED_RANGE if name == "seed" else PREVIEW_RANGE
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise ValueError(f"{name} must be an integer from {lo} to {hi}")
        return value

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """Changes made by the model itself: shown to listeners, saved once at most."""
        quiet, self._quiet = self._quiet, True
        try:
            yield
        finally:
            self._quiet = quiet

    def _put(self, name: str, value: Any) -> None:
        self.values[name] = value
        for listener in self._listeners:
            listener(name, value)

    # --- a run --------------------------------------------------------------------------

    def parameters(self) -> SegmentParams:
        """The engine settings of a run with the dock's values (seed -1: drawn)."""
        seed = self.values["seed"]
        return SegmentParams(
            **{name: self.values[name] for name in ENGINE_FIELDS},
            device=self.values["device"],
            seed=None if seed < 0 else seed,
        )

    def device_name(self, params: SegmentParams) -> str:
        """The device a run on ``params`` plans for ("auto": the first one present)."""
        if params.device != "auto":
            return params.device
        return self.devices[1] if len(self.devices) > 1 else "cpu"

    @property
    def all_slices(self) -> bool:
        """Whether a run segments every slice of a stack (else the one on screen)."""
        return self.values["slices"] == ALL

    @property
    def running(self) -> bool:
        """Whether a run of this dock is going."""
        return self.run is not None

    def begin(self, run: Any) -> bool:
        """``run`` starts, unless one is going already (then False)."""
        if self.run is not None:
            return False
        self.run = run
        return True

    def end(self, run: Any) -> bool:
        """``run`` is over; True if it was this dock's current run."""
        if self.run is not run:
            return False
        self.run = None
        return True

    @staticmethod
    def result_name(image_name: str, params: SegmentParams, guided: bool) -> str:
        """The name of a run's Labels layer: objects, regions (the default method) or clusters."""
        if params.objects:
            return f"{image_name} objects"
        return f"{image_name} {'regions' if params.regions and not guided else 'clusters'}"

    @staticmethod
    def recipe(kind: str, meta: Mapping[str, Any], image_file: str) -> str:
        """The Python call (``kind='python'``) or the command that rebuilds the result
        whose layer metadata is ``meta``; ValueError when the metadata cannot be trusted.
        """
        if kind == "python":
            return as_python(meta)
        return as_command(meta, image=image_file)
