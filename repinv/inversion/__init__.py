"""Inversion: every way of turning features back into images, behind one face.

* ``base`` — ``InversionMethod``: ``features``, ``decode``, ``reconstruct``;
* ``decoder`` — a trained decoder (``DecoderInverter``, ``load_decoder``);
* ``linear`` — the ridge-regression baseline (``fit_linear``, ``load_linear``);
* ``optimization`` — Mahendran & Vedaldi's optimization-based inversion;
* ``mean`` — the mean training image as a method;
* ``loading`` — any of them by kind (``load_inverter``);
* ``images`` — reconstructing image or feature files into PNG files.
"""
