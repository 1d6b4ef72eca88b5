"""Export a run folder to other formats: NWB (Neurodata Without Borders) through ``pynwb``.

``latentopt-export nwb RUN_DIR [--out FILE.nwb]`` (:func:`latentopt.export.cli.main`) or, from Python,
:func:`export_nwb`. The file's layout is documented in ``docs/nwb.md``. Only standard NWB types are used (no
extension), so MatNWB reads the file as pynwb does. ``pynwb`` is an optional dependency
(``pip install 'latentopt[nwb]'``), imported only when an export runs.
"""

from __future__ import annotations

from latentopt.export.nwb import SubjectInfo, export_nwb
from latentopt.export.session import ExportError, Session, read_session

__all__ = ["ExportError", "Session", "SubjectInfo", "export_nwb", "read_session"]
