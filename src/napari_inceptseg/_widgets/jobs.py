"""The docks' background work, one way for all of it: an engine generator runs in a
napari ``thread_worker`` with a cancellable progress bar in the activity dock, and its
records and end reach handlers that napari calls in the main thread, where layers may be
touched (stardist-napari's pattern). With ``inline`` the generator is drained in the
calling thread and the same handlers are called in the same order: widget tests need
no waiting.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

from .progress import RunProgress, conceal_activity, reveal_activity

#: what a job reports, in napari's worker signal names
SIGNALS = ("yielded", "returned", "errored", "aborted", "finished")


def _ignore(*_) -> None:
    return None


class Job:
    """One generator's run: ``work()`` makes the generator; ``on`` maps signal names
    (:data:`SIGNALS`) to handlers; the progress bar's cancel button calls ``on_cancel``
    (default: :meth:`cancel`). The bar is closed before the ``finished`` handler runs.
    """

    def __init__(
        self,
        viewer,
        work: Callable[[], Generator],
        *,
        desc: str,
        total: int | None = None,
        on: dict[str, Callable] | None = None,
        on_cancel: Callable[[], None] | None = None,
    ):
        self._viewer, self._work = viewer, work
        self.cancelled = False
        self.worker: Any = None
        self.result: Any = None
        self.pbar = RunProgress(total=total, desc=desc, cancel_callback=on_cancel or self.cancel)
        on = on or {}
        self._handlers = {name: on.get(name, _ignore) for name in SIGNALS}
        self._handlers["returned"] = self._returned
        self._handlers["finished"] = self._finished
        self._on = on

    def start(self, inline: bool = False) -> None:
        """Run the generator in a worker thread, or to its end here with ``inline``."""
        reveal_activity(self._viewer)
        if inline:
            self._drain()
            return
        from napari.qt.threading import create_worker

        self.worker = create_worker(self._work, _start_thread=False, _connect=self._handlers)
        self.worker.start()

    def cancel(self) -> None:
        """Stop after the generator's current step."""
        self.cancelled = True
        if self.worker is not None:
            self.worker.quit()

    def _drain(self) -> None:
        """The worker's signals, in the calling thread."""
        handlers = self._handlers
        try:
            gen = self._work()
            while True:
                if self.cancelled:
                    gen.close()
                    handlers["aborted"]()
                    break
                try:
                    record = next(gen)
                except StopIteration as stop:
                    handlers["returned"](stop.value)
                    break
                handlers["yielded"](record)
        except Exception as exc:  # noqa: BLE001 - as the worker: reported by the errored handler
            handlers["errored"](exc)
        handlers["finished"]()

    def _returned(self, value) -> None:
        self.result = value
        self._on.get("returned", _ignore)(value)

    def _finished(self) -> None:
        self.pbar.close()
        conceal_activity(self._viewer)
        self._on.get("finished", _ignore)()
