"""The Debian photo corpus without network: Qt .rcc reader, photo filter, DEP-5 licences,
and a whole build from a .deb made here with dpkg-deb; plus a slow check of the real corpus."""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import zstandard
from PIL import Image

from training.data import debian_corpus as dc
from training.data.dep5 import licence_for, parse_dep5
from training.data.photo_filter import judge, thumbnail_colours
from training.data.qres import QresArchive, QresError

REPO = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- a tiny Qt rcc writer


def write_qres(files: dict[str, tuple[bytes, str]], version: int = 3) -> bytes:
    """Qt's binary resource layout (see training/data/qres.py), written independently here.

    ``files``: path -> (content, "none" | "zlib" | "zstd"). Directories are laid out
    breadth-first with each directory's children contiguous, as rcc does.
    """
    tree: dict = {}
    for path, spec in files.items():
        *dirs, leaf = path.split("/")
        node = tree
        for d in dirs:
            node = node.setdefault(d, {})
        node[leaf] = spec
    names, data = bytearray(), bytearray()
    name_at: dict[str, int] = {}

    def name_offset(name: str) -> int:
        if name not in name_at:
            name_at[name] = len(names)
            names.extend(struct.pack(">HI", len(name), 0) + name.encode("utf-16-be"))
        return name_at[name]

    entries: list[bytes] = []
    queue = [("", tree)]
    next_index = 1
    while queue:
        name, node = queue.pop(0)
        off = name_offset(name) if name else 0
        tail = struct.pack(">Q", 0) if version >= 2 else b""
        if isinstance(node, dict):
            entries.append(struct.pack(">IHII", off, 2, len(node), next_index) + tail)
            next_index += len(node)
            queue.extend(sorted(node.items()))
        else:
            content, comp = node
            flags = {"none": 0, "zlib": 1, "zstd": 4}[comp]
            if comp == "zlib":
                content = struct.pack(">I", len(content)) + zlib.compress(content)
            elif comp == "zstd":
                content = zstandard.ZstdCompressor().compress(content)
            entries.append(struct.pack(">IHHHI", off, flags, 0, 0, len(data)) + tail)
            data.extend(struct.pack(">I", len(content)) + content)
    header = 24 if version >= 3 else 20
    data_off = header
    names_off = data_off + len(data)
    tree_off = names_off + len(names)
    head = b"qres" + struct.pack(">IIII", version, tree_off, data_off, names_off)
    if version >= 3:
        head += struct.pack(">I", 0)
    return head + bytes(data) + bytes(names) + b"".join(entries)


FILES = {
    "a/readme.txt": (b"hello " * 50, "zlib"),
    "a/b/photo.webp": (bytes(range(256)) * 4, "none"),
    "a/b/other.png": (b"\x89PNG fake" * 30, "zstd"),
    "top.qml": (b"Item {}", "none"),
}


@pytest.mark.parametrize("version", [1, 2, 3])
def test_qres_reads_every_file_and_compression(version: int) -> None:
    archive = QresArchive(write_qres(FILES, version))
    got = dict(archive)
    assert got == {p: c for p, (c, _) in FILES.items()}
    kinds = {f.path: f.compression for f in archive.files()}
    assert kinds == {p: comp for p, (_, comp) in FILES.items()}


def test_qres_damage_is_a_clear_error() -> None:
    blob = write_qres(FILES)
    with pytest.raises(QresError, match="not a Qt resource bundle"):
        QresArchive(b"PK\x03\x04" + blob[4:])
    with pytest.raises(QresError, match="runs past the end"):
        QresArchive(blob[:-10]).files()
    bad = bytearray(blob)
    archive = QresArchive(bytes(bad))
    zl = next(f for f in archive.files() if f.compression == "zlib")
    at = archive.payload + zl.data_offset + 4 + 4  # past the stored and the inflated length
    bad[at : at + 4] = b"\xff\xff\xff\xff"
    with pytest.raises(QresError, match="cannot inflate"):
        QresArchive(bytes(bad)).read(zl)


def _rcc() -> str | None:
    for cand in ("rcc", "/usr/lib/qt5/bin/rcc", "/usr/lib/qt6/libexec/rcc"):
        if shutil.which(cand):
            return shutil.which(cand)
    return None


