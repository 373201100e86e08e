"""Where ``segment`` writes image files, checked before any image trains: the output
folder, no output on top of an input, and an existing output replaced only with
``--overwrite`` and only when this program wrote it (its run record beside it says so,
or, for a network file, its own header).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path


def per_image(template: str | None, src: Path, n_images: int, option: str) -> Path | None:
    """The path ``template`` gives for the image ``src`` (``{name}``: its file stem)."""
    if template is None:
        return None
    if n_images > 1 and "{name}" not in template:
        raise ValueError(
            f"{option} with {n_images} images needs {{name}} in the path (the image's file stem)"
        )
    return Path(template.replace("{name}", src.stem))


def check_output_folder(out: Path, images: list[str], targets: list[dict[str, Path]]) -> None:
    """Before the first image trains: ``out`` is (or becomes) a writable folder, no two
    inputs would write the same output files, and no output is one of the inputs.
    ``targets`` are the output paths of each image.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"-o {out} is a file, not a folder: name a folder for the outputs")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise ValueError(
            f"cannot write to the output folder {out} ({exc.strerror or exc}): choose another -o"
        ) from None
    stems: dict[str, str] = {}
    for name in images:
        stem = Path(name).stem
        if stem in stems:
            raise ValueError(
                f"{stems[stem]} and {name} would write the same outputs ({stem}_labels...): "
                "rename one, or segment them into different folders"
            )
        stems[stem] = name
    sources = {Path(name).resolve(): name for name in images}
    for paths in targets:
        for target in paths.values():
            if target.resolve() in sources:
                raise ValueError(
                    f"the output {target} would replace the input {sources[target.resolve()]}: "
                    "segment into another folder (-o)"
                )


def check_target(target: Path, record: Path, overwrite: bool) -> None:
    """Before an image trains: its output ``target`` can be written. An existing one
    needs ``overwrite`` (a FileExistsError otherwise) and must be this program's:
    named in the run record ``record`` beside it, or a network file of its own.
    """
    if target.is_symlink():
        raise ValueError(f"the output {target} is a symbolic link: remove it, or choose another -o")
    if not os.path.lexists(target):
        return
    if not target.is_file():
        raise ValueError(f"the output {target} is not a file: move it, or choose another -o")
    if not overwrite:
        raise FileExistsError(f"output exists ({target}); pass --overwrite to replace it")
    if not (
        _is_model_file(target) if target.suffix == ".safetensors" else _recorded(target, record)
    ):
        raise ValueError(
            f"{target} exists and was not written by napari-inceptseg (no run record of "
            f"this program's names it), so it is never replaced: move it, or choose another -o"
        )


def _recorded(target: Path, record: Path) -> bool:
    """Whether the run record ``record`` (a ``*_run.json`` of this program's) names
    ``target``, or is ``target``; records of older versions name no outputs, and stand
    for the labels, overlay and record of their image.
    """
    try:
        info = json.loads(record.read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(info, dict) or "image" not in info or record.is_symlink():
        return False
    outputs = info.get("outputs")
    if outputs is None:
        stem = record.name.removesuffix("_run.json")
        return target.name.startswith(f"{stem}_") and target.parent == record.parent
    return isinstance(outputs, list) and target.name in outputs


def _is_model_file(path: Path) -> bool:
    from ..engine.workflow.model_file import FORMAT

    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as f:
            return (f.metadata() or {}).get("format") == FORMAT
    except Exception:  # noqa: BLE001 - anything unreadable is not a model file of ours
        return False
