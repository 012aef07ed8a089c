"""Training: a decoder learns f(Φ(x)) ≈ x, into a run directory that ``--resume`` continues exactly.

* ``config`` — ``TrainConfig``, recipes, learning-rate schedules;
* ``loop`` — the training loop, ``train`` and ``resume``;
* ``faults`` — a kill before the first checkpoint, a full disk, kill points for tests;
* ``distributed`` — torchrun: process group, batch split, agreement across ranks;
* ``allocator`` — keeping freed memory mapped (glibc) in a training process.
"""
