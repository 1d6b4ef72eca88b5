"""Hydra discovers this plugin and adds every latentopt plugin's config folder to the search path,
so ``latentopt generator=<name>`` works for any installed plugin without editing the core."""

from hydra.core.config_search_path import ConfigSearchPath
from hydra.plugins.search_path_plugin import SearchPathPlugin


class LatentoptSearchPathPlugin(SearchPathPlugin):
    def manipulate_search_path(self, search_path: ConfigSearchPath) -> None:
        from latentopt.plugins import default_registry

        for path, plugin in default_registry().searchpaths:
            search_path.append(provider=plugin, path=path)
