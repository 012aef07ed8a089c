"""The registry: what plugins register and how things are created by name.

* ``hookspecs`` — the four hooks (``register_representations`` / ``_decoders`` / ``_perturbations``) and markers;
* ``manager`` — the one pluggy plugin manager, loaded lazily, and the :class:`~repinv.registry.manager.Registry`;
* ``factories`` — ``create_representation``, ``list_representations``, ``build_decoder``, ``decoder_from_config``.
"""
