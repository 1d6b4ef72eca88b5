"""pycma's ``CMAEvolutionStrategy`` as plain data, and back, without pickle.

:func:`strategy_to_state` walks the strategy's attributes (and, recursively, those of the pycma objects
it holds) and keeps the plain data: numeric arrays, numbers, strings, ``None``, lists of these, dicts
of these with string keys. Caches that pycma rebuilds (dicts keyed by tuples), callables, the data
logger, wall-clock timers and the options (which come from the constructor) are left out.

:func:`load_strategy_state` never builds an object from the file: it takes a *fresh* strategy built
from the optimizer's own constructor arguments and transplants the recorded data into it. It sets only
data attributes (an attribute the fresh object has, or one its class does not define), checks each
value against the fresh one (an array stays a numeric array of the same shape and dtype kind, a
number stays a number, and a value that is finite in the fresh strategy stays finite), rebuilds
pycma's solution archives by inserting the recorded solutions, and finally lets a copy of the result
run one ask and tell, so a state that pycma cannot use is refused now and not three hours into a run.
Anything else is refused with an :class:`~latentopt.optimizer.OptimizerError` naming the attribute.
"""

from __future__ import annotations

import copy
import math
import warnings
from typing import Any

import numpy as np

from latentopt.optimizer import OptimizerError

#: attributes never recorded: rebuilt by the constructor, wall-clock, file logging, debug copies
SKIPPED = frozenset({"opts", "inopts", "inputargs", "_es_opts", "logger", "timer", "_tell2_args", "randn"})
_ARRAYS = "__arrays__"  # a list (or tuple) of equally shaped arrays, stacked
_TUPLE = "__tuple__"
_SCALAR = "__scalar__"  # a numpy scalar, as a 0-d array
_DICT = "__dict__"  # a plain dict (as opposed to a pycma object's attributes)
_SOLUTIONS = "__solutions__"  # a pycma SolutionDict: inserted solutions and their genotypes
_ATTRIBUTES = "__attributes__"  # a SolutionDict's own counters
_ARCHIVE_CONTENT = frozenset({"data", "data_with_same_key", "_unhashed_keys"})
_MAX_DEPTH = 8
_ENTRY = frozenset({"pheno", "geno", "iteration"})  # what pycma's ask records of each solution it sends


def _is_cma_object(value: Any) -> bool:
    module = type(value).__module__ or ""
    return (module == "cma" or module.startswith("cma.")) and hasattr(value, "__dict__")


def _is_solution_dict(value: Any) -> bool:
    from cma.utilities.utils import SolutionDict

    return isinstance(value, SolutionDict)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, (bool, np.bool_))


def _is_numeric_array(value: Any) -> bool:
    return isinstance(value, np.ndarray) and value.dtype.kind in "biuf"


