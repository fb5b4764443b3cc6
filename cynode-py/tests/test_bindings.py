"""Tests of the installed `cynode` wheel.

scripts/test.sh builds the wheel with maturin and installs it into the venv before running
these tests, so they exercise the package the way a user gets it, not the source tree.
"""

import importlib.metadata
import pathlib
import tomllib

import pytest

import cynode
import cynode._native

REPO = pathlib.Path(__file__).resolve().parents[2]


def crate_version() -> str:
    """The version cargo gives the cynode-py crate (inherited from the workspace)."""
    package = tomllib.loads((REPO / "cynode-py" / "Cargo.toml").read_text())["package"]
    version = package["version"]
    if isinstance(version, dict) and version.get("workspace"):
        workspace = tomllib.loads((REPO / "Cargo.toml").read_text())["workspace"]
        version = workspace["package"]["version"]
    return version


def test_the_native_module_comes_from_the_installed_wheel():
    native = pathlib.Path(cynode._native.__file__).resolve()
    assert native.suffix == ".so", native
    source = REPO / "cynode-py"
    assert source not in native.parents, f"{native} was loaded from the source tree"
    dist = importlib.metadata.distribution("cynode")
    installed = {pathlib.Path(dist.locate_file(f)).resolve() for f in dist.files or []}
    assert native in installed, f"{native} is not a file of the installed cynode distribution"


def test_version_matches_the_crate():
    assert cynode.version() == crate_version()
    assert importlib.metadata.version("cynode") == crate_version()


def test_public_api_is_exported():
    assert set(cynode.__all__) == {"validate_handle", "version"}
    assert cynode.validate_handle is cynode._native.validate_handle


@pytest.mark.parametrize("handle", ["alice", "a", "Bob.Smith-2_x", "x" * 64])
def test_validate_handle_accepts_good_handles(handle):
    assert cynode.validate_handle(handle) is None


@pytest.mark.parametrize(
    "handle", ["", "x" * 65, "has space", "semi;colon", "slash/", "émile", "tab\t"]
)
def test_validate_handle_raises_value_error_on_bad_handles(handle):
    with pytest.raises(ValueError, match="must be 1-64 characters"):
        cynode.validate_handle(handle)


def test_validate_handle_rejects_non_strings():
    with pytest.raises(TypeError):
        cynode.validate_handle(42)
