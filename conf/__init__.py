"""The primary Hydra config (config.yaml and its groups), installed as the package ``latentopt.conf``."""
