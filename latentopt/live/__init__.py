"""A live view of a running session in a browser (``latentopt-live RUN_DIR``, or ``latentopt live=true``).

The view reads the run folder (:mod:`latentopt.live.state`: only what changed) and the session's status file
(:mod:`latentopt.live.status`), and serves a read-only page on loopback (:mod:`latentopt.live.server`,
:mod:`latentopt.live.page`). Started with a run, it serves from a daemon thread of the run's process: the
loop never waits for it, a failure to start is one line and the run goes on. See ``docs/live.md``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latentopt.checks import ConfigError
from latentopt.live.server import DEFAULT_HOST, DEFAULT_PORT, LiveError, LiveServer
from latentopt.live.state import RunState
from latentopt.live.status import STATUS_FILE, SessionStatus, session_status

__all__ = ["STATUS_FILE", "LiveError", "LiveOptions", "LiveServer", "RunState", "SessionStatus", "live_options",
           "session_status", "start_with_run"]

_KEYS = ("enabled", "host", "port", "allow_remote")


@dataclass(frozen=True)
class LiveOptions:
    """The ``live`` config of a run: serve its view on ``host:port`` (``allow_remote`` for other addresses)."""

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    allow_remote: bool = False


def live_options(value: Any) -> LiveOptions | None:
    """The ``live`` config key as options, or None when the view is off.

    ``live`` is absent, ``false`` or ``true`` (the defaults), or ``{enabled, host, port, allow_remote}``.

    Raises:
        ConfigError: one line naming the ``live.*`` key of an unusable value.
    """
    if value is None or value is False:
        return None
    if value is True:
        return LiveOptions()
    if not isinstance(value, Mapping):
        raise ConfigError(f"live must be true, false or {{enabled, host, port, allow_remote}}, got {value!r}")
    unknown = sorted(set(map(str, value)) - set(_KEYS))
    if unknown:
        raise ConfigError(f"live.{unknown[0]} is not a live view setting (settings: {', '.join(_KEYS)})")
    for key in ("enabled", "allow_remote"):
        if not isinstance(value.get(key, False), bool):
            raise ConfigError(f"live.{key} must be true or false, got {value.get(key)!r}")
    port = value.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ConfigError(f"live.port must be an integer in 0..65535 (0: a free one), got {port!r}")
    host = value.get("host", DEFAULT_HOST)
    if not isinstance(host, str) or not host.strip():
        raise ConfigError(f"live.host must be an address, got {host!r}")
    options = LiveOptions(host=host.strip(), port=port, allow_remote=bool(value.get("allow_remote", False)))
    from latentopt.live.server import is_loopback

    if not is_loopback(options.host) and not options.allow_remote:
        raise ConfigError(f"live.host={options.host} would serve the run to other machines; add "
                          "live.allow_remote=true (every request then needs the token printed with the URL)")
    return options if value.get("enabled", False) else None


def start_with_run(run_dir: Path | str, options: LiveOptions) -> LiveServer | None:
    """Serve the view of ``run_dir`` from a daemon thread and print its URL; None (one line printed) if it cannot.

    Nothing it raises reaches the caller: the run goes on without a view.
    """
    try:
        server = LiveServer(run_dir, host=options.host, port=options.port, allow_remote=options.allow_remote)
        server.start()
    except LiveError as err:
        print(f"latentopt: live view not started: {err}; the run goes on", file=sys.stderr, flush=True)
        return None
    except Exception as err:  # a bug of the view must not stop the session
        print(f"latentopt: live view not started: {type(err).__name__}: {err}; the run goes on", file=sys.stderr,
              flush=True)
        return None
    print(f"latentopt: live view of {run_dir} at {server.url}", file=sys.stderr, flush=True)
    return server
