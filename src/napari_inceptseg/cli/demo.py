"""``napari-inceptseg demo``: segment the bundled samples, print their scores, and open
napari with the plugin when there is a display.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from .segment import run_one


def _has_display() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def cmd_demo(args: argparse.Namespace) -> int:
    """``napari-inceptseg demo``: segment the bundled samples, open napari if it can."""
    from skimage.transform import resize

    from ..engine.machine.runtime import resolve_device
    from ..io import colour_overlay, write_labels, write_png
    from ..sample_data import natural_image, synthetic_regions
    from ..scoring.metrics import score

    resolve_device(args.device)
    run_dir = Path(args.out) / time.strftime("run-%Y%m%d-%H%M%S")
    k = 1
    while run_dir.exists():
        k += 1
        run_dir = Path(args.out) / time.strftime(f"run-%Y%m%d-%H%M%S-{k}")
    image, gt = synthetic_regions()
    photo = (resize(natural_image(), (192, 192), anti_aliasing=True) * 255).astype("uint8")
    from ..presets import preset_params

    extra = {} if args.max_iter is None else {"max_iter": args.max_iter}
    base = preset_params(args.preset, device=args.device, seed=args.seed, **extra)
    results = {}
    for key, img in (("synthetic", image), ("astronaut", photo)):
        res = run_one(img, base, None, key, False)
        results[key] = res
        write_labels(run_dir / f"{key}_labels.png", res.labels)
        write_png(run_dir / f"{key}_overlay.png", colour_overlay(img, res.labels))
        kind = "regions" if res.regions else "clusters"
        print(
            f"{key}: {res.n_labels} {kind}, {res.n_iter} iterations, {res.seconds:.1f} s on "
            f"{res.device}"
        )
    one = score(results["synthetic"].labels, gt)
    many = score(results["synthetic"].labels, gt, matching="majority")
    print("\nScores of the synthetic sample against its ground truth:")
    print(f"  pixel accuracy, one-to-one (Hungarian): {one['accuracy']:.3f}")
    print(f"  pixel accuracy, many-to-one (majority): {many['accuracy']:.3f}")
    print(f"  mIoU (Hungarian):                       {one['miou']:.3f}")
    print(f"  NMI:                                    {one['nmi']:.3f}")
    print(f"  homogeneity:                            {one['homogeneity']:.3f}")
    print(f"  kim mIoU (best region per segment):     {one['kim_miou']:.3f}")
    _nuclei(run_dir)
    print(f"\nOutputs written to {run_dir.resolve()}")

    if args.headless or not _has_display():
        if not args.headless:
            print("(no display found: not opening napari)")
        return 0
    return _open_viewer(image, gt, photo, results)


def _nuclei(run_dir: Path) -> None:
    """The nuclei sample as objects on a background: labels, overlay, measurements and
    the count against its ground truth.
    """
    from ..engine.workflow.segment import segment
    from ..io import colour_overlay, write_labels, write_png
    from ..objects.features import object_features, write_features_csv
    from ..sample_data import nuclei_image
    from ..scoring.objects import dsb_scores

    image, truth = nuclei_image()
    res = segment(image, objects=True)
    write_labels(run_dir / "nuclei_objects.png", res.labels)
    write_png(run_dir / "nuclei_overlay.png", colour_overlay(image, res.labels))
    write_features_csv(object_features(res.labels, image), run_dir / "nuclei_objects.csv")
    s = dsb_scores(res.labels, truth)
    print(
        f"\nnuclei (objects=True): {s['n_predicted']} objects for {s['n_objects']} nuclei in "
        f"{res.seconds:.2f} s; DSB2018 mAP {s['map']:.3f}, F1 at IoU 0.5 {s['f1_50']:.3f}"
    )


def _open_viewer(image, gt, photo, results) -> int:
    import napari

    viewer = napari.Viewer(title="napari-inceptseg demo")
    kind = {k: "regions" if r.regions else "clusters" for k, r in results.items()}
    viewer.add_image(photo, name="astronaut", rgb=True)
    viewer.add_labels(
        results["astronaut"].labels,
        name=f"astronaut {kind['astronaut']}",
        metadata=results["astronaut"].metadata(),
    )
    viewer.add_image(image, name="synthetic", rgb=True)
    viewer.add_labels(gt, name="synthetic ground truth", visible=False)
    viewer.add_labels(
        results["synthetic"].labels,
        name=f"synthetic {kind['synthetic']}",
        metadata=results["synthetic"].metadata(),
    )
    viewer.window.add_plugin_dock_widget("napari-inceptseg", "Unsupervised segmentation")
    viewer.window.add_plugin_dock_widget("napari-inceptseg", "Score against ground truth")
    napari.run()
    return 0
