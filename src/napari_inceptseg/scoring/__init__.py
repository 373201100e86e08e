"""Scoring labels against ground truth (numpy, scipy and scikit-image; no torch): every
region protocol (:mod:`.metrics`), the checks of what is scored (:mod:`.checks`) and the
object scores of instance maps (:mod:`.objects`).
"""
