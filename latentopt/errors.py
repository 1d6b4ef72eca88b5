"""The root of latentopt's expected errors.

Every error that a user can cause or meet in normal operation (a bad config value, a damaged run
folder, a plugin name collision, missing weights, a rig that stopped answering) is a
:class:`LatentoptError`. Each concrete error also keeps the builtin base it always had (``ValueError``
for a bad value, ``RuntimeError`` for a state that cannot go on), so ``except ValueError`` code keeps
working. Anything that is not a :class:`LatentoptError` is a bug and keeps its traceback.

The concrete errors live beside the code that raises them: ``ConfigError`` (:mod:`latentopt.checks`),
``RecordError`` (:mod:`latentopt.record_files`), ``PluginError`` (:mod:`latentopt.plugins`),
``OptimizerError`` (:mod:`latentopt.optimizer`), ``WeightsError`` and its subclasses
(:mod:`latentopt.weights`), ``SubjectUnavailable`` (:mod:`latentopt.subject`), ``StimuliError``
(:mod:`latentopt.stimuli`).
"""

from __future__ import annotations

__all__ = ["LatentoptError"]


class LatentoptError(Exception):
    """An expected latentopt error: its message is one line naming the culprit (key, file, plugin).

    The command line prints any ``LatentoptError`` as that one line (``latentopt: error: ...``) and
    exits without a traceback; internal control-flow exceptions are not ``LatentoptError``.
    """
