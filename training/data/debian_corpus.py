"""The Debian photo corpus: ~1,000 real photos from 11 bookworm packages, fetched into ``vendor/``.

Why: distillation needs thousands of varied natural images and nothing may download at run
time; these packages (wallpapers, game and educational data) are installable offline from
the Debian mirror like any dependency. ``scripts/fetch_photos.py`` (``make photos``) runs
``build_corpus``: ``apt-get download`` each package into ``vendor/debs/``, ``dpkg-deb -x``
it into a temporary folder, pick the candidate images its ``PackageRule`` names (reading
GCompris' Qt ``.rcc`` bundles with ``training.data.qres``), keep those ``photo_filter``
accepts, drop exact duplicates, and write them as shipped (bytes unchanged) to
``vendor/photos/<package>/<path inside the package>`` with a manifest.

Each package is built into a temporary folder renamed into place when complete, so an
interrupted run leaves whole packages or nothing; a package whose folder already records
the same .deb version is skipped (idempotent). ``manifest.json`` (the union) is written last,
atomically: one entry per photo with file, package, version, path inside the package,
licence and copyright holder from the package's DEP-5 copyright file, and kind
(``scene`` | ``cutout``).
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import json
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from training.data.dep5 import licence_for, package_licences
from training.data.photo_filter import judge
from training.data.qres import QresArchive
from wire.atomicfile import write_json_atomic

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp")
MANIFEST = "manifest.json"
PACKAGE_MANIFEST = ".package.json"
RCC_SEPARATOR = "!/"  # "<bundle in the package>!/<path inside the bundle>"


@dataclass(frozen=True)
class PackageRule:
    """Where the photos of one package are and what kind they are.

    ``include`` maps fnmatch globs over installed paths to a kind (``scene``, ``cutout`` or
    ``auto`` = cut-out when transparent). ``rcc`` globs name Qt bundles whose image members
    are candidates (kind ``auto``). ``largest_per_dir``: keep only the biggest image of each
    folder (KDE wallpapers ship one picture in many resolutions).
    """

    package: str
    include: dict[str, str] = field(default_factory=dict)
    rcc: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    largest_per_dir: bool = False


_GC = "usr/share/gcompris-qt/rcc/"
_GCOMPRIS_BUNDLES = ("categorization", "explore_monuments", "explore_world_animals",
                     "explore_farm_animals", "explore_world_music", "erase", "leftright")  # fmt: skip
_OPENCV = "usr/share/doc/opencv-doc/examples/data/"
# the 10 of its 30 wallpapers that are photographs (checked by eye; the rest are renders
# or paintings rich enough in colour to pass the filter)
_PLASMA_PHOTOS = ("BytheWater", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf",
                  "Kite", "OneStandsOut", "Path", "Volna", "summer_1am")  # fmt: skip

PACKAGES: tuple[PackageRule, ...] = (
    PackageRule("endless-sky-data", {"usr/share/games/endless-sky/images/land/*": "scene"}),
    PackageRule("gcompris-qt-data", rcc=tuple(f"{_GC}{b}.rcc" for b in _GCOMPRIS_BUNDLES)),
    PackageRule("tuxpaint-stamps-default", {"usr/share/tuxpaint/stamps/*": "cutout"}),
    PackageRule("qabcs-data", {"usr/share/qabcs/abcs/all/pics/*": "cutout"}),
    PackageRule(
        "scratch",
        {
            "usr/share/scratch/Media/Costumes/*": "cutout",
            "usr/share/scratch/Media/Backgrounds/*": "scene",
        },
    ),
    PackageRule(
        "opencv-doc",
        {_OPENCV + "*": "scene"},
        # camera-calibration chessboards are not scenes
        exclude=(_OPENCV + "chessboard*", _OPENCV + "left[0-9]*", _OPENCV + "right[0-9]*"),
    ),
    PackageRule(
        "plasma-workspace-wallpapers",
        {f"usr/share/wallpapers/{w}/contents/images/*": "scene" for w in _PLASMA_PHOTOS},
        largest_per_dir=True,
    ),
    PackageRule("mate-backgrounds", {"usr/share/backgrounds/mate/nature/*": "scene"}),
    PackageRule("lomiri-wallpapers-16.04", {"usr/share/backgrounds/*": "scene"}),
    PackageRule("lomiri-wallpapers-20.04", {"usr/share/backgrounds/*": "scene"}),
    PackageRule("palapeli-data", {"usr/share/palapeli/collection/*": "scene"}),
)
PACKAGE_NAMES = tuple(r.package for r in PACKAGES)


class CorpusError(RuntimeError):
    """Fetching or extracting the corpus failed; the message says what to do."""


@dataclass(frozen=True)
class Candidate:
    """An image inside an extracted package (``inner``: path inside an .rcc bundle, or "")."""

    path_in_package: str
    kind: str
    load: Callable[[], bytes]
    inner: str = ""

    @property
    def name(self) -> str:
        return (
            f"{self.path_in_package}{RCC_SEPARATOR}{self.inner}"
            if self.inner
            else (self.path_in_package)
        )


@dataclass(frozen=True)
class PhotoEntry:
    """One manifest row."""

    file: str  # relative to the corpus root (vendor/photos)
    package: str
    version: str
    path_in_package: str  # "<bundle>!/<member>" for photos inside Qt bundles
    licence: str
    copyright: str
    kind: str  # scene | cutout
    width: int
    height: int
    colours: int
    sha256: str


def _is_image(path: str) -> bool:
    return path.lower().endswith(IMAGE_SUFFIXES)


def candidates(root: Path, rule: PackageRule) -> Iterator[Candidate]:
    """The images ``rule`` names inside the package extracted at ``root``, in a stable order."""
    files = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    picked: list[Candidate] = []
    for rel in files:
        if any(fnmatch.fnmatchcase(rel, x) for x in rule.exclude) or not _is_image(rel):
            continue
        kind = next((k for g, k in rule.include.items() if fnmatch.fnmatchcase(rel, g)), None)
        if kind is not None:
            picked.append(Candidate(rel, kind, (root / rel).read_bytes))
    if rule.largest_per_dir:
        best: dict[str, Candidate] = {}
        for c in picked:
            folder = c.path_in_package.rsplit("/", 1)[0]
            if folder not in best or _pixels(c) > _pixels(best[folder]):
                best[folder] = c
        picked = [c for c in picked if best[c.path_in_package.rsplit("/", 1)[0]] is c]
    yield from picked
    for rel in files:
        if any(fnmatch.fnmatchcase(rel, g) for g in rule.rcc):
            bundle = QresArchive.open(root / rel)
            for member in bundle.files():
                if _is_image(member.path):
                    load = lambda b=bundle, m=member: b.read(m)  # noqa: E731
                    yield Candidate(rel, "auto", load, member.path)


def _pixels(c: Candidate) -> int:
    with Image.open(io.BytesIO(c.load())) as img:
        return img.size[0] * img.size[1]


def select_photos(
    root: Path, rule: PackageRule, version: str, seen: set[str] | None = None
) -> list[tuple[PhotoEntry, bytes]]:
    """Candidates of one extracted package that pass the filter, with their manifest rows.

    ``seen`` holds content hashes already kept (from other packages): exact duplicates
    (the two lomiri packages share pictures) are kept once.
    """
    seen = set() if seen is None else seen
    stanzas = package_licences(root, rule.package)
    kept: list[tuple[PhotoEntry, bytes]] = []
    for c in candidates(root, rule):
        data = c.load()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            continue
        try:
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                verdict = judge(img, c.kind)  # type: ignore[arg-type]
                size = img.size
        except (OSError, UnidentifiedImageError, ValueError):
            continue  # not decodable by Pillow (e.g. an odd GIF): not a usable photo
        if not verdict.keep:
            continue
        seen.add(digest)
        lic_path = c.inner or c.path_in_package
        lic = licence_for(stanzas, lic_path, loose_suffix=bool(c.inner))
        rel = f"{rule.package}/{c.path_in_package}" + (f"/{c.inner}" if c.inner else "")
        entry = PhotoEntry(rel, rule.package, version, c.name, lic.licence, lic.copyright,
                           verdict.kind, size[0], size[1], verdict.colours, digest)  # fmt: skip
        kept.append((entry, data))
    return kept


# ---------------------------------------------------------------- apt + dpkg


def _run(cmd: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise CorpusError(
            f"{cmd[0]} not found: the photo corpus needs Debian's apt and dpkg"
        ) from None


def deb_version(deb: Path) -> str:
    out = _run(["dpkg-deb", "-f", str(deb), "Version"])
    if out.returncode != 0:
        raise CorpusError(f"{deb}: not a readable .deb ({out.stderr.strip()}); delete it and rerun")
    return out.stdout.strip()


def download(packages: Iterable[str], debs: Path) -> dict[str, Path]:
    """``apt-get download`` the packages not already in ``debs``; package -> .deb path."""
    debs.mkdir(parents=True, exist_ok=True)

    def present() -> dict[str, Path]:
        return {p.name.split("_", 1)[0]: p for p in sorted(debs.glob("*.deb"))}

    missing = [p for p in packages if p not in present()]
    if missing:
        out = _run(["apt-get", "download", *missing], cwd=debs)
        if out.returncode != 0:
            hint = ""
            if "Unable to locate" in out.stderr or "no installation candidate" in out.stderr:
                hint = " (the package lists look stale or empty: run `sudo apt-get update` once)"
            raise CorpusError(f"apt-get download {' '.join(missing)} failed{hint}:\n{out.stderr}")
    have = present()
    lost = [p for p in packages if p not in have]
    if lost:
        raise CorpusError(f"apt-get download did not produce {', '.join(lost)} in {debs}")
    return {p: have[p] for p in packages}


def extract(deb: Path, dest: Path) -> None:
    out = _run(["dpkg-deb", "-x", str(deb), str(dest)])
    if out.returncode != 0:
        raise CorpusError(f"dpkg-deb -x {deb} failed: {out.stderr.strip()}; delete it and rerun")


# ---------------------------------------------------------------- the whole build


def _package_done(out: Path, package: str, version: str) -> list[dict] | None:
    marker = out / package / PACKAGE_MANIFEST
    if not marker.is_file():
        return None
    rows = json.loads(marker.read_text())
    if rows.get("version") != version:
        return None
    if not all((out / r["file"]).is_file() for r in rows["photos"]):
        return None
    return rows["photos"]


def build_package(deb: Path, rule: PackageRule, out: Path, seen: set[str]) -> list[dict]:
    """Extract one .deb and write its kept photos to ``out/<package>`` (whole or not at all)."""
    version = deb_version(deb)
    if (done := _package_done(out, rule.package, version)) is not None:
        seen.update(r["sha256"] for r in done)
        return done
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{rule.package}.", dir=out) as tmp:
        root, staged = Path(tmp) / "x", Path(tmp) / "photos"
        extract(deb, root)
        kept = select_photos(root, rule, version, seen)
        for entry, data in kept:
            target = staged / Path(entry.file).relative_to(rule.package)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        rows = [asdict(e) for e, _ in kept]
        staged.mkdir(parents=True, exist_ok=True)
        write_json_atomic(staged / PACKAGE_MANIFEST, {"version": version, "photos": rows})
        final = out / rule.package
        if final.exists():
            shutil.rmtree(final)
        staged.rename(final)
    return rows


def build_corpus(
    vendor: Path,
    packages: tuple[str, ...] = PACKAGE_NAMES,
    progress: Callable[[Iterable], Iterable] = lambda it: it,
) -> dict:
    """Fetch, extract and filter ``packages`` into ``vendor/photos``; returns the manifest."""
    unknown = sorted(set(packages) - set(PACKAGE_NAMES))
    if unknown:
        raise CorpusError(f"unknown package(s) {unknown}; known: {', '.join(PACKAGE_NAMES)}")
    rules = {r.package: r for r in PACKAGES}
    debs = download(packages, vendor / "debs")
    out = vendor / "photos"
    seen: set[str] = set()
    photos: list[dict] = []
    for package in progress(packages):
        photos += build_package(debs[package], rules[package], out, seen)
    manifest = {
        "about": "real photos from Debian packages (see docs/data.md); licence per file",
        "count": len(photos),
        "photos": photos,
    }
    write_json_atomic(out / MANIFEST, manifest)
    return manifest


def counts(manifest: dict) -> dict[str, dict[str, int]]:
    """package -> {"scene": n, "cutout": m} of a manifest."""
    table: dict[str, dict[str, int]] = {}
    for row in manifest["photos"]:
        kinds = table.setdefault(row["package"], {"scene": 0, "cutout": 0})
        kinds[row["kind"]] += 1
    return table
