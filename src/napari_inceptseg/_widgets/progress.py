"""napari's progress bar for the dock's runs: shown in the activity dock, where its
cancel button stops the run at once (napari's own only stops a loop over it)."""

from __future__ import annotations

from napari.utils import cancelable_progress


def reveal_activity(viewer) -> None:
    """Show napari's activity dock as wide as the canvas, in its bottom right corner, so
    that the cancel buttons of its progress bars are on screen on a small display
    (napari hides it by default, and makes it 520 pixels wide whatever the canvas, so
    that a bar whose text has grown scrolls its cancel button out of view)."""
    dialog = getattr(getattr(viewer.window, "_qt_window", None), "_activity_dialog", None)
    if dialog is None or dialog.parent() is None:
        return
    room = dialog.parent().width() - 16  # as wide as the canvas: a bar's text grows as it runs
    dialog.resize(max(dialog.minimumWidth(), room), dialog.height())
    dialog.move_to_bottom_right()
    if not dialog.isVisible():  # opened for this run: closed again after it (conceal_activity)
        dialog.setProperty("inceptseg_opened", True)
    dialog.show()
    dialog.raise_()


def conceal_activity(viewer) -> None:
    """Hide the activity dock again after a run if :func:`reveal_activity` opened it, so
    that it does not cover the image (left open when the user had opened it)."""
    dialog = getattr(getattr(viewer.window, "_qt_window", None), "_activity_dialog", None)
    if dialog is not None and dialog.property("inceptseg_opened"):
        dialog.setProperty("inceptseg_opened", False)
        dialog.hide()


class RunProgress(cancelable_progress):
    """A manually updated, cancellable progress bar: ``cancel()`` (the activity dock's
    button) calls ``cancel_callback`` right away."""

    def cancel(self) -> None:
        super().cancel()
        if self.cancel_callback is not None:
            self.cancel_callback()
