"""Checksum normalisation, property-based: one checksum per text whatever its line ends and BOM; any other change
is a change. The old runner's plain sha256 of the raw bytes is accepted in every plausible raw form."""

from __future__ import annotations

import hashlib
from pathlib import Path

from hypothesis import assume, given
from hypothesis import strategies as st

from supervisor.sqlfile import SqlFile, checksum_matches

BOM = b"\xef\xbb\xbf"
# Text without line-end characters and without a BOM: lines are joined with the ends under test.
line_text = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n\ufeff"), max_size=30
)
lines = st.lists(line_text, max_size=8)
# LF and CRLF mix freely; a CR-only file is CR throughout (a CR then an empty line's LF would be one CRLF).
mixed_ends = st.one_of(st.lists(st.sampled_from(["\n", "\r\n"]), min_size=1, max_size=8), st.just(["\r"]))


def _f(raw: bytes) -> SqlFile:
    return SqlFile(Path("db-init/001.sql"), raw)


def _join(ls: list[str], ends: list[str], final: str | None) -> str:
    out = "".join(line + ends[i % len(ends)] for i, line in enumerate(ls[:-1]))
    return out + (ls[-1] if ls else "") + (final or "")


@given(lines, mixed_ends, st.booleans(), st.booleans())
def test_line_ends_and_bom_do_not_change_the_checksum(ls, ends, bom, final):
    """CRLF, CR, LF (LF and CRLF mixed per line too) and a BOM all give the checksum of the LF text without BOM."""
    text = _join(ls, ends, ends[0] if final else None)
    lf = _join(ls, ["\n"], "\n" if final else None)
    raw = (BOM if bom else b"") + text.encode()
    f = _f(raw)
    assert f.text == lf
    assert f.checksum == "sha256:" + hashlib.sha256(lf.encode()).hexdigest()


@given(st.lists(line_text, min_size=1, max_size=8), st.data())
def test_a_changed_character_changes_the_checksum(ls, data):
    """Replacing any character by another (other than a line end) changes the checksum."""
    text = "\n".join(ls)
    assume(text)
    at = data.draw(st.integers(min_value=0, max_value=len(text) - 1))
    new = data.draw(
        st.characters(exclude_categories=["Cs"], exclude_characters="\r\n").filter(lambda c: c != text[at])
    )
    assume(not (at == 0 and new == "\ufeff"))  # a leading BOM is a BOM: covered by the test above
    changed = text[:at] + new + text[at + 1 :]
    assert _f(changed.encode()).checksum != _f(text.encode()).checksum


@given(lines, st.sampled_from(["\n", "\r\n"]), st.booleans(), st.sampled_from(["\n", "\r\n"]), st.booleans())
def test_legacy_checksum_of_any_plausible_raw_form_matches(ls, then_end, then_bom, now_end, now_bom):
    """The old runner hashed the raw bytes (LF or CRLF, with or without BOM); the same text saved since in any of
    those forms still matches, so a CRLF file applied by it and converted to LF is not a change."""
    then = (BOM if then_bom else b"") + _join(ls, [then_end], then_end).encode()
    now = (BOM if now_bom else b"") + _join(ls, [now_end], now_end).encode()
    assert checksum_matches(hashlib.sha256(then).hexdigest(), _f(now))


@given(st.lists(line_text, min_size=1, max_size=8), line_text, st.sampled_from(["\n", "\r\n"]))
def test_legacy_checksum_of_other_content_does_not_match(ls, extra, end):
    """A legacy checksum of different content never matches, whatever the line ends."""
    assume(extra)
    then = _join(ls, [end], end).encode()
    now = _join([*ls, extra], [end], end).encode()
    assert not checksum_matches(hashlib.sha256(then).hexdigest(), _f(now))
    assert not checksum_matches(hashlib.sha256(then).hexdigest() + "\n", _f(then))
