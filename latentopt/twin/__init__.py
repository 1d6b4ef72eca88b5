"""The digital twin of recorded channels: a frozen backbone layer + a fitted linear readout (issue 13).

* :mod:`latentopt.twin.features`: :class:`~latentopt.twin.features.Backbone` (EfficientNet-Lite0 read out at
  layers), pooling (``avg``, ``grid``, ``factorised``), the backbone weights' SHA-256 and a feature cache.
* :mod:`latentopt.twin.fit`: grouped folds, cross-validated ridge and PLS readouts (:class:`ReadoutFit`).
* :mod:`latentopt.twin.factorised`: the factorised spatial x feature readout.
* :mod:`latentopt.twin.reliability`: split-half reliability and noise-ceiling normalisation.
* :mod:`latentopt.twin.model`: :class:`~latentopt.twin.model.Twin`, ``save_twin`` / ``load_twin``.

The subject plugin ``twin`` (:class:`latentopt.builtins.twin.TwinSubject`) serves a saved twin.
"""
