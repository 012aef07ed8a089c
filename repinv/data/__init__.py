"""Data: images from folders, tar shards or the bundled photos, and their features for training.

* ``indexing`` — finding the images a source names (folders, files, tar shards, globs, the bundled photos);
* ``sources`` — ``ImageDataset`` (training and evaluation transforms, decode failures), ``evaluation_loader``;
* ``pixels`` — decoding one image to RGB, resizing, crop boxes;
* ``stream`` — the training stream: which sample each step sees (resumable, split over processes);
* ``features`` — where Φ runs while training (cache, loader workers, the step, or batched);
* ``cache_format`` — a feature cache's files, their checks, and reading one back (``FeatureCache``);
* ``cache`` — making feature caches: features of fixed crops computed once (``repinv features``).
"""
