"""napari's progress bar for the dock's runs: shown in the activity dock, where its
cancel button stops the run at once (napari's own only stops a loop over it)."""

from __future__ import annotations

from napari.utils import cancelable_progress


class RunProgress(cancelable_progress):
    """A manually updated, cancellable progress bar: ``cancel()`` (the activity dock's
    button) calls ``cancel_callback`` right away."""

    def cancel(self) -> None:
        super().cancel()
        if self.cancel_callback is not None:
            self.cancel_callback()
