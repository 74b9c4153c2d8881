"""Choosing the matrix cell's software (tests/pg.py, tests/directus_env.py) fails closed: never another version
silently."""

from __future__ import annotations

import pytest

from tests import directus_env, pg


def test_an_unsupported_version_is_refused(monkeypatch: pytest.MonkeyPatch):
    """SUPERVISOR_TEST_PG_VERSION=14 names the supported ones instead of falling back to the local binaries."""
    monkeypatch.setenv(pg.VERSION_ENV, "14")
    with pytest.raises(RuntimeError, match=r"SUPERVISOR_TEST_PG_VERSION='14': use 15, 16, 17 or 18"):
        pg.bindir()


def test_a_failed_install_is_an_error_with_the_scripts_message():
    """When scripts/install-postgres fails, its message and exit code reach the test run."""
    with pytest.raises(RuntimeError, match=r"(?s)install-postgres 19 failed \(exit 2\):.*usage: "):
        pg._installed.__wrapped__(19)


def test_unset_means_the_local_binaries(monkeypatch: pytest.MonkeyPatch):
    """Unset, the newest local server binaries are used, as before the matrix."""
    monkeypatch.delenv(pg.VERSION_ENV, raising=False)
    assert pg.requested_version() is None
    assert (pg.bindir() / "initdb").exists()


@pytest.mark.parametrize(
    ("variable", "value", "allowed"),
    [("SUPERVISOR_TEST_NODE", "18", "20, 22"), ("SUPERVISOR_TEST_DIRECTUS", "10", "12, 11")],
)
def test_an_unsupported_node_or_directus_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, allowed: str
):
    """A Node or Directus major outside the matrix is an error naming the supported ones."""
    monkeypatch.setenv(variable, value)
    with pytest.raises(RuntimeError, match=f"{variable}='{value}': use one of {allowed}"):
        directus_env.install_directus()


def test_each_directus_major_has_its_own_snapshot_made_by_it():
    """The snapshot a cell applies was made by that cell's Directus (scripts/make_snapshot.py --directus N)."""
    for major, version in ((12, "12.4.0"), (11, "11.17.4")):
        head = directus_env.snapshot_for(major).read_text().splitlines()[:3]
        assert head == ["version: 1", f"directus: {version}", "vendor: postgres"]
