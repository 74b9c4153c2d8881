"""Snapshot loading and the fit checks (vendor, Directus version, systemFields)."""

from __future__ import annotations

import pytest

from supervisor.errors import ConfigError, SchemaRefusal
from supervisor.snapshot import check_fit, load_snapshot, parse_version

GOOD = "version: 1\ndirectus: 12.4.0\nvendor: postgres\ncollections: []\nfields: []\nsystemFields: []\nrelations: []\n"


def _snap(tmp_path, text: str):
    p = tmp_path / "schema.yaml"
    p.write_text(text)
    return load_snapshot(p)


def test_a_fitting_snapshot_passes(tmp_path):
    """Same vendor and version, systemFields present: no refusal; the checksum is the normalised sha256."""
    s = _snap(tmp_path, GOOD)
    check_fit(s, "12.4.0", force=False)
    assert s.checksum.startswith("sha256:")


def test_other_vendor_is_refused_even_when_forced(tmp_path):
    """A MySQL snapshot never applies to Postgres."""
    with pytest.raises(SchemaRefusal, match="vendor 'mysql'") as e:
        check_fit(_snap(tmp_path, GOOD.replace("postgres", "mysql")), "12.4.0", force=True)
    assert e.value.exit_code == 7 and e.value.error_code == "SNAPSHOT_VENDOR"


def test_other_version_is_refused_unless_forced(tmp_path):
    """Another Directus version is refused with the fix; --force lets it through."""
    s = _snap(tmp_path, GOOD.replace("12.4.0", "12.3.1"))
    with pytest.raises(SchemaRefusal, match=r"made by Directus 12\.3\.1, this is Directus 12\.4\.0"):
        check_fit(s, "12.4.0", force=False)
    check_fit(s, "12.4.0", force=True)


def test_missing_system_fields_is_refused_from_11_13(tmp_path):
    """Without systemFields, 11.13+ would drop system indexes: refused; older Directus does not need them."""
    s = _snap(tmp_path, GOOD.replace("systemFields: []\n", ""))
    with pytest.raises(SchemaRefusal, match="no `systemFields`"):
        check_fit(s, "12.4.0", force=True)
    old = _snap(tmp_path, GOOD.replace("systemFields: []\n", "").replace("12.4.0", "11.10.0"))
    check_fit(old, "11.10.0", force=False)


def test_malformed_yaml_names_file_line_and_column(tmp_path):
    """A YAML error is a configuration error at file:line:col; it surfaces when the snapshot is used."""
    s = _snap(tmp_path, "version: 1\ncollections: [\n  - a: b\n")
    with pytest.raises(ConfigError, match=r"schema.yaml:3:\d+: the snapshot is not valid YAML"):
        _ = s.vendor


def test_missing_file_is_a_configuration_error(tmp_path):
    """No snapshot file: exit 2 naming the variable."""
    with pytest.raises(ConfigError, match="SUPERVISOR_SNAPSHOT") as e:
        load_snapshot(tmp_path / "none.yaml")
    assert e.value.error_code == "SNAPSHOT_MISSING"


def test_versions_parse():
    """Versions compare as numbers."""
    assert parse_version("11.13.0") > parse_version("11.9.9")
    assert parse_version("v12.4.0-rc.1") == (12, 4, 0)
