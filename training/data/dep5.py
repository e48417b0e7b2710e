"""Licence of one installed file, from its package's machine-readable ``debian/copyright`` (DEP-5).

Why: the Debian photo corpus mixes public-domain, CC-BY, CC-BY-SA and GPL images inside one
package (endless-sky's landscapes alone carry five licences). Attribution and share-alike
duties follow each photo, so the manifest records the licence of *that* file, not a
package-wide guess.

DEP-5 ``Files:`` globs name upstream source paths (``images/land/bwerner*``), while we hold
installed paths (``usr/share/games/endless-sky/images/land/bwerner-x.jpg``), so a pattern
matches when it matches a trailing part of the installed path; as DEP-5 says, the last
matching paragraph wins. ``*`` matches across ``/`` as in DEP-5. With ``loose_suffix`` the
file extension is ignored (GCompris converted its ``.jpg`` sources to ``.webp`` at build time).
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class CopyrightStanza:
    files: tuple[str, ...]
    licence: str
    copyright: str


@dataclass(frozen=True)
class Licence:
    licence: str
    copyright: str
    matched: str  # the Files: pattern that decided it ("" = no paragraph matched)


def parse_dep5(text: str) -> list[CopyrightStanza]:
    """The ``Files:`` paragraphs of a DEP-5 copyright file (first line of License/Copyright)."""
    stanzas: list[CopyrightStanza] = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, list[str]] = {}
        key = None
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and key is not None:
                fields[key].append(line.strip())
            elif ":" in line:
                key, value = line.split(":", 1)
                key = key.strip().lower()
                fields[key] = [value.strip()]
        if "files" not in fields:
            continue
        files = tuple(" ".join(fields["files"]).split())
        licence = fields.get("license", [""])[0] or "unknown"
        holders = [h for h in fields.get("copyright", []) if h and h != "."]
        stanzas.append(CopyrightStanza(files, licence, "; ".join(holders)))
    return stanzas


def _strip_suffix(p: str) -> str:
    head, _, tail = p.rpartition("/")
    stem = tail.rsplit(".", 1)[0] if "." in tail else tail
    return f"{head}/{stem}" if head else stem


def _matches(pattern: str, path: str, loose_suffix: bool) -> bool:
    if loose_suffix and not pattern.endswith("*"):
        pattern, path = _strip_suffix(pattern), _strip_suffix(path)
    return fnmatch.fnmatchcase(path, pattern) or fnmatch.fnmatchcase(path, "*/" + pattern)


def licence_for(
    stanzas: list[CopyrightStanza], path: str, *, loose_suffix: bool = False
) -> Licence:
    """The licence of installed ``path`` (last matching paragraph wins, as in DEP-5)."""
    found = Licence("unknown", "", "")
    for st in stanzas:
        for pattern in st.files:
            if pattern.startswith("debian/"):
                continue  # packaging files, never installed content
            if _matches(pattern, path, loose_suffix):
                found = Licence(st.licence, st.copyright, pattern)
    if found.matched in ("", "*"):
        # A paragraph naming exactly this file, under another folder than the installed one
        # (lomiri: "16.04/Bridge_by_X.jpg" installed as usr/share/backgrounds/Bridge_by_X.jpg),
        # is more specific than the catch-all.
        base = path.rsplit("/", 1)[-1]
        for st in stanzas:
            for pattern in st.files:
                if not any(c in pattern for c in "*?[") and pattern.rsplit("/", 1)[-1] == base:
                    found = Licence(st.licence, st.copyright, pattern)
    return found


def package_licences(root: Path, package: str) -> list[CopyrightStanza]:
    """Parse ``usr/share/doc/PACKAGE/copyright`` of an extracted package."""
    path = root / "usr" / "share" / "doc" / package / "copyright"
    if not path.is_file():
        raise FileNotFoundError(f"{package}: no {path.relative_to(root)} in the package")
    return parse_dep5(path.read_text(encoding="utf-8", errors="replace"))
