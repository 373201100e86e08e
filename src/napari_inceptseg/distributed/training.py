"""The network of a whole-image run, trained once on a worker as a run in memory trains
it (torch is imported inside the functions):

1. the plane's intensity ranges: 0..255 for 8 bits, as in memory; otherwise the
   percentiles of windows spread over it (the whole plane when it is small), where a
   run in memory takes those of every pixel;
2. the training copy is the plane in the network's input space (normalised, in its
   colour space) averaged down to the training size, a group of rows at a time: the
   copy a run in memory makes with ``interpolate(..., mode="area")``, to the bit;
3. the engine trains on it (:func:`~napari_inceptseg.engine.workflow.segment.train_network`).

BatchNorm's statistics are then measured over the whole plane (:mod:`.calibration`).
"""

from __future__ import annotations

import math

import numpy as np

from ..engine.machine.plan import training_size
from ..engine.workflow.saved import TrainedModel
from ..engine.workflow.segment import train_network as train
from ..image import is_rgb, prepare, to_colour_space
from .blocks import read_window, refusing
from .grid import Grid
from .ngff import open_image

#: at most this many pixels of windows spread over a plane set its intensity ranges
#: (other than 8 bits); a smaller plane is read whole
SAMPLE_PIXELS = 1_048_576
#: the side of each window
SAMPLE_SIDE = 256
#: the training copy is made from groups of the plane's rows of about this many pixels
GROUP_PIXELS = 4_194_304


@refusing
def train_network(path: str, plane: tuple[int, ...], params, out: str, *, threads: int) -> str:
    """Train the method's network on one plane of the image at ``path`` (a
    :class:`~napari_inceptseg.params.SegmentParams` run) on ``threads`` threads, and save
    it to ``out``. The training's sums are taken in an order that depends on the number
    of threads, and the training magnifies the difference, so it runs on as many as a
    run in memory in the calling process would.
    """
    import torch

    image = open_image(path)
    grid = Grid.of(image.shape[image.axes.index(a)] for a in "yx")
    sample = [read_window(image, plane, *span) for span in sample_windows(grid.full)]
    ranges = prepare(_side_by_side(sample), image.channel_axis)[1]
    copy = training_copy(image, plane, ranges, params)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = train(copy, grid.full, ranges, params)
    finally:
        torch.set_num_threads(before)
    state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    labels = np.arange(1, params.n_channels + 1, dtype=np.int32)
    TrainedModel(params, len(ranges), state, ranges, labels).save(out, overwrite=True)
    return out


def sample_windows(yx: tuple[int, int]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """``(y, x)`` ranges of the windows spread evenly over a plane of shape ``yx``."""
    h, w = yx
    if h * w <= SAMPLE_PIXELS:
        return [((0, h), (0, w))]
    side_y, side_x = min(SAMPLE_SIDE, h), min(SAMPLE_SIDE, w)
    k = math.isqrt(SAMPLE_PIXELS // (side_y * side_x))
    ys = np.linspace(0, h - side_y, k).round().astype(int)
    xs = np.linspace(0, w - side_x, k).round().astype(int)
    return [((y, y + side_y), (x, x + side_x)) for y in np.unique(ys) for x in np.unique(xs)]


def _side_by_side(windows: list[np.ndarray]) -> np.ndarray:
    """The windows' pixels in one image of 8 rows (the few that do not fill a column
    left out), for measuring their intensity ranges together.
    """
    if len(windows) == 1:
        return windows[0]
    flat = np.concatenate([w.reshape(-1, *w.shape[2:]) for w in windows])
    n = flat.shape[0] // 8 * 8
    return flat[:n].reshape(8, n // 8, *flat.shape[1:])


def _net_input(pixels: np.ndarray, channel_axis, ranges, params) -> np.ndarray:
    """``pixels`` (a window, channels last) as the network's input ``(C, Y, X)``."""
    data, _ = prepare(pixels, channel_axis, 2, ranges)
    rgb = is_rgb(pixels.shape, channel_axis, 2)
    return np.ascontiguousarray(to_colour_space(data, params.color_space, rgb), np.float32)


def training_copy(image, plane: tuple[int, ...], ranges, params) -> np.ndarray:
    """The plane in the network's input space, averaged down to the training size
    (``(C, *size)``) by torch's ``interpolate(mode="area")``, row by row of the copy: each
    row's pixels are the average of the same rows of the plane, summed in the same order,
    as in a run in memory, without holding the plane (rows read a group at a time).
    """
    import torch

    h, w = (image.shape[image.axes.index(a)] for a in "yx")
    size = training_size((h, w), params.train_pixels)
    spans = [((i * h) // size[0], -(-(i + 1) * h // size[0])) for i in range(size[0])]
    rows = []
    for group in _row_groups(spans, max(1, GROUP_PIXELS // w)):
        lo, hi = group[0][0], group[-1][1]
        pixels = read_window(image, plane, (lo, hi), (0, w))
        x = torch.from_numpy(_net_input(pixels, image.channel_axis, ranges, params))[None]
        for r0, r1 in group:
            band = x[:, :, r0 - lo : r1 - lo]
            rows.append(torch.nn.functional.adaptive_avg_pool2d(band, (1, size[1]))[0, :, 0])
    return torch.stack(rows, 1).numpy()


def _row_groups(spans, most: int):
    """The copy's rows' spans of the plane, in groups whose rows together span at most
    ``most`` rows of the plane (or one copy row's span, when that is more).
    """
    group = [spans[0]]
    for span in spans[1:]:
        if span[1] - group[0][0] > most:
            yield group
            group = []
        group.append(span)
    yield group
