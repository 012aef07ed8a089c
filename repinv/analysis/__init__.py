"""Analysis: scoring inversions and studying what a representation keeps.

* ``metrics`` — normalized error, PSNR, SSIM, feature error, on one scale;
* ``scoring`` — the one loop that scores several methods on the same test images;
* ``evaluate``, ``compare`` — a decoder beside the mean image; every method side by side, timed;
* ``perturbations``, ``studies``, ``random_features`` — the paper's feature studies (sections 4.3-4.5);
* ``report`` — one self-contained HTML page about runs and results.
"""
