"""`publish` names where the URL and credentials of a destination came from (issue #21, defect
5): a registry of the matrix is not "--repository-url"."""

from __future__ import annotations

from ciwheels.dist.publish import target_for
from ciwheels.matrix.destination import environment_default, of_registry
from ciwheels.matrix.model import Registry


def test_a_matrix_registry_is_named_as_such(monkeypatch):
    monkeypatch.setenv("CIWHEELS_USERNAME", "ci")
    monkeypatch.setenv("CIWHEELS_PASSWORD", "pw-0d5e")
    monkeypatch.delenv("CIWHEELS_REPOSITORY_URL", raising=False)
    registries = {"levels": Registry("levels", "https://registry.invalid/levels", "", True, None)}
    target = target_for(of_registry(registries["levels"]), registries)
    assert target.url == "https://registry.invalid/levels"
    assert "--repository-url" not in str(target) and "from registry 'levels'" in str(target)
    # the option itself is still named as the option
    option = environment_default({}, "https://registry.invalid/other")
    assert "from --repository-url" in str(target_for(option, registries))
