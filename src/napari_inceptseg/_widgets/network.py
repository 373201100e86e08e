"""The dock's network panel: save and load the trained network (each with its own file
dialog), apply it to the image (through the dock) or to a folder of image files."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from pathlib import Path

from magicgui.widgets import Container, PushButton
from napari.utils.notifications import show_error, show_info

from .controls import wrapping_label
from .jobs import Job

SAVE_FILTER = "napari-inceptseg network (*.safetensors)"


class NetworkPanel(Container):
    """Holds the last network (trained here or loaded) and what can be done with it."""

    def __init__(self, viewer, apply_to_layer: Callable[[], None], status: Callable[[str], None]):
        self._viewer = viewer
        self.model = None  # a TrainedModel
        self._apply_to_layer, self._status = apply_to_layer, status
        self._folder_job = None
        self.info = wrapping_label("network: none yet")
        self.save_btn = PushButton(
            text="Save network…",
            tooltip="Write the last network to a .safetensors file you choose.",
        )
        self.load_btn = PushButton(
            text="Load network…",
            tooltip="Read a saved network: then Apply it, or Run with 'start from the last "
            "network'.",
        )
        self.apply_btn = PushButton(
            text="Apply network",
            enabled=False,
            tooltip="Label the current slice / all slices / the image with the network, "
            "without training: the same ids on every slice.",
        )
        self.folder_btn = PushButton(
            text="Apply to folder…",
            enabled=False,
            tooltip="Label every image file of a folder with the network into a new folder "
            "'<folder>-labels' (never overwriting).",
        )
        super().__init__(
            widgets=[
                self.info,
                Container(
                    widgets=[self.save_btn, self.load_btn], layout="horizontal", labels=False
                ),
                Container(
                    widgets=[self.apply_btn, self.folder_btn], layout="horizontal", labels=False
                ),
            ],
            labels=False,
        )
        self.margins = (0, 0, 0, 0)
        self.save_btn.changed.connect(self.save)
        self.load_btn.changed.connect(self.load)
        self.apply_btn.changed.connect(lambda _=None: self._apply_to_layer())
        self.folder_btn.changed.connect(self.apply_to_folder)

    def set_model(self, model, where: str) -> None:
        self.model = model
        self.info.value = f"network: {where} ({model.describe()})"
        self.set_busy(False)

    def set_busy(self, busy: bool) -> None:
        """While a run goes on nothing here starts (the network would change under it)."""
        has = self.model is not None
        self.apply_btn.enabled = self.folder_btn.enabled = (
            has and not busy and self._folder_job is None
        )
        self.load_btn.enabled = not busy

    # --- files --------------------------------------------------------------------

    def save(self, _=None, path: str | None = None) -> None:
        """Save to a file chosen in Qt's save dialog (which asks before replacing a file)."""
        if self.model is None:
            show_info("There is no network to save yet: run a segmentation first.")
            return
        confirmed = True
        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getSaveFileName(
                self.native, "Save network", "network.safetensors", SAVE_FILTER
            )
            if not path:
                return
        target = Path(path)
        # the dialog confirmed another name: never replace this one
        if target.suffix != ".safetensors":
            target, confirmed = target.with_name(target.name + ".safetensors"), False
        try:
            self.model.save(target, overwrite=confirmed and target.exists())
        except (OSError, ValueError) as exc:
            show_error(f"Could not save the network: {exc}")
            return
        self._status(f"network saved to {target}")
        show_info(f"Network saved to {target}")

    def load(self, _=None, path: str | None = None) -> None:
        """Load a network chosen in Qt's open dialog."""
        from ..engine.workflow.saved import load_model

        if path is None:
            from qtpy.QtWidgets import QFileDialog

            path, _ = QFileDialog.getOpenFileName(self.native, "Load network", "", SAVE_FILTER)
            if not path:
                return
        try:
            model = load_model(path)
        except ValueError as exc:
            show_error(f"Could not load the network: {exc}")
            return
        self.set_model(model, f"loaded from {Path(path).name}")
        self._status(f"network loaded from {path}")

    # --- a folder of files ----------------------------------------------------------

    def apply_to_folder(self, _=None, folder: str | None = None) -> None:
        """Label a folder's images in a worker thread, with progress and cancel."""
        if self.model is None or self._folder_job is not None:
            return
        if folder is None:
            from qtpy.QtWidgets import QFileDialog

            folder = QFileDialog.getExistingDirectory(
                self.native, "Apply the network to the images of a folder"
            )
            if not folder:
                return
        from ..engine.workflow.folders import apply_to_folder_iter, new_output_folder

        out = new_output_folder(Path(folder))
        on = {
            "yielded": lambda rec: self._folder_step(self._folder_job.pbar, rec),
            "returned": self._folder_done,
            "errored": lambda exc: show_error(f"Cannot apply the network to {folder}: {exc}"),
            "aborted": lambda: self._status(f"cancelled; files written so far are in {out}"),
            "finished": self._folder_finished,
        }
        self._folder_job = Job(
            self._viewer,
            partial(apply_to_folder_iter, self.model, folder, out),
            desc=f"Applying the network to {Path(folder).name}",
            on=on,
        )
        self.set_busy(False)
        self._status(f"applying the network to {folder} -> {out} ...")
        self._folder_job.start()

    def _folder_step(self, pbar, record) -> None:
        done, total, src = record
        self._status(f"applied to {done}/{total} files ({src.name})")
        pbar.total = total
        pbar.update(done - pbar.n)  # last: the bar may process Qt events

    def _folder_done(self, report) -> None:
        msg = f"{len(report.written)} labels file(s) written to {report.out}"
        if report.failed:
            msg += f"; {len(report.failed)} skipped: " + "; ".join(report.failed[:3])
        self._status(msg)
        show_info(msg)

    def _folder_finished(self) -> None:
        self._folder_job = None
        self.set_busy(False)
