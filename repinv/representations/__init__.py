"""Representations: the interface every feature extractor Φ implements, and helpers for network layers.

* ``base`` — ``FeatureSpec``, ``Representation``, ``rgb_to_gray``, names ``family[:variant]``;
* ``networks`` — layers of pretrained networks: capturing one module's output, weights files, weights on first use.
"""
