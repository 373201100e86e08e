"""Regenerate the pictures in docs/images from real runs and a real napari window.

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python docs/_scripts/make_screenshots.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[1] / "images"


def main() -> int:
    import imageio.v3 as iio
    import napari
    from skimage.transform import resize

    from napari_inceptseg import score, segment
    from napari_inceptseg._io import colour_overlay
    from napari_inceptseg._sample_data import natural_image, synthetic_regions

    OUT.mkdir(parents=True, exist_ok=True)
    photo = (resize(natural_image(), (256, 256), anti_aliasing=True) * 255).astype(np.uint8)
    res = segment(photo, arch="inception", max_iter=60, seed=0, device="cpu")
    print(f"astronaut 256x256: {res.n_labels} clusters, {res.n_iter} it, {res.seconds:.1f} s")
    iio.imwrite(OUT / "astronaut-result.png", np.concatenate([photo, colour_overlay(photo, res.labels)], 1))

    image, gt = synthetic_regions()
    syn = segment(image, arch="inception", max_iter=100, seed=1, device="cpu")
    s = score(syn.labels, gt)
    print(f"synthetic: {syn.n_labels} clusters, one-to-one accuracy {s['accuracy']:.3f}")

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1100, 760)
    viewer.add_image(photo, name="astronaut", rgb=True)
    viewer.add_labels(res.labels, name="astronaut clusters", opacity=0.6)
    viewer.reset_view()
    viewer.screenshot(str(OUT / "napari-result.png"), canvas_only=False, flash=False)
    viewer.close()
    print(f"wrote pictures to {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
