"""Hydra configs of latentopt-cmafamily (a package so ``pkg://`` search paths resolve)."""
