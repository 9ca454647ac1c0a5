"""Finding a project's matrix files, and `ciwheels init`."""

from __future__ import annotations

from pathlib import Path

from ciwheels.errors import CiwheelsError


def find_matrix_files(project: Path, explicit: tuple[Path, ...] = ()) -> list[Path]:
    """The files named with --matrix (a folder means its *.yaml), else PROJECT/matrix/*.yaml."""
    if explicit:
        out: list[Path] = []
        for p in explicit:
            if p.is_dir():
                found = _yaml_in(p)
                if not found:
                    raise CiwheelsError(f"no *.yaml matrix files in {p}")
                out.extend(found)
            elif p.exists():
                out.append(p)
            else:
                raise CiwheelsError(f"matrix file not found: {p}")
        return out
    if not project.is_dir():
        raise CiwheelsError(f"project folder not found: {project}")
    found = _yaml_in(project / "matrix")
    if not found:
        raise CiwheelsError(f"no matrix files in {project / 'matrix'} (looked for *.yaml and *.yml)",
                            hint="run 'ciwheels init' to create one, or pass --matrix PATH")
    return found


def _yaml_in(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
