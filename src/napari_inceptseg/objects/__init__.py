"""Objects on a background (e.g. nuclei): found from the image's intensity, split where
they touch, and measured one by one. Numpy, scipy and scikit-image only.
"""
