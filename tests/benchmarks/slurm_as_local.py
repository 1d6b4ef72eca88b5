"""Run the ``latentopt`` CLI with submitit's SLURM executor swapped for its local one.

Everything else is real: Hydra composes ``hydra/launcher=slurm_cluster`` (the suite's cluster config),
the submitit plugin's SlurmLauncher prefixes and passes its parameters, and the jobs are pickled,
run and collected by submitit. Only ``submitit.AutoExecutor(cluster="slurm")`` becomes
``cluster="local"``, which ignores the ``slurm_*`` parameters. What the launcher asked for is written
to the JSON file named by ``$SLURM_AS_LOCAL_RECORD``.

    python slurm_as_local.py <latentopt overrides...>
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import submitit


def main() -> None:
    real = submitit.AutoExecutor
    record: dict[str, Any] = {"clusters": [], "parameters": {}}

    def executor(*, cluster: str | None = None, **init: Any) -> Any:
        record["clusters"].append(cluster)
        instance = real(cluster="local", **init)
        update = instance.update_parameters

        def update_parameters(**parameters: Any) -> None:
            record["parameters"].update(parameters)
            update(**parameters)

        instance.update_parameters = update_parameters  # type: ignore[method-assign]
        return instance

    submitit.AutoExecutor = executor  # type: ignore[misc,assignment]
    from latentopt.cli import main as latentopt

    sys.argv[0] = "latentopt"
    try:
        latentopt()
    finally:
        with open(os.environ["SLURM_AS_LOCAL_RECORD"], "w") as handle:
            json.dump(record, handle, default=str)


if __name__ == "__main__":
    main()