@pytest.mark.skipif(_rcc() is None, reason="Qt's rcc not installed (Debian qtbase5-dev-tools)")
def test_qres_reads_what_qt_rcc_writes(tmp_path: Path) -> None:
    (tmp_path / "img").mkdir()
    big = b"compressible " * 400
    (tmp_path / "img" / "big.txt").write_bytes(big)
    (tmp_path / "img" / "noise.bin").write_bytes(np.random.default_rng(0).bytes(3000))
    (tmp_path / "r.qrc").write_text(
        '<RCC><qresource prefix="/p"><file>img/big.txt</file><file>img/noise.bin</file>'
        "</qresource></RCC>"
    )
    out = tmp_path / "r.rcc"
    subprocess.run([_rcc(), "--binary", "r.qrc", "-o", str(out)], cwd=tmp_path, check=True)
    archive = QresArchive.open(out)
    got = dict(archive)
    assert got["p/img/big.txt"] == big
    assert got["p/img/noise.bin"] == (tmp_path / "img" / "noise.bin").read_bytes()
    assert {f.path: f.compression for f in archive.files()}["p/img/big.txt"] == "zlib"


# ---------------------------------------------------------------- the photo filter


def photo_like(w: int, h: int, seed: int = 0, alpha: bool = False) -> Image.Image:
    rng = np.random.default_rng(seed)
    px = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    img = Image.fromarray(px)
    if alpha:
        a = np.zeros((h, w), np.uint8)
        a[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4] = 255  # opaque object, transparent border
        img.putalpha(Image.fromarray(a))
    return img


