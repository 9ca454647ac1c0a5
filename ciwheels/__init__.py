"""ciwheels: binary wheels for every CPU people actually run."""


def _version() -> str:
    """The version the build took from the git tag (hatch-vcs writes ciwheels/core/_version.py),
    else the installed distribution's (a plain checkout on sys.path next to an installation)."""
    try:
        from ciwheels.core._version import __version__  # lazy: the build writes it
    except ImportError:
        from importlib import metadata

        try:
            return metadata.version("ciwheels")
        except metadata.PackageNotFoundError:
            return "0+unknown"
    return __version__


__version__ = _version()
