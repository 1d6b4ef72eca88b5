"""One root for expected errors: every latentopt error is a LatentoptError and keeps its builtin base."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest
from latentopt_rig.exchange import RigProtocolError
from latentopt_rig.formats import ResponseFileError
from latentopt_rig.limits import BoundError
from latentopt_rig.waiting import RigTimeout

import latentopt
from latentopt.checks import ConfigError
from latentopt.errors import LatentoptError
from latentopt.optimizer import OptimizerError
from latentopt.plugins import PluginError
from latentopt.record_files import RecordError
from latentopt.subject import SubjectUnavailable
from latentopt.weights import DownloadError, WeightsError, WeightsUnavailable

PACKAGES = ("latentopt", "latentopt_biggan", "latentopt_cmafamily", "latentopt_deepsim", "latentopt_rig")

# Control flow inside one module, always caught there: deliberately not LatentoptError.
CONTROL_FLOW = {
    "latentopt.builtins.subjects._StopForward",
    "latentopt.weights._Restart",
    "latentopt_rig.simulator.SimulatedRestart",
}


@pytest.mark.parametrize(("error", "base"), [
    (ConfigError, ValueError),
    (RecordError, RuntimeError),
    (PluginError, RuntimeError),
    (OptimizerError, RuntimeError),
    (WeightsError, RuntimeError),
    (DownloadError, WeightsError),
    (WeightsUnavailable, WeightsError),
    (SubjectUnavailable, RuntimeError),
    (RigTimeout, SubjectUnavailable),
    (RigProtocolError, SubjectUnavailable),
    (ResponseFileError, ValueError),
    (BoundError, ValueError),
])
def test_each_error_is_a_latentopt_error_with_its_old_base(error, base):
    assert issubclass(error, LatentoptError) and issubclass(error, base)
    with pytest.raises(base, match=r"^subject\.x: bad$"):  # an existing `except ValueError` still catches it
        raise error("subject.x: bad")


def test_the_root_is_exported_and_weights_unavailable_is_one_class():
    from latentopt_biggan.loading import WeightsUnavailable as BigGAN
    from latentopt_deepsim.weights import WeightsUnavailable as DeePSim

    assert latentopt.LatentoptError is LatentoptError and "LatentoptError" in latentopt.__all__
    assert BigGAN is DeePSim is WeightsUnavailable
    assert not issubclass(LatentoptError, (ValueError, RuntimeError))


def _exception_classes() -> dict[str, type[BaseException]]:
    """Every exception class defined in latentopt and its first-party plugins (their tests excepted)."""
    found: dict[str, type[BaseException]] = {}
    for package_name in PACKAGES:
        package = importlib.import_module(package_name)
        names = [package_name] + [m.name for m in pkgutil.walk_packages(package.__path__, f"{package_name}.")]
        for name in names:
            if ".tests" in name or name.endswith(".__main__"):
                continue
            module = importlib.import_module(name)
            for obj in vars(module).values():
                if inspect.isclass(obj) and issubclass(obj, BaseException) and obj.__module__ == name:
                    found[f"{name}.{obj.__qualname__}"] = obj
    return found


def test_every_exception_class_is_rooted_or_named_control_flow():
    classes = _exception_classes()
    assert CONTROL_FLOW <= set(classes), "a control-flow exception was renamed: update CONTROL_FLOW"
    unrooted = sorted(n for n, c in classes.items() if not issubclass(c, LatentoptError) and n not in CONTROL_FLOW)
    assert unrooted == [], f"exception classes outside LatentoptError: {unrooted}"
    leaked = sorted(n for n in CONTROL_FLOW if issubclass(classes[n], LatentoptError))
    assert leaked == []
    assert len(classes) >= 16  # the walk found the modules: the root, the 12 errors above, 3 control flow
