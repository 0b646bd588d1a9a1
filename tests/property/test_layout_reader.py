"""The importer's layout reader over random trees of class folders, masks and strays.

Whatever the tree, every image file under a usable class folder is listed exactly once
with its folder's verdict (good/ok/pass in any case: OK), a folder whose name cannot be
a class is skipped with a reason, and nothing else is listed: no stray file, no hidden
file or folder, no image lying loose in the source (those are imported unlabeled), no
file of the mask tree. A defect image gets its mask exactly when masks/<class>/<stem>.png
exists; OK parts never do.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.core.importer import labeled_files, labeled_files_with_masks
from app.core.project_labels import means_ok
from app.core.records import OK

CLASS_NAMES = ["good", "OK", "Pass", "ok", "Normal", "defect-free", "NOK", "scratch", "Dent", "chip", "bad:name",
               "a*b", "masks-x", "Crack 2"]
IMAGE_SUFFIXES = [".png", ".PNG", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".pgm", ".ppm"]
STRAY_NAMES = ["notes.txt", "Thumbs.db", "data.csv", ".hidden.png", ".DS_Store", "README", "scan.pdf", "x.png.bak"]
BAD_CLASS_NAMES = {"bad:name", "a*b"}

stems = st.text(alphabet="abcdefghij0123456789_-", min_size=1, max_size=6)
image_names = st.builds(lambda stem, suffix: stem + suffix, stems, st.sampled_from(IMAGE_SUFFIXES))
files = st.lists(st.one_of(image_names, st.sampled_from(STRAY_NAMES)), max_size=6, unique_by=str.lower)
class_folder = st.fixed_dictionaries({
    "files": files,
    "sub": st.dictionaries(st.sampled_from(["batch1", "day 2", ".cache"]), files, max_size=2),
    "masked": st.lists(stems, max_size=3),  # stems that get a mask file
})  # fmt: skip
trees = st.fixed_dictionaries({
    "classes": st.dictionaries(st.sampled_from(CLASS_NAMES), class_folder, max_size=5),
    "loose": files,  # lying in the source itself
    "hidden": files,  # in a hidden folder .thumbs/
})  # fmt: skip


def _write(folder: Path, names: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in names:
        (folder / name).write_bytes(b"x")  # the reader lists files; it does not decode them


def _build(root: Path, tree: dict) -> tuple[dict[Path, str], dict[Path, Path], set[str]]:
    """Writes the tree; returns (image -> expected verdict, image -> expected mask, bad folders)."""
    expected: dict[Path, str] = {}
    masks: dict[Path, Path] = {}
    bad: set[str] = set()
    _write(root, tree["loose"])
    _write(root / ".thumbs", tree["hidden"])
    for name, spec in tree["classes"].items():
        folder = root / name
        _write(folder, spec["files"])
        for sub, names in spec["sub"].items():
            _write(folder / sub, names)
        verdict = OK if means_ok(name) else name
        if name in BAD_CLASS_NAMES:
            bad.add(str(folder))
            continue
        found = [folder / n for n in spec["files"]]
        found += [folder / sub / n for sub, names in spec["sub"].items() if not sub.startswith(".") for n in names]
        for path in found:
            if not path.name.startswith(".") and path.suffix.lower() in {s.lower() for s in IMAGE_SUFFIXES}:
                expected[path] = verdict
        for stem in spec["masked"]:
            mask = root / "masks" / name / f"{stem}.png"
            _write(mask.parent, [mask.name])
        if verdict != OK:
            for path in [p for p in expected if p.parent.is_relative_to(folder)]:
                mask = root / "masks" / name / f"{path.stem}.png"
                if mask.is_file():
                    masks[path] = mask
    return expected, masks, bad


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(trees)
def test_every_image_is_listed_once_or_its_folder_skipped(tree: dict):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "src"
        expected, masks, bad = _build(root, tree)

        files, skipped = labeled_files_with_masks(root)

        listed = [path for _, path, _ in files]
        assert len(listed) == len(set(listed)), "an image listed twice"
        assert {path: verdict for verdict, path, _ in files} == expected
        assert {path: mask for _, path, mask in files if mask is not None} == masks
        assert {path for path, _ in skipped} == bad
        assert all(reason for _, reason in skipped)
        assert labeled_files(root) == ([(v, p) for v, p, _ in files], skipped)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.sampled_from(["good", "GOOD", "Ok", "pass", "PASS", "oK", "Normal", "defect-free", "No Defect"]),
                min_size=1, max_size=3, unique=True),
       st.lists(stems, min_size=1, max_size=3, unique=True))
def test_good_ok_and_pass_in_any_case_are_ok(folders: list[str], names: list[str]):
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "src"
        for folder in folders:
            _write(root / folder, [f"{n}.png" for n in names])
        files, skipped = labeled_files(root)
        assert skipped == []
        assert len(files) == len(folders) * len(names)
        assert {verdict for verdict, _ in files} == {OK}
