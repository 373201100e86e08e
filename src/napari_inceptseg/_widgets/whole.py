"""The dock's "Whole image" panel: an OME-Zarr (or zarr) layer segmented whole on a Dask
cluster, or on a local one, into an OME-Zarr label image that opens lazily as a
multiscale Labels layer (:mod:`napari_inceptseg.distributed`). The current-slice path of
the dock stays for quick looks."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from magicgui.widgets import Container, LineEdit, PushButton, SpinBox
from napari.utils.notifications import show_error, show_info

from .controls import wrapping_label
from .jobs import Job


def zarr_source(layer) -> Path | None:
    """The zarr store a layer was opened from, or None (in memory, or another format)."""
    from ..cli.segment import is_zarr

    path = getattr(getattr(layer, "source", None), "path", None)
    if not path:
        return None
    path = Path(str(path))
    for candidate in (path, *path.parents[:2]):  # (a level of a pyramid: its group is above)
        if is_zarr(candidate) and (candidate.suffix == ".zarr" or ".zarr" in candidate.name):
            return candidate
    return path if is_zarr(path) else None


def default_output(source: Path) -> Path:
    """Next to the source: ``<name>.inceptseg.ome.zarr``, numbered when taken."""
    stem = source.name[: -len(".ome.zarr")] if source.name.endswith(".ome.zarr") else source.stem
    out = source.with_name(f"{stem}.inceptseg.ome.zarr")
    k = 1
    while out.exists():
        out, k = source.with_name(f"{stem}.inceptseg-{k}.ome.zarr"), k + 1
    return out


class WholeImagePanel(Container):
    """Segment the selected zarr-backed layer whole; ``params()`` gives the dock's settings."""

    def __init__(self, viewer, params: Callable[[], object], status: Callable[[str], None]):
        self._viewer, self._params, self._status = viewer, params, status
        self._job = None
        self.scheduler = LineEdit(
            label="scheduler",
            value="",
            tooltip=(
                "A running Dask cluster's scheduler address (tcp://HOST:8786); empty: a "
                "local cluster on this machine."
            ),
        )
        self.output = LineEdit(
            label="output",
            value="",
            tooltip=(
                "Where the OME-Zarr label image goes; empty: next to the source, "
                "<name>.inceptseg.ome.zarr."
            ),
        )
        self.block = SpinBox(
            label="block (px)",
            min=64,
            max=16384,
            step=256,
            value=1024,
            tooltip=("Block side: a worker's memory grows with it, not with the image."),
        )
        self.info = wrapping_label("select a layer opened from an OME-Zarr or zarr store")
        self.run_btn = PushButton(
            text="Segment whole image",
            enabled=False,
            tooltip=(
                "Segment every pixel of the layer's source on the cluster; progress and "
                "cancel in the activity dock."
            ),
        )
        super().__init__(widgets=[self.info, self.scheduler, self.output, self.block, self.run_btn])
        self.margins = (0, 0, 0, 0)
        self.run_btn.changed.connect(self.run)

    def follow(self, layer) -> None:
        """Offer the panel for ``layer`` when it comes from a zarr store."""
        self._source = zarr_source(layer) if layer is not None else None
        self.run_btn.enabled = self._source is not None and self._job is None
        self.info.value = (
            f"source: {self._source}"
            if self._source is not None
            else "select a layer opened from an OME-Zarr or zarr store"
        )

    def run(self, _=None) -> None:
        """Segment the source whole, as a :class:`~.jobs.Job` (progress and cancel in the
        activity dock); the result opens as a lazy multiscale Labels layer.
        """
        from ..distributed.run import segment_zarr_iter

        if getattr(self, "_source", None) is None or self._job is not None:
            return
        source = self._source
        out = Path(self.output.value) if self.output.value.strip() else default_output(source)
        params = {k: v for k, v in self._params().to_dict().items() if k != "device" or v != "auto"}
        work = partial(
            segment_zarr_iter,
            source,
            out,
            scheduler=self.scheduler.value.strip() or None,
            block=self.block.value,
            **params,
        )
        on = {
            "yielded": lambda p: self._step(self._job.pbar, p),
            "returned": lambda path: self._opened(source, path),
            "errored": lambda exc: show_error(f"Cannot segment {source.name}: {exc}"),
            "aborted": lambda: self._status(f"cancelled; rerun to resume into {out}"),
            "finished": self._finished,
        }
        self._job = Job(self._viewer, work, desc=f"Segmenting {source.name} whole", on=on)
        self.run_btn.enabled = False
        self._status(f"segmenting {source} whole -> {out} ...")
        self._job.start()

    def _step(self, pbar, p) -> None:
        self._status(f"whole image: {p.stage} {p.done}/{p.total}")
        pbar.total = p.total
        pbar.update(p.done - pbar.n)

    def _opened(self, source: Path, out: Path):
        """The result as a lazy multiscale Labels layer (each level read as it is shown)."""
        import dask.array as da

        from ..distributed.ngff import open_image

        levels = [da.from_zarr(lv) for lv in open_image(out).levels]
        layer = self._viewer.add_labels(levels, multiscale=True, name=f"{out.name}")
        msg = f"{source.name}: whole-image labels in {out}"
        self._status(msg)
        show_info(msg)
        return layer

    def _finished(self) -> None:
        self._job = None
        self.run_btn.enabled = getattr(self, "_source", None) is not None
