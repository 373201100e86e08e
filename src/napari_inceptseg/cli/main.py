"""The command line: ``napari-inceptseg segment | evaluate | demo`` (``python -m
napari_inceptseg``). Bad options end in one line on stderr and exit 2; Ctrl+C and
SIGTERM stop with exit 130, keeping the work already written.
"""

from __future__ import annotations

import argparse
import re
import signal
import sys
import threading
import time
import warnings
from pathlib import Path

from .parser import build_parser, overrides


def cmd_evaluate(args: argparse.Namespace) -> int:
    """``napari-inceptseg evaluate``: score methods on a data set with ground truth."""
    from ..bench.datasets import list_items
    from ..bench.evaluate import run_evaluation
    from ..engine.machine.runtime import resolve_device

    options = overrides(args)
    resolve_device(options.get("device", "auto"))
    if args.limit is not None and args.limit < 1:
        raise ValueError("--limit must be >= 1")
    if args.workers is not None and args.workers < 1:
        raise ValueError("--workers must be >= 1")
    if args.batch < 0:
        raise ValueError("--batch must be >= 0 (0: as many as the device's memory holds)")
    items = list_items(
        args.dataset,
        args.root,
        args.split,
        images=args.images,
        labels=args.labels,
        ignore_index=args.ignore_index,
        instances=args.instances,
    )
    items = items[: args.limit] if args.limit else items
    if not items:
        raise ValueError(
            f"no images found for --dataset {args.dataset} in {args.root or args.images}"
        )
    config = {
        "dataset": args.dataset,
        "root": str(Path(args.root).resolve()) if args.root else None,
        "images": args.images,
        "labels": args.labels,
        "split": args.split,
        "ignore_index": args.ignore_index,
        "instances": args.instances,
        "scale": args.scale,
        "limit": args.limit,
        "methods": list(args.method),
        "params": options,
    }
    t0 = time.perf_counter()
    report = run_evaluation(
        items,
        args.method,
        options,
        args.out,
        config=config,
        scale=args.scale,
        overwrite=args.overwrite,
        workers=args.workers,
        scheduler=args.scheduler,
        batch=args.batch,
        progress=not args.quiet,
    )
    print((Path(args.out) / "summary.md").read_text())
    print(
        f"{report.n_new} new, {report.n_done_before} already done, {report.n_skipped} skipped "
        f"in {time.perf_counter() - t0:.0f} s; results in {Path(args.out).resolve()}"
    )
    return 0


def as_flags(message: str) -> str:
    """A library message in the command line's words: ``overwrite=True`` -> ``--overwrite``,
    ``root=DIR`` -> ``--root DIR``, ``channel_axis=0`` -> ``--channel-axis 0``, ``scale``
    stays as it is (the library names its keyword arguments, the CLI its flags).
    """

    def flag(m: re.Match) -> str:
        name = "--" + m.group(1).replace("_", "-")
        return name if m.group(2) == "True" else f"{name} {m.group(2)}"

    return re.sub(r"\b([a-z][a-z_]*)=(True|DIR|FILE|-?\d+)\b", flag, message)


def _format_warning(message, category, filename, lineno, line=None) -> str:
    """A warning as one line (on stderr), in the command line's words."""
    return f"napari-inceptseg: warning: {as_flags(str(message))}\n"


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """The ``napari-inceptseg`` command; returns its exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    # a SIGTERM (``kill``, a batch system's time limit) stops like Ctrl+C: work already
    # written is kept and the run resumes; only the main thread may set handlers
    in_main = threading.current_thread() is threading.main_thread()
    before = signal.signal(signal.SIGTERM, _interrupt) if in_main else None
    formatted = warnings.formatwarning
    warnings.formatwarning = _format_warning
    try:
        if args.command == "segment":
            from .segment import cmd_segment

            return cmd_segment(args)
        if args.command == "evaluate":
            return cmd_evaluate(args)
        from .demo import cmd_demo

        return cmd_demo(args)
    except ValueError as exc:  # bad options (e.g. an absent device): one line, no traceback
        print(f"napari-inceptseg: error: {as_flags(str(exc))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        from ..engine.workflow.batch import stop_runs_under_way

        stop_runs_under_way()  # none may run on and keep the process from exiting
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.formatwarning = formatted
        if in_main:
            signal.signal(signal.SIGTERM, signal.SIG_DFL if before is None else before)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
