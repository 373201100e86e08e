"""The segmentation dock's controls, built apart from its logic: magicgui widgets with
their labels and tooltips. The dock (``segment.py``) binds them to its model."""

from __future__ import annotations

from collections.abc import Callable

from magicgui.widgets import CheckBox, ComboBox, PushButton, SpinBox

from ..dock.model import ALL, CURRENT, DOCK_DEFAULTS, PREVIEW_RANGE, SEED_RANGE
from ..params import SegmentParams
from ..presets import PRESETS
from .controls import Section


def choosers(choices: dict[str, Callable]) -> dict:
    """What a run reads: the image, the preset, the channel axis, the pyramid level, the
    slices and the scribbles (``choices`` gives the callables that list the layers)."""
    return {
        "image": ComboBox(
            label="image",
            choices=choices["image"],
            tooltip="The image layer to segment (follows the selected layer).",
        ),
        "preset": ComboBox(
            label="preset",
            choices=list(PRESETS),
            value="default",
            tooltip=(
                "default: a short training on a downscaled copy, then connected regions "
                "(seconds on a CPU). paper-vanilla / paper-inception: the papers' exact "
                "settings (1000 iterations at full resolution, raw clusters). Choosing one "
                "sets every method setting under Advanced."
            ),
        ),
        "channel_axis": ComboBox(
            label="channel axis",
            choices=choices["channel_axis"],
            tooltip="Axis holding the channels of a multichannel (non-RGB) image, e.g. 0 for "
            "(C, Y, X). RGB layers need none.",
        ),
        "level": ComboBox(
            label="pyramid level",
            choices=choices["level"],
            tooltip="For a multiscale layer (e.g. OME-Zarr): the level to segment. auto: the "
            "largest (finest) level that fits the memory plan; the result carries that "
            "level's scale.",
        ),
        "slices": ComboBox(
            label="slices",
            choices=[CURRENT, ALL],
            value=CURRENT,
            tooltip="For images with Z, T or other leading axes: segment the slice on screen "
            "(a result of that slice's size, placed there), or every slice into one Labels layer.",
        ),
        "scribbles": ComboBox(
            label="scribbles",
            choices=choices["scribbles"],
            tooltip="Optional Labels layer of the image's size with a few painted strokes "
            "(ids 1, 2, ...; 0 = unpainted): each id becomes one cluster that keeps the id "
            "(and colour) in the result.",
        ),
    }


def run_options(devices: list[str]) -> dict:
    """How a run goes: device, seed, preview rate, warm start, what a cancelled run keeps
    and whether it starts from the last network."""
    return {
        "device": ComboBox(
            label="device",
            choices=devices,
            value=DOCK_DEFAULTS["device"],
            tooltip=SegmentParams.__dataclass_fields__["device"].metadata["help"],
        ),
        "seed": SpinBox(
            label="seed",
            min=SEED_RANGE[0],
            max=SEED_RANGE[1],
            value=DOCK_DEFAULTS["seed"],
            tooltip="Seed of the initial weights; -1 draws one (recorded in the layer "
            "metadata). The same seed gives the same result on the CPU.",
        ),
        "preview_every": SpinBox(
            label="preview every",
            min=PREVIEW_RANGE[0],
            max=PREVIEW_RANGE[1],
            value=DOCK_DEFAULTS["preview_every"],
            tooltip="Update the output layer every N iterations while the run goes on (0: "
            "only at the end).",
        ),
        "warm_start": CheckBox(
            text="warm start from the previous slice",
            value=True,
            tooltip="All slices: start each slice from the network trained on the previous "
            "one, so that cluster ids stay consistent along the stack (and later slices "
            "converge faster).",
        ),
        "keep_preview": CheckBox(
            text="keep last preview if cancelled or failed",
            value=False,
            tooltip="Off: a cancelled or failed run removes its layer, leaving the viewer as "
            "it was.",
        ),
        "reuse": CheckBox(
            text="start from the last network",
            value=False,
            enabled=False,
            tooltip="Train starting from the network of the last run (or the loaded file), "
            "e.g. after adding scribbles: refining is fast. Its architecture, channels and "
            "depth are used.",
        ),
    }


def buttons() -> dict:
    """Run, Cancel, Restore defaults and the two recipe buttons."""
    return {
        "run_btn": PushButton(
            text="Run",
            tooltip="Segment the image with these settings (the result becomes a new Labels "
            "layer).",
        ),
        "cancel_btn": PushButton(
            text="Cancel",
            enabled=False,
            tooltip="Stop the run after the current iteration or tile (also from napari's "
            "activity dock).",
        ),
        "defaults_btn": PushButton(
            text="Restore defaults",
            tooltip="Every setting back to the default method's (the dock remembers your "
            "settings between sessions).",
        ),
        "python_btn": PushButton(
            text="Copy as Python",
            tooltip="Copy the segment(...) call that reproduces the selected result layer "
            "(seed included).",
        ),
        "command_btn": PushButton(
            text="Copy as command",
            tooltip="Copy the napari-inceptseg segment command that reproduces the selected "
            "result layer.",
        ),
    }


def axis_choices(layer) -> list:
    """The channel axis choices of an image layer: none, or one of its axes (not RGB)."""
    if layer is None or layer.rgb:
        return [("none", None)]
    return [("none", None)] + [(str(i), i) for i in range(layer.ndim)]


def level_choices(layer) -> list:
    """The pyramid level choices of an image layer: auto, or one of its levels."""
    if layer is None or not layer.multiscale:
        return [("auto", None)]
    return [("auto", None)] + [
        (f"{i}: {' x '.join(map(str, d.shape))}", i) for i, d in enumerate(layer.data)
    ]


def sections(advanced: list, network, whole, objects) -> dict:
    """The dock's folding sections: Advanced settings, Objects, Network, Whole image."""
    return {
        "advanced": Section(
            "Advanced settings",
            advanced,
            tooltip="Every engine setting, the device, scribbles and what a cancelled run keeps.",
        ),
        "objects_section": Section(
            "Objects: split clusters into objects",
            [objects],
            tooltip="Turn a result into countable objects (nuclei, cells).",
        ),
        "network_section": Section("Network: save, load, apply", [network]),
        "whole_section": Section(
            "Whole image: OME-Zarr on a Dask cluster",
            [whole],
            tooltip=(
                "For layers opened from OME-Zarr or zarr: segment every pixel, block by "
                "block, on a cluster or this machine, into an OME-Zarr label image."
            ),
        ),
    }
