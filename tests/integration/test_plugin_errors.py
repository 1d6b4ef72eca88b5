"""A plugin name collision from the outside: one line, no traceback, wherever Hydra starts."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT, plugin_env

COLLIDING = ("from latentopt.plugins import hookimpl\n\n"
             "@hookimpl\ndef latentopt_register_generators(register):\n    register('pixel', object)\n")
BOTH = "generator name 'pixel' is provided twice: by latentopt.builtins.generators (latentopt 0.1.0 (built-in)) " \
       "and by rogue (rogue 0.1)"


def test_collision_through_python_m_latentopt_cli_help_is_one_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "latentopt.cli", "--help"], capture_output=True, text=True,
                          env=plugin_env(tmp_path, COLLIDING), cwd=ROOT, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert lines == [f"latentopt: error: {BOTH}"], proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_hydra_alone_composes_with_a_collision_installed(tmp_path):
    """Hydra runs latentopt's search-path plugin while it starts (here with no latentopt command in front
    to report the collision first): instead of raising, the plugin adds only the config folder that the
    primary config's defaults need."""
    script = ("from hydra import compose, initialize_config_module\n"
              "with initialize_config_module(config_module='latentopt.conf', version_base='1.3'):\n"
              "    print(compose(config_name='config', overrides=['generator=pixel']).generator.name)\n")
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=plugin_env(tmp_path, COLLIDING), cwd=ROOT, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "pixel", proc.stderr
    assert "Traceback" not in proc.stderr