# ---------------------------------------------------------------------------- writing
def _encode_plain(value: Any, depth: int = 0) -> Any:
    """Plain data as record-safe values; ``NotImplemented`` for anything else."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, np.generic) and _is_number(value):
        return {_SCALAR: np.asarray(value)}  # keeps numpy's scalar type: pycma's arithmetic differs on it
    if _is_number(value):
        return value
    if _is_numeric_array(value):
        return value.copy(order="K")  # keeps Fortran order: BLAS rounds differently on it
    if depth >= _MAX_DEPTH:
        return NotImplemented
    if isinstance(value, (list, tuple)) and value and all(_is_numeric_array(v) for v in value):
        shapes = {v.shape for v in value}
        return {_ARRAYS: np.stack(value), _TUPLE: isinstance(value, tuple)} if len(shapes) == 1 else NotImplemented
    if isinstance(value, (list, tuple)):
        items = [_encode_plain(v, depth + 1) for v in value]
        if any(item is NotImplemented or isinstance(item, (dict, np.ndarray)) for item in items):
            return NotImplemented
        return {_TUPLE: True, "items": items} if isinstance(value, tuple) else items
    if type(value) is dict and all(isinstance(k, str) and k.isidentifier() for k in value):
        fields = {k: _encode_plain(v, depth + 1) for k, v in value.items()}
        return NotImplemented if any(v is NotImplemented for v in fields.values()) else {_DICT: fields}
    return NotImplemented


def _encode_solutions(archive: Any, path: str) -> dict[str, Any]:
    keys: list[np.ndarray] = []
    genos: list[np.ndarray] = []
    iterations: list[float] = []
    for hashed, entry in archive.data.items():
        if not isinstance(entry, dict) or set(entry) - _ENTRY or hashed in archive.data_with_same_key:
            raise OptimizerError(f"pycma archive {path} holds entries latentopt cannot record: {entry!r}"[:200])
        keys.append(np.asarray(archive._unhashed_keys[hashed], dtype=np.float64))
        genos.append(np.asarray(entry.get("geno", keys[-1]), dtype=np.float64))
        iterations.append(float(entry.get("iteration") or 0))
    attributes = {k: v for k, v in vars(archive).items() if k not in _ARCHIVE_CONTENT and _encode_plain(v) is v}
    entries = {"x": np.stack(keys), "geno": np.stack(genos), "iteration": np.asarray(iterations)} if keys else {}
    return {_SOLUTIONS: entries, _ATTRIBUTES: attributes}


def _encode_object(obj: Any, path: str, seen: dict[int, str], aliases: dict[str, str], depth: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in vars(obj).items():
        if name in SKIPPED or not name.isidentifier() or name.startswith("__"):
            continue
        where = f"{path}.{name}" if path else name
        shared = isinstance(value, (np.ndarray, list)) or _is_cma_object(value)
        if shared and id(value) in seen:  # the same object reached twice (pycma shares arrays between parts)
            aliases[where] = seen[id(value)]
            continue
        if _is_solution_dict(value):
            encoded = _encode_solutions(value, where)
        elif _is_cma_object(value):
            seen[id(value)] = where  # before the walk, so that a reference back is an alias, not a loop
            encoded = _encode_object(value, where, seen, aliases, depth + 1) if depth < _MAX_DEPTH else {}
        else:
            encoded = _encode_plain(value)
        if encoded is not NotImplemented:
            out[name] = encoded
            if shared:
                seen[id(value)] = where
    return out


def strategy_to_state(es: Any) -> dict[str, Any]:
    """A ``CMAEvolutionStrategy`` as a tree of plain data (see the module docstring).

    Returns:
        ``{"attributes": nested dict, "aliases": {path: path it shares an object with}}``.
    """
    seen: dict[int, str] = {id(es): ""}
    aliases: dict[str, str] = {}
    attributes = _encode_object(es, "", seen, aliases, 0)
    return {"attributes": attributes, "aliases": aliases}


# ---------------------------------------------------------------------------- reading
def _decode_plain(value: Any, where: str, depth: int = 0) -> Any:
    if value is None or isinstance(value, (bool, str)) or _is_number(value):
        return value
    if isinstance(value, np.ndarray):
        if not _is_numeric_array(value):
            raise OptimizerError(f"optimizer state {where} is a {value.dtype} array, not numbers")
        return value.copy(order="K")  # keeps Fortran order: BLAS rounds differently on it
    if depth >= _MAX_DEPTH:
        raise OptimizerError(f"optimizer state {where} is nested too deeply")
    if isinstance(value, list):
        items = [_decode_plain(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value)]
        if any(isinstance(item, (np.ndarray, dict)) for item in items):
            raise OptimizerError(f"optimizer state {where} is a list of arrays or dicts")
        return items
    if isinstance(value, dict) and set(value) == {_ARRAYS, _TUPLE} and isinstance(value[_ARRAYS], np.ndarray):
        stacked = _decode_plain(value[_ARRAYS], where, depth + 1)
        return tuple(stacked) if value[_TUPLE] else list(stacked)
    if isinstance(value, dict) and set(value) == {_TUPLE, "items"} and isinstance(value["items"], list):
        return tuple(_decode_plain(value["items"], where, depth + 1))
    if isinstance(value, dict) and set(value) == {_SCALAR} and isinstance(value[_SCALAR], np.ndarray):
        scalar = _decode_plain(value[_SCALAR], where, depth + 1)
        if scalar.ndim != 0 or scalar.dtype.kind not in "iuf":
            raise OptimizerError(f"optimizer state {where} must be a number, got a {scalar.dtype} {scalar.shape} array")
        return scalar[()]
    if isinstance(value, dict) and set(value) == {_DICT} and isinstance(value[_DICT], dict):
        return {_check_name(k, where): _decode_plain(v, f"{where}.{k}", depth + 1) for k, v in value[_DICT].items()}
    raise OptimizerError(f"optimizer state {where} has unsupported content {type(value).__name__}")


def _check_name(name: Any, where: str) -> str:
    if not isinstance(name, str) or not name.isidentifier() or name.startswith("__") or name in SKIPPED:
        raise OptimizerError(f"optimizer state {where} has an attribute name latentopt does not set: {name!r}")
    return name


def _nonfinite(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return value.dtype.kind == "f" and not bool(np.isfinite(value).all())
    if isinstance(value, (list, tuple)):
        return any(_nonfinite(v) for v in value)
    if isinstance(value, dict):
        return any(_nonfinite(v) for v in value.values())
    return _is_number(value) and not math.isfinite(float(value))


def _check_compatible(fresh: Any, value: Any, where: str) -> Any:
    """``value`` if it may replace ``fresh`` (see the module docstring), else an OptimizerError."""
    if _nonfinite(value) and fresh is not None and not _nonfinite(fresh):
        raise OptimizerError(f"optimizer state {where} holds NaN or infinity")
    if fresh is None:
        return value
    if isinstance(fresh, np.ndarray):
        # a 0-d array is pycma's "not yet a vector" (sigma_vec.scaling); the trial generation checks the length
        widened = fresh.ndim == 0 and isinstance(value, np.ndarray) and value.ndim == 1
        if not isinstance(value, np.ndarray) or (value.shape != fresh.shape and not widened) or (
                value.dtype.kind == "f") != (fresh.dtype.kind == "f"):
            got = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value).__name__
            raise OptimizerError(f"optimizer state {where} must be a {fresh.dtype} array of shape {fresh.shape}, "
                                 f"got {got}")
        return value.astype(fresh.dtype, copy=False)
    kinds = ((bool, np.bool_), (str,), (list, tuple), (dict,))
    for kind in kinds:
        if isinstance(fresh, kind) and not isinstance(value, kind):
            raise OptimizerError(f"optimizer state {where} must be a {type(fresh).__name__}, got "
                                 f"{type(value).__name__}")
    if _is_number(fresh) and not _is_number(value):
        raise OptimizerError(f"optimizer state {where} must be a number, got {type(value).__name__}")
    return value


def _load_solutions(archive: Any, recorded: Any, where: str) -> None:
    if not isinstance(recorded, dict) or set(recorded) != {_SOLUTIONS, _ATTRIBUTES} or not isinstance(
            recorded[_SOLUTIONS], dict) or not isinstance(recorded[_ATTRIBUTES], dict):
        raise OptimizerError(f"optimizer state {where} must be a solution archive")
    counters = recorded[_ATTRIBUTES]
    for name in counters:
        if name in _ARCHIVE_CONTENT:
            raise OptimizerError(f"optimizer state {where}.{name} is rebuilt from the recorded solutions, not set")
    data = recorded[_SOLUTIONS]
    if not data:
        _transplant(archive, counters, where, 1)
        return
    if set(data) != {"x", "geno", "iteration"}:
        raise OptimizerError(f"optimizer state {where} must hold x, geno and iteration, got {sorted(data)}")
    x, geno, iteration = (_decode_plain(data[k], f"{where}.{k}") for k in ("x", "geno", "iteration"))
    if not (isinstance(x, np.ndarray) and isinstance(geno, np.ndarray) and isinstance(iteration, np.ndarray)) or (
            x.ndim != 2 or geno.shape != x.shape or iteration.shape != x.shape[:1] or x.dtype.kind != "f"
            or _nonfinite(x) or _nonfinite(geno) or _nonfinite(iteration)):
        raise OptimizerError(f"optimizer state {where} must be finite (n, d) solutions with (n,) iterations")
    for xi, gi, it in zip(x.astype(np.float64), geno.astype(np.float64), iteration.tolist(), strict=True):
        archive[xi] = {"pheno": xi, "geno": gi, "iteration": int(it) if float(it).is_integer() else float(it)}
    _transplant(archive, counters, where, 1)


def _transplant(obj: Any, recorded: Any, where: str, depth: int) -> None:
    if not isinstance(recorded, dict) or depth > _MAX_DEPTH:
        raise OptimizerError(f"optimizer state {where or 'of pycma'} must be a dict of attributes")
    current = vars(obj)
    for name, value in recorded.items():
        here = f"{where}.{_check_name(name, where)}" if where else _check_name(name, "of pycma")
        if name not in current and hasattr(type(obj), name):
            raise OptimizerError(f"optimizer state {here} names a method or property, not data")
        fresh = current.get(name)
        if _is_solution_dict(fresh):
            _load_solutions(fresh, value, here)
        elif _is_cma_object(fresh):
            _transplant(fresh, value, here, depth + 1)
        else:
            setattr(obj, name, _check_compatible(fresh, _decode_plain(value, here), here))


def _resolve(es: Any, path: str) -> tuple[Any, str]:
    """The object holding the attribute at a dotted ``path``, and the attribute's name."""
    *parents, leaf = path.split(".")
    node = es
    for part in parents:
        node = vars(node).get(part) if hasattr(node, "__dict__") else None
        if not _is_cma_object(node):
            raise OptimizerError(f"optimizer state alias {path} does not lead to a pycma object")
    return node, leaf


