"""pycma's optimizer state is plain data: it resumes exactly, and anything that is not what latentopt
wrote (a pickle, wrong shapes, dtypes, missing keys, NaN) is refused with an OptimizerError."""

import copy
import io

import numpy as np
import pytest

from latentopt.builtins.optimizers import PycmaES
from latentopt.optimizer import OptimizerError
from latentopt.records import load_tree, tree_to_npz_bytes


def _score(codes: np.ndarray) -> np.ndarray:
    return -np.sum((codes.astype(np.float64) - 0.3) ** 2, axis=1)


def _through_disk(state: dict) -> dict:
    return load_tree(io.BytesIO(tree_to_npz_bytes(state)))


def _make(diagonal: bool, seed: int = 1) -> PycmaES:
    initial = np.random.default_rng(0).standard_normal((10, 6)).astype(np.float32)
    return PycmaES(initial, seed=seed, sigma0=0.5, diagonal=diagonal)


def _run(opt: PycmaES, generations: int) -> None:
    for _ in range(generations):
        codes = opt.ask()
        opt.tell(codes, _score(codes))


@pytest.mark.parametrize("diagonal", [False, True], ids=["full", "diagonal"])
@pytest.mark.parametrize("pending", [False, True], ids=["told", "pending-ask"])
def test_resumed_pycma_proposes_exactly_what_an_uninterrupted_one_does(diagonal, pending):
    straight = _make(diagonal)
    _run(straight, 7)
    asked = straight.ask() if pending else None
    resumed = _make(diagonal, seed=99)  # the seed comes from the state, not the constructor
    resumed.load_state_dict(_through_disk(straight.state_dict()))
    if asked is not None:
        for opt in (straight, resumed):
            opt.tell(asked, _score(asked))
    for generation in range(12):
        a, b = straight.ask(), resumed.ask()
        assert np.array_equal(a, b), f"generation {generation} after the resume differs"
        straight.tell(a, _score(a))
        resumed.tell(b, _score(b))
    assert straight.sigma == resumed.sigma
    assert np.array_equal(straight.es.mean, resumed.es.mean)
    assert np.array_equal(straight.es.sm.C if not diagonal else straight.es.sigma_vec.scaling,
                          resumed.es.sm.C if not diagonal else resumed.es.sigma_vec.scaling)


def test_pycma_state_holds_no_bytes_or_objects():
    opt = _make(False)
    _run(opt, 3)
    opt.ask()

    def leaves(node, path=""):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from leaves(value, f"{path}/{key}")
            else:
                yield f"{path}/{key}", value

    for path, value in leaves(opt.state_dict()):
        assert isinstance(value, (np.ndarray, int, float, str, list, type(None))), path
        assert not isinstance(value, (bytes, bytearray)), path
        if isinstance(value, np.ndarray):
            assert value.dtype.kind in "biufU", path


def _state_after(generations: int = 3, pending: bool = False) -> dict:
    opt = _make(False)
    _run(opt, generations)
    if pending:
        opt.ask()
    return _through_disk(opt.state_dict())


def _attrs(state: dict) -> dict:
    return state["impl"]["strategy"]["attributes"]


def _set_nan_mean(state):
    _attrs(state)["mean"][2] = np.nan


def _set_wrong_c_shape(state):
    _attrs(state)["sm"]["C"] = np.eye(4)


def _set_string_sigma(state):
    _attrs(state)["sigma"] = "big"


def _set_text_array(state):
    _attrs(state)["mean"] = np.array(["a"] * 6)


def _set_method_name(state):
    _attrs(state)["ask"] = 3


def _set_dunder(state):
    _attrs(state)["__class__"] = 3


def _set_skipped(state):
    _attrs(state)["opts"] = {"__dict__": {"popsize": 3}}


def _drop_strategy(state):
    del state["impl"]["strategy"]


def _drop_randn(state):
    del state["impl"]["randn"]


def _bad_randn(state):
    state["impl"]["randn"]["state"] = "not a number"


def _bad_asked_shape(state):
    state["impl"]["asked"] = np.zeros((10, 4))


def _nan_asked(state):
    state["impl"]["asked"][0, 0] = np.nan


def _wrong_popsize_asked(state):
    state["impl"]["asked"] = state["impl"]["asked"][:3]


def _object_for_plain(state):
    _attrs(state)["sp"] = 1.0


def _bad_alias(state):
    state["impl"]["strategy"]["aliases"]["B"] = "sm.ask"


def _bytes_in_strategy(state):
    _attrs(state)["mean"] = b"\x80\x04N."


def _solutions_wrong_shape(state):
    _attrs(state)["sent_solutions"]["__solutions__"]["x"] = np.zeros((10, 3))


@pytest.mark.parametrize("spoil, match", [
    (_set_nan_mean, "mean holds NaN"),
    (_set_wrong_c_shape, r"sm.C must be a float64 array of shape \(6, 6\)"),
    (_set_string_sigma, "sigma must be a number"),
    (_set_text_array, "mean is a <U1 array"),
    (_set_method_name, "ask names a method"),
    (_set_dunder, "does not set: '__class__'"),
    (_set_skipped, "does not set: 'opts'"),
    (_drop_strategy, "lacks strategy"),
    (_drop_randn, "lacks randn"),
    (_bad_randn, "randn is not a numpy bit-generator state"),
    (_bad_asked_shape, r"asked must be finite float \(n, 6\) codes"),
    (_nan_asked, "asked must be finite"),
    (_wrong_popsize_asked, "not give pycma a usable strategy"),
    (_object_for_plain, "sp must be a dict of attributes"),
    (_bad_alias, "alias B -> sm.ask does not share an array"),
    (_bytes_in_strategy, "mean has unsupported content bytes"),
    (_solutions_wrong_shape, "sent_solutions must be finite"),
])
def test_spoiled_pycma_states_are_refused_with_a_one_line_error(spoil, match):
    state = copy.deepcopy(_state_after(pending=True))
    spoil(state)
    opt = _make(False)
    strategy, mean = opt.es, opt.es.mean.copy()
    with pytest.raises(OptimizerError, match=match) as info:
        opt.load_state_dict(state)
    assert "\n" not in str(info.value)
    assert opt.es is strategy and np.array_equal(opt.es.mean, mean), "a refused state must not be half-loaded"


def test_a_hostile_pickle_in_place_of_the_pycma_state_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    command = f"touch {marker}".encode()
    # PROTO 4, "cma.evolution_strategy", "os.system" as a protocol-4 dotted name, STACK_GLOBAL, cmd, TUPLE1, REDUCE
    payload = (b"\x80\x04\x8c\x16cma.evolution_strategy\x94\x8c\x09os.system\x94\x93"
               + b"\x8c" + bytes([len(command)]) + command + b"\x85R.")
    state = _state_after()
    for impl in ({"pycma": payload, "asked": {}},
                 {"strategy": payload, "randn": state["impl"]["randn"], "asked": {}},
                 {"strategy": {"attributes": {"mean": payload}, "aliases": {}}, "randn": state["impl"]["randn"],
                  "asked": {}}):
        hostile = {**state, "impl": impl}
        with pytest.raises(OptimizerError):
            _make(False).load_state_dict(_through_disk(hostile))
    assert not marker.exists()
