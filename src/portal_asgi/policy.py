"""The live table of product levels: settings.toml, overridden by levels set at run time."""

from __future__ import annotations

from .directory import Directory
from .levels import Levels
from .settings import MountSettings


class Policy:
    def __init__(
        self, mounts: tuple[MountSettings, ...], levels: Levels, directory: Directory
    ) -> None:
        self.configure(mounts)
        self.levels = levels
        self.directory = directory

    def configure(self, mounts: tuple[MountSettings, ...]) -> None:
        """Take the levels of these mounts (a settings reload): one assignment, so a request
        reads the old table or the new one, never a mixture. The policy is shared by every
        route table a reload builds, so sockets opened before the reload are judged by it too."""
        self.configured = {mount.path: mount.level for mount in mounts}

    def level(self, path: str) -> str:
        """The level a mount requires now. An override naming a level that no longer exists
        is ignored in favour of the file, and an unknown path requires the highest level."""
        override = self.directory.mount_levels.get(path)
        if override and override in self.levels:
            return override
        level = self.configured.get(path)  # asked at every request: no default made in vain
        return self.levels.highest if level is None else level
