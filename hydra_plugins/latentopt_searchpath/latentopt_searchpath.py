"""Hydra discovers this plugin and adds every latentopt plugin's config folder to the search path,
so ``latentopt generator=<name>`` works for any installed plugin without editing the core."""

import importlib.util

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin

DEFAULT_OPTIMIZER_PLUGIN = "latentopt_cmafamily"
"""The package of ``latentopt-cmafamily``; its ``conf/default_optimizer/sep_cma.yaml`` sets the default optimizer."""


class LatentoptSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from latentopt.plugins import PluginError, default_registry

        try:
            registry = default_registry()
        except PluginError:
            # A name collision (or a plugin that fails to register): Hydra calls this during its own
            # start-up, where an exception is a traceback. The latentopt commands report the error in
            # one line before Hydra starts; here only the first-party config folder that gives the primary
            # config's default optimizer (sep_cma) is added, when installed, so that it composes as usual.
            if importlib.util.find_spec(DEFAULT_OPTIMIZER_PLUGIN) is not None:
                search_path.append(provider=DEFAULT_OPTIMIZER_PLUGIN, path=f"pkg://{DEFAULT_OPTIMIZER_PLUGIN}.conf")
            return
        for path, plugin in registry.searchpaths:
            search_path.append(provider=plugin, path=path)
