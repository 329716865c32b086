"""Hypothesis strategies for hostile text: what a provider, a webhook or a source table may hold.

NUL, lone surrogates, right-to-left marks, emoji and other astral characters, C0/C1 controls,
combining marks, and very long strings (up to 1 MB) -- mixed with ordinary text.
"""

from __future__ import annotations

from hypothesis import strategies as st

NUL = "\x00"
PIECES = (
    NUL,
    "\u202e",  # right-to-left override
    "\u200f",  # right-to-left mark
    "\u2066\u2069",  # isolates
    "😀",
    "👩‍👩‍👧",  # a ZWJ sequence
    "\U0010fffd",  # the last plane
    "\x01\x07\x1b\x7f",
    "\x85\x9f",  # C1 controls
    "e\u0301",  # combining accent
    "\ufeff",  # BOM
    "\\",
    "'\"%_;--",
    "\t\r\n",
    "ß",
)
SURROGATES = ("\ud800", "\udfff", "\udbff")


def hostile_text(
    *, surrogates: bool = False, huge: bool = True, nul: bool = True
) -> st.SearchStrategy[str]:
    """Short hostile strings, and (with ``huge``) strings of about 1 MB."""
    pieces = [p for p in PIECES if nul or NUL not in p]
    if surrogates:
        pieces += SURROGATES
    short = st.lists(
        st.one_of(st.sampled_from(pieces), st.text(max_size=8)), min_size=1, max_size=8
    ).map("".join)
    if not nul:
        short = short.map(lambda s: s.replace(NUL, ""))
    if not surrogates:
        short = short.map(lambda s: s.encode("utf-8", "replace").decode("utf-8"))
    if not huge:
        return short
    big = st.sampled_from([p for p in pieces if p]).map(
        lambda p: ("ok" + p) * (1_000_000 // (len(p) + 2))
    )
    return st.one_of(short, short, short, big)
