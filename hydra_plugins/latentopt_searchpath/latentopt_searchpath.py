"""Hydra discovers this plugin and adds every latentopt plugin's config folder to the search path,
so ``latentopt generator=<name>`` works for any installed plugin without editing the core."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class LatentoptSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from latentopt.plugins import PluginError, default_registry

        try:
            registry = default_registry()
        except PluginError:
            # A name collision (or a plugin that fails to register): Hydra calls this during its own
            # start-up, where an exception is a traceback. The latentopt commands report the error in
            # one line before Hydra starts; here only the first-party config folder that the primary
            # config's defaults need (the default optimizer, sphere_cma) is added, so that it composes.
            search_path.append(provider="latentopt_cmafamily", path="pkg://latentopt_cmafamily.conf")
            return
        for path, plugin in registry.searchpaths:
            search_path.append(provider=plugin, path=path)
