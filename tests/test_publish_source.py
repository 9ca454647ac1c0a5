"""`publish` names where the URL and credentials of a destination came from (issue #21, defect
5): a registry of the matrix is not "--repository-url"."""

from __future__ import annotations

from ciwheels.dist.publish import target_for
from ciwheels.matrix.model import Registry


def test_a_matrix_registry_is_named_as_such(monkeypatch):
    monkeypatch.setenv("CIWHEELS_USERNAME", "ci")
    monkeypatch.setenv("CIWHEELS_PASSWORD", "pw-0d5e")
    monkeypatch.delenv("CIWHEELS_REPOSITORY_URL", raising=False)
    registries = {"levels": Registry("levels", "https://registry.invalid/levels", "", True, None)}
    target = target_for("levels", registries)
    assert target.url == "https://registry.invalid/levels"
    assert "--repository-url" not in str(target) and "from the matrix's registry levels" in str(target)
    # the option itself is still named as the option
    assert "from --repository-url" in str(target_for(None, registries, "https://registry.invalid/other"))
