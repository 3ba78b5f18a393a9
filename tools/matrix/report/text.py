"""Text from tests made safe to show: invisible and direction-changing characters made visible."""

from __future__ import annotations

import re

# C0/C1 controls (terminal escapes, NUL, ...) except tab and line breaks, which each format handles its
# own way; bidi overrides/isolates/marks (U+202A-U+202E, U+2066-U+2069, U+200E/F, U+061C: "Trojan
# Source" reordering), zero-width characters, line/paragraph separators and the BOM.
_INVISIBLE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def _escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


def visible(text: str) -> str:
    """`text` with each such character written as its escape, e.g. U+202E as `\\u202e`."""
    # Every character escaped here is non-printable (Unicode categories Cc, Cf, Zl, Zp): most test
    # names and messages pass this C-speed check and are returned as they are.
    return text if text.isprintable() else _INVISIBLE.sub(_escape, text)
