"""ciwheels: binary wheels for every CPU people actually run."""


def _version() -> str:
    """The version the build took from the git tag (hatch-vcs writes ciwheels/core/_version.py),
    else the installed distribution's (a plain checkout on sys.path next to an installation)."""
    try:
        from ciwheels.core._version import __version__ as version  # lazy: written by the build, absent in a checkout
    except ImportError:
        from importlib import metadata

        try:
            return metadata.version("ciwheels")
        except metadata.PackageNotFoundError:
            return "0+unknown"
    return version


__version__ = _version()
