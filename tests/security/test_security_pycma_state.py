"""A generation file whose pycma optimizer state was replaced by a hostile pickle: resuming the run
refuses it with one line naming the file, runs nothing, and leaves the recorded generations as they were."""

import io

from conftest import TINY, run_cli

from latentopt.records import load_tree, tree_to_npz_bytes

GENERATIONS = 3


def _hostile_pickle(marker) -> bytes:
    """PROTO 4, "cma.evolution_strategy", "os.system" (a protocol-4 dotted name), STACK_GLOBAL, cmd, TUPLE1,
    REDUCE: what the old restricted unpickler let through to ``os.system``."""
    command = f"touch {marker}".encode()
    return (b"\x80\x04\x8c\x16cma.evolution_strategy\x94\x8c\x09os.system\x94\x93"
            + b"\x8c" + bytes([len(command)]) + command + b"\x85R.")


def test_resume_refuses_a_hostile_pycma_state_and_runs_nothing(tmp_path):
    run_dir = tmp_path / "run"
    args = [a for a in TINY if not a.startswith(("optimizer=", "optimizer.n_elite"))]
    run_cli([*args, "optimizer=cmaes_diag", f"experiment.generations={GENERATIONS}", f"hydra.run.dir={run_dir}"])
    generations = run_dir / "generations"
    last = generations / f"gen_{GENERATIONS - 1:05d}.npz"
    record = load_tree(last)
    impl = record["threads"]["main"]["state"]["impl"]
    assert "strategy" in impl and "pycma" not in impl  # plain data, no pickled bytes
    marker = tmp_path / "pwned"
    for field in ("strategy", "pycma"):  # the current field, and the old format's field
        tree = load_tree(last)
        tree["threads"]["main"]["state"]["impl"].pop("strategy")
        tree["threads"]["main"]["state"]["impl"][field] = _hostile_pickle(marker)
        last.write_bytes(tree_to_npz_bytes(tree))
        before = {p.name: p.read_bytes() for p in sorted(generations.iterdir())}

        proc = run_cli([str(run_dir), f"experiment.generations={GENERATIONS + 1}"], entry="resume_main",
                       check=False)

        assert proc.returncode != 0
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1, proc.stderr
        assert lines[0].startswith("latentopt: error:"), proc.stderr
        assert f"gen_{GENERATIONS - 1:05d}.npz" in lines[0] and "thread main" in lines[0], lines[0]
        assert "optimizer state" in lines[0], lines[0]
        assert "Traceback" not in proc.stderr
        assert not marker.exists(), "the hostile pickle ran"
        assert {p.name: p.read_bytes() for p in sorted(generations.iterdir())} == before
        assert load_tree(io.BytesIO(before[last.name]))["threads"]["main"]["scores"].shape == (12,)
