"""The root of latentopt's expected errors (placeholder until the errors branch lands)."""


class LatentoptError(Exception):
    """Base of every error a user can cause; the CLI prints it as one line."""
