"""One root exception with a few subclasses, so callers can catch what they can handle."""


class ControlRoomError(Exception):
    """Root of every error this project raises on purpose."""


class CatalogError(ControlRoomError):
    """The feed catalog or province reference is invalid."""


class ConfigError(ControlRoomError):
    """A setting is missing or malformed."""


class WarehouseError(ControlRoomError):
    """ClickHouse (server or chDB) refused or failed a statement."""


class StartupError(ControlRoomError):
    """A part of the system could not start (port taken, broker unreachable…)."""