def _restore_aliases(es: Any, aliases: Any) -> None:
    if not isinstance(aliases, dict):
        raise OptimizerError("optimizer state aliases must be a dict")
    for path, target in aliases.items():
        if not isinstance(target, str) or not isinstance(path, str):
            raise OptimizerError(f"optimizer state alias {path!r} must name another attribute")
        for part in (*path.split("."), *target.split(".")):
            _check_name(part, f"alias {path}")
        node, leaf = _resolve(es, path)
        source, source_leaf = _resolve(es, target)
        value = vars(source).get(source_leaf)
        fresh = vars(node).get(leaf)
        if _is_cma_object(fresh) or _is_cma_object(value):
            continue  # pycma objects are the fresh strategy's own, shared as its constructor shares them
        if not isinstance(value, (np.ndarray, list)) or (leaf not in vars(node) and hasattr(type(node), leaf)):
            raise OptimizerError(f"optimizer state alias {path} -> {target} does not share an array or list")
        setattr(node, leaf, _check_compatible(fresh, value, path))


def _trial_generation(es: Any, pending: list[np.ndarray]) -> None:
    """Run one tell and ask (or ask and tell) on a copy; a pycma error becomes an OptimizerError."""
    trial = copy.deepcopy(es)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            solutions = [np.array(x, dtype=np.float64) for x in pending] or trial.ask()
            trial.tell(solutions, list(range(len(solutions))))
            trial.ask()
    except OptimizerError:
        raise
    except Exception as err:  # pycma raises whatever numpy raises on arrays of the wrong shape
        raise OptimizerError(f"optimizer state does not give pycma a usable strategy: {err!r}"[:300]) from err


def load_strategy_state(fresh: Any, state: Any, pending: list[np.ndarray]) -> Any:
    """Transplant a :func:`strategy_to_state` tree into ``fresh`` (a new strategy) and return it.

    Args:
        fresh: a ``CMAEvolutionStrategy`` just built from the optimizer's constructor arguments.
        state: the recorded tree.
        pending: solutions asked and not yet told (float64 ``(d,)`` arrays), for the trial run.

    Raises:
        OptimizerError: the state is not one latentopt wrote (names the attribute at fault).
    """
    if not isinstance(state, dict) or set(state) != {"attributes", "aliases"}:
        got = sorted(state) if isinstance(state, dict) else type(state).__name__
        raise OptimizerError(f"optimizer state of pycma must hold attributes and aliases, got {got}")
    _transplant(fresh, state["attributes"], "", 0)
    _restore_aliases(fresh, state["aliases"])
    if "timer" not in vars(fresh):  # pycma starts its wall-clock timer at the first ask and expects it after
        from cma.utilities.utils import ElapsedWCTime

        fresh.timer = ElapsedWCTime()
    _trial_generation(fresh, pending)
    return fresh
