"""ciwheels: binary wheels for every CPU people actually run."""

__version__ = "0.1.0"