def drawing(w: int, h: int) -> Image.Image:
    img = Image.new("RGB", (w, h), "white")
    img.paste((200, 30, 30), (10, 10, w // 2, h // 2))
    return img


def test_filter_keeps_photos_and_drops_drawings_and_small_images() -> None:
    assert judge(photo_like(300, 220)).keep
    v = judge(drawing(800, 600))
    assert not v.keep and "colours" in v.reason
    v = judge(photo_like(300, 199))
    assert not v.keep and "shorter side 199" in v.reason
    assert thumbnail_colours(drawing(400, 400)) < 50  # flat areas + blended edges


def test_filter_cutouts_by_alpha_and_longer_side() -> None:
    v = judge(photo_like(180, 120, alpha=True))  # shorter side < 200 is fine for a cut-out
    assert v.keep and v.kind == "cutout"
    v = judge(photo_like(140, 140, alpha=True))
    assert not v.keep and "longer side 140" in v.reason
    # transparent pixels do not count as colours
    assert thumbnail_colours(photo_like(128, 128, alpha=True)) <= 64 * 64


# ---------------------------------------------------------------- DEP-5 licences

COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: 2020 Upstream
License: GPL-2+

Files: images/land/*
Copyright: Various
License: public-domain
 Taken from a photo collection.

Files:
 images/land/bwerner*
 images/land/other.jpg
Copyright: Berthold Werner
License: CC-BY-SA-3.0

Files: 16.04/Bridge_by_S.jpg
Copyright: S
License: CC-BY-4.0

Files: src/fish1.jpg
Copyright: F
License: CC-BY-2.0

Files: debian/*
License: GPL-2+
"""


def test_dep5_last_matching_paragraph_wins_on_installed_paths() -> None:
    st = parse_dep5(COPYRIGHT)
    base = "usr/share/games/x/images/land/"
    assert licence_for(st, base + "beach.jpg").licence == "public-domain"
    lic = licence_for(st, base + "bwerner-castle.jpg")
    assert (lic.licence, lic.copyright) == ("CC-BY-SA-3.0", "Berthold Werner")
    assert licence_for(st, "usr/share/doc/x/README").licence == "GPL-2+"
    # exact file named under another folder than the installed one
    assert licence_for(st, "usr/share/backgrounds/Bridge_by_S.jpg").licence == "CC-BY-4.0"
    # converted at build time: .jpg source shipped as .webp
    assert licence_for(st, "gcompris/src/fish1.webp").licence == "GPL-2+"
    assert licence_for(st, "gcompris/src/fish1.webp", loose_suffix=True).licence == "CC-BY-2.0"


# ---------------------------------------------------------------- a whole build from a real .deb

PKG_COPYRIGHT = """Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/

Files: *
Copyright: KDE
License: GPL-2+

Files: collection/bee.jpg
Copyright: A Photographer
License: CC-BY-SA-3.0
"""


def make_deb(tmp: Path, package: str, version: str) -> Path:
    """A real .deb (dpkg-deb --build) holding two photos, a drawing and the copyright file."""
    root = tmp / "pkgroot"
    col = root / "usr/share/palapeli/collection"
    col.mkdir(parents=True)
    photo_like(320, 240, seed=1).save(col / "bee.jpg", quality=95)
    photo_like(260, 300, seed=2).save(col / "bridge.png")
    photo_like(260, 300, seed=2).save(col / "bridge-copy.png")  # same bytes: kept once
    drawing(400, 300).save(col / "logo.png")
    (col / "bee.desktop").write_text("[Desktop Entry]\n")
    doc = root / f"usr/share/doc/{package}"
    doc.mkdir(parents=True)
    (doc / "copyright").write_text(PKG_COPYRIGHT)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text(
        f"Package: {package}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: test <t@example.org>\nDescription: test photos\n"
    )
    debs = tmp / "vendor/debs"
    debs.mkdir(parents=True)
    deb = debs / f"{package}_{version}_all.deb"
    subprocess.run(["dpkg-deb", "--build", "-Zgzip", str(root), str(deb)], check=True,
                   capture_output=True)  # fmt: skip
    return deb


needs_dpkg = pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="dpkg-deb not installed")


@needs_dpkg
def test_build_corpus_from_a_deb_writes_photos_and_manifest(tmp_path: Path) -> None:
    make_deb(tmp_path, "palapeli-data", "1:9.9-1")
    vendor = tmp_path / "vendor"
    manifest = dc.build_corpus(vendor, ("palapeli-data",))
    rows = {Path(r["file"]).name: r for r in manifest["photos"]}
    assert sorted(rows) == ["bee.jpg", "bridge-copy.png"]  # bridge.png: same bytes, once
    bee = rows["bee.jpg"]
    assert bee["package"] == "palapeli-data" and bee["version"] == "1:9.9-1"
    assert bee["path_in_package"] == "usr/share/palapeli/collection/bee.jpg"
    assert (bee["licence"], bee["copyright"]) == ("CC-BY-SA-3.0", "A Photographer")
    assert bee["kind"] == "scene" and (bee["width"], bee["height"]) == (320, 240)
    other = next(r for n, r in rows.items() if n != "bee.jpg")
    assert other["licence"] == "GPL-2+"
    # bytes as shipped, and the manifest on disk is the returned one
    src = tmp_path / "pkgroot/usr/share/palapeli/collection/bee.jpg"
    assert (vendor / "photos" / bee["file"]).read_bytes() == src.read_bytes()
    assert json.loads((vendor / "photos/manifest.json").read_text()) == manifest
    assert dc.counts(manifest) == {"palapeli-data": {"scene": 2, "cutout": 0}}
    # no temporary folders left behind
    assert sorted(p.name for p in (vendor / "photos").iterdir()) == [
        "manifest.json",
        "palapeli-data",
    ]


@needs_dpkg
def test_build_corpus_is_idempotent_and_rebuilds_a_damaged_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_deb(tmp_path, "palapeli-data", "2.0")
    vendor = tmp_path / "vendor"
    first = dc.build_corpus(vendor, ("palapeli-data",))
    calls: list[Path] = []
    real_extract = dc.extract
    monkeypatch.setattr(
        dc, "extract", lambda deb, dest: (calls.append(deb), real_extract(deb, dest))
    )
    assert dc.build_corpus(vendor, ("palapeli-data",)) == first
    assert calls == []  # same version already built: nothing extracted again
    (vendor / "photos" / first["photos"][0]["file"]).unlink()
    assert dc.build_corpus(vendor, ("palapeli-data",)) == first
    assert len(calls) == 1  # a missing photo makes that package rebuild


def test_cli_names_unknown_package_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts/fetch_photos.py"), "--vendor",
         str(tmp_path), "--packages", "no-such-pkg", "--no-progress"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "unknown package(s) ['no-such-pkg']" in proc.stderr
    assert not (tmp_path / "photos").exists()


def test_opencv_chessboards_are_excluded(tmp_path: Path) -> None:
    rule = next(r for r in dc.PACKAGES if r.package == "opencv-doc")
    data = tmp_path / "usr/share/doc/opencv-doc/examples/data"
    data.mkdir(parents=True)
    for name in ("left01.jpg", "right13.jpg", "chessboard.png", "baboon.jpg", "fruits.jpg"):
        (data / name).write_bytes(b"")
    names = [Path(c.path_in_package).name for c in dc.candidates(tmp_path, rule)]
    assert names == ["baboon.jpg", "fruits.jpg"]


# ---------------------------------------------------------------- the real corpus (slow)

REAL = REPO / "vendor/photos/manifest.json"


@pytest.mark.slow
@pytest.mark.skipif(not REAL.is_file(), reason="Debian photo corpus not fetched (run make photos)")
def test_real_corpus_manifest_matches_files() -> None:
    manifest = json.loads(REAL.read_text())
    rows = manifest["photos"]
    assert manifest["count"] == len(rows) >= 900
    assert set(dc.counts(manifest)) == set(dc.PACKAGE_NAMES)
    assert len({r["sha256"] for r in rows}) == len(rows)
    for r in rows[:: max(1, len(rows) // 60)]:  # decode a spread of them
        with Image.open(REPO / "vendor/photos" / r["file"]) as img:
            assert img.size == (r["width"], r["height"])
            assert judge(img, r["kind"]).keep
    assert sum(r["licence"] == "unknown" for r in rows) == 0
    gcompris = [r for r in rows if r["package"] == "gcompris-qt-data"]
    assert len(gcompris) >= 150 and all("!/" in r["path_in_package"] for r in gcompris)
