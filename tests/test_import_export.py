"""Importing class-folder and MVTec layouts, and the export round trip, on real files."""

from __future__ import annotations

import errno
import shutil
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from app.core import atomic
from app.core.errors import DiskFullError, LinesideError
from app.core.exporter import export_data
from app.core.importer import import_folder, labeled_files_with_masks
from app.core.project import OK, Project
from tests.store_fixtures import defect_mask, part_image, write_image

DATASET = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "magnetic-tile"


@pytest.fixture
def project(tmp_path: Path):
    with Project.create(tmp_path / "proj") as proj:
        yield proj


def _bad_files(folder: Path) -> None:
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n but then garbage")
    (folder / "notes.txt").write_text("not an image, ignored")


def make_class_folders(root: Path) -> dict[str, bytes]:
    """good/ (with a duplicate and bad files), Scratch/ with masks, dent/ without."""
    data = {
        "good/a.png": write_image(root / "good" / "a.png", part_image(1)),
        "good/b.jpg": write_image(root / "good" / "b.jpg", part_image(2)),
        "Scratch/s1.png": write_image(root / "Scratch" / "s1.png", part_image(3, defect=True)),
        "Scratch/s2.png": write_image(root / "Scratch" / "s2.png", part_image(4, defect=True)),
        "dent/d1.bmp": write_image(root / "dent" / "sub" / "d1.bmp", part_image(5, defect=True)),
    }
    shutil.copy(root / "good" / "a.png", root / "good" / "z-copy.png")  # same bytes
    _bad_files(root / "good")
    write_image(root / "masks" / "Scratch" / "s1.png", defect_mask())
    write_image(root / "masks" / "Scratch" / "s2.png", np.full((10, 10), 255, np.uint8))  # wrong size
    return data


def test_class_folders_import_with_bad_files_and_duplicate(project: Project, tmp_path: Path):
    source = tmp_path / "src"
    data = make_class_folders(source)
    progress: list[tuple[int, int]] = []
    report = import_folder(project, source, on_progress=lambda done, total: progress.append((done, total)))

    assert report.layout == "class-folders"
    assert (report.added, report.duplicates, report.labeled, report.masks) == (5, 1, 5, 1)
    skipped = dict(report.skipped)
    assert skipped[str(source / "good" / "empty.jpg")] == "the file is empty (0 bytes)."
    assert "not a readable image" in skipped[str(source / "good" / "corrupt.png")]
    assert "mask is 10x10 but the image is 64x48" in skipped[str(source / "masks" / "Scratch" / "s2.png")]
    assert len(report.skipped) == 3
    assert progress[-1] == (8, 8)

    assert project.label_counts() == {OK: 2, "Scratch": 2, "dent": 1, "unlabeled": 0}
    by_name = {r.filename: r for r in project.images()}
    assert set(by_name) == {"a.png", "b.jpg", "s1.png", "s2.png", "d1.bmp"}
    for key, raw in data.items():
        record = by_name[Path(key).name]
        assert record.path.read_bytes() == raw  # the original bytes, untouched
        assert record.tags == {"import_folder": key.split("/")[0]}
    s1 = project.label(by_name["s1.png"].id)
    assert s1.author == "import" and np.array_equal(project.load_mask(s1), defect_mask())
    assert project.label(by_name["s2.png"].id).mask_path is None


def test_importing_again_adds_nothing_and_keeps_changed_labels(project: Project, tmp_path: Path):
    source = tmp_path / "src"
    make_class_folders(source)
    import_folder(project, source)
    changed = next(r for r in project.images() if r.filename == "b.jpg")
    project.set_label(changed.id, "dent", author="anna")
    again = import_folder(project, source)
    assert (again.added, again.duplicates, again.labeled) == (0, 6, 0)
    assert project.label(changed.id).verdict == "dent"
    assert len(project.label_history(changed.id)) == 2


def test_mvtec_style_layouts_of_other_datasets(project: Project, tmp_path: Path):
    # VisA converted to the MVTec layout names its masks as its images (<stem>.png);
    # MVTec LOCO keeps more good parts in validation/good and paints each defect region
    # in a file of its own, in a folder named after the image.
    source = tmp_path / "breakfast_box"
    write_image(source / "train" / "good" / "000.png", part_image(1))
    write_image(source / "validation" / "good" / "000.png", part_image(2))
    write_image(source / "test" / "bad" / "000.JPG", part_image(3, defect=True))
    write_image(source / "ground_truth" / "bad" / "000.png", defect_mask())
    write_image(source / "test" / "logical_anomalies" / "001.png", part_image(4, defect=True))
    left, right = np.zeros((48, 64), np.uint8), np.zeros((48, 64), np.uint8)
    left[5:10, 5:10], right[30:40, 40:60] = 255, 255
    write_image(source / "ground_truth" / "logical_anomalies" / "001" / "000.png", left)
    write_image(source / "ground_truth" / "logical_anomalies" / "001" / "001.png", right)
    write_image(source / "test" / "logical_anomalies" / "002.png", part_image(5, defect=True))
    (source / "ground_truth" / "logical_anomalies" / "002").mkdir()  # a folder with no masks in it

    report = import_folder(project, source)
    assert report.layout == "mvtec" and (report.added, report.labeled, report.masks) == (5, 5, 2)
    assert any("no mask images" in why for _, why in report.skipped)
    assert project.label_counts(for_training=True) == {OK: 2, "unlabeled": 0}  # train/ and validation/ good
    masks = {r.filename: project.load_mask(project.label(r.id)) for r in project.images()
             if project.label(r.id).mask_path is not None}
    assert np.array_equal(masks["000.JPG"], defect_mask())
    assert np.array_equal(masks["001.png"], np.maximum(left, right))  # the regions joined
    # evaluate reads the test folder alone the same way.
    files = {path.name: mask for _, path, mask in labeled_files_with_masks(source / "test")[0]}
    assert files["000.JPG"].name == "000.png" and files["001.png"].is_dir()


def test_class_folders_nested_in_images_folder(project: Project, tmp_path: Path):
    source = tmp_path / "dataset"
    write_image(source / "images" / "good" / "g.png", part_image(1))
    write_image(source / "images" / "crack" / "c.png", part_image(2, defect=True))
    write_image(source / "masks" / "crack" / "c.png", defect_mask())
    write_image(source / "masks" / "good" / "g.png", np.zeros((48, 64), np.uint8))
    write_image(source / "loose.png", part_image(3))  # not in a class folder: no label
    (source / "split.csv").write_text("path,label\n")
    report = import_folder(project, source)
    assert (report.added, report.labeled, report.masks, report.skipped) == (3, 2, 1, [])
    assert project.label_counts() == {OK: 1, "crack": 1, "unlabeled": 1}
    assert project.images(unlabeled=True)[0].tags == {"import_folder": "dataset"}


def test_mvtec_layout(project: Project, tmp_path: Path):
    source = tmp_path / "bottle"
    write_image(source / "train" / "good" / "000.png", part_image(1))
    write_image(source / "train" / "good" / "001.png", part_image(2))
    _bad_files(source / "train" / "good")
    write_image(source / "test" / "good" / "001.png", part_image(3))
    shutil.copy(source / "train" / "good" / "000.png", source / "test" / "good" / "000.png")
    write_image(source / "test" / "broken_large" / "000.png", part_image(4, defect=True))
    write_image(source / "test" / "broken_large" / "001.png", part_image(5, defect=True))
    write_image(source / "ground_truth" / "broken_large" / "000_mask.png", defect_mask())
    (source / "license.txt").write_text("CC BY-NC-SA")

    report = import_folder(project, source)
    assert report.layout == "mvtec"
    assert (report.added, report.duplicates, report.labeled, report.masks) == (5, 1, 5, 1)
    assert sorted(Path(p).name for p, _ in report.skipped) == ["corrupt.png", "empty.jpg"]
    assert project.label_counts() == {OK: 3, "broken_large": 2, "unlabeled": 0}
    tags = sorted((r.tags["import_folder"], r.tags["mvtec_split"]) for r in project.images())
    assert tags == [("broken_large", "test")] * 2 + [("good", "test"), ("good", "train"), ("good", "train")]
    masked = [lab for _, lab in project.labeled() if lab.mask_path is not None]
    assert len(masked) == 1 and np.array_equal(project.load_mask(masked[0]), defect_mask())
    # The dataset's test images are held out; the one already imported from train/ stays there.
    splits = sorted((r.tags["mvtec_split"], r.split) for r in project.images())
    assert splits == [("test", "test")] * 3 + [("train", None)] * 2 and report.held_out == 3
    assert project.label_counts(for_training=True) == {OK: 2, "unlabeled": 0}
    # Read on its own, the test folder finds its masks in the dataset's ground_truth/.
    files = sorted((verdict, path.name, mask) for verdict, path, mask in labeled_files_with_masks(source / "test")[0])
    truth = (source / "ground_truth" / "broken_large" / "000_mask.png").absolute()
    assert files == [("broken_large", "000.png", truth), ("broken_large", "001.png", None),
                     (OK, "000.png", None), (OK, "001.png", None)]


def test_a_visa_style_folder_imports_with_its_masks(project: Project, tmp_path: Path):
    """Images/Normal, Images/Anomaly and Masks/Anomaly as some datasets spell them: the
    good parts are OK, the capitalised folders are found, the masks attach."""
    source = tmp_path / "Data"
    write_image(source / "Images" / "Normal" / "0001.JPG", part_image(1))
    write_image(source / "Images" / "Anomaly" / "0002.JPG", part_image(2, defect=True))
    write_image(source / "Masks" / "Anomaly" / "0002.png", defect_mask())
    report = import_folder(project, source)
    assert (report.added, report.labeled, report.masks, report.skipped) == (2, 2, 1, [])
    assert project.label_counts() == {OK: 1, "Anomaly": 1, "unlabeled": 0}


def test_masks_named_as_other_datasets_name_them_are_found(project: Project, tmp_path: Path):
    source = tmp_path / "src"
    names = {"a": "a_mask.png", "b": "B.bmp", "c": "c_label.tif", "d": "d.jpg"}  # a JPEG mask is not taken
    for i, (stem, mask_name) in enumerate(names.items()):
        write_image(source / "dent" / f"{stem}.png", part_image(20 + i, defect=True))
        ok, data = cv2.imencode(Path(mask_name).suffix, defect_mask())
        (source / "masks" / "dent").mkdir(parents=True, exist_ok=True)
        (source / "masks" / "dent" / mask_name).write_bytes(data.tobytes())
    files = {path.stem: mask and mask.name for _, path, mask in labeled_files_with_masks(source)[0]}
    assert files == {"a": "a_mask.png", "b": "B.bmp", "c": "c_label.tif", "d": None}
    assert import_folder(project, source).masks == 3


def test_images_with_their_masks_beside_them_are_labeled_by_the_masks(project: Project, tmp_path: Path):
    """KolektorSDD2 (train/10000.png + 10000_GT.png) and KolektorSDD (kos01/Part0.jpg +
    Part0_label.bmp): a painted mask makes a defect, an empty one an OK part."""
    source = tmp_path / "ksdd"
    blank = np.zeros_like(defect_mask())
    for i in range(4):
        write_image(source / "kos01" / f"Part{i}.png", part_image(30 + i, defect=i == 0))
        ok, data = cv2.imencode(".bmp", defect_mask() if i == 0 else blank)
        (source / "kos01" / f"Part{i}_label.bmp").write_bytes(data.tobytes())
    write_image(source / "train" / "10000.png", part_image(40, defect=True))
    write_image(source / "train" / "10000_GT.png", defect_mask())
    write_image(source / "train" / "10001.png", part_image(41))
    write_image(source / "train" / "10001_GT.png", blank)
    write_image(source / "train" / "stray.png", part_image(42))  # no mask: no label
    files = sorted((verdict, path.name, mask and mask.name) for verdict, path, mask in labeled_files_with_masks(source)[0])
    assert files == [("defect", "10000.png", "10000_GT.png"), ("defect", "Part0.png", "Part0_label.bmp"),
                     (OK, "10001.png", None), (OK, "Part1.png", None), (OK, "Part2.png", None), (OK, "Part3.png", None)]
    report = import_folder(project, source)
    assert report.layout == "mask-pairs" and (report.added, report.labeled, report.masks) == (7, 6, 2)
    assert project.label_counts() == {OK: 4, "defect": 2, "unlabeled": 1}


def test_a_jpeg_with_a_lossless_file_of_its_own_name_beside_it_is_an_image_and_its_mask(
        project: Project, tmp_path: Path):
    """Magnetic tile as its authors ship it: MT_Blowhole/Imgs/exp1_num_4.jpg beside
    exp1_num_4.png, good parts in MT_Free with empty masks."""
    source = tmp_path / "Magnetic-tile-defect-datasets."
    write_image(source / "MT_Blowhole" / "Imgs" / "exp1_num_4.jpg", part_image(50, defect=True))
    write_image(source / "MT_Blowhole" / "Imgs" / "exp1_num_4.png", defect_mask())
    # Among painted ones, an empty mask is doubted: it may be a defect its painter missed.
    write_image(source / "MT_Blowhole" / "Imgs" / "exp1_num_5.jpg", part_image(53, defect=True))
    write_image(source / "MT_Blowhole" / "Imgs" / "exp1_num_5.png", np.zeros_like(defect_mask()))
    write_image(source / "MT_Blowhole" / "Imgs" / "exp1_num_6.jpg", part_image(54, defect=True))
    write_image(source / "MT_Blowhole" / "Imgs" / "exp1_num_6.png", defect_mask())
    for i in range(2):
        write_image(source / "MT_Free" / "Imgs" / f"exp0_num_{i}.jpg", part_image(51 + i))
        write_image(source / "MT_Free" / "Imgs" / f"exp0_num_{i}.png", np.zeros_like(defect_mask()))
    # Two images of one name in formats that can both be photographs stay two images.
    write_image(source / "other" / "p.png", part_image(60))
    write_image(source / "other" / "p.bmp", part_image(61))
    files = sorted((verdict, path.name, mask and mask.name) for verdict, path, mask in labeled_files_with_masks(source)[0])
    assert files == [("defect", "exp1_num_4.jpg", "exp1_num_4.png"), ("defect", "exp1_num_6.jpg", "exp1_num_6.png"),
                     (OK, "exp0_num_0.jpg", None), (OK, "exp0_num_1.jpg", None)]
    report = import_folder(project, source)
    assert report.layout == "mask-pairs" and (report.added, report.labeled, report.masks) == (7, 4, 2)
    assert project.label_counts() == {OK: 2, "defect": 2, "unlabeled": 3}
    assert len(report.warnings) == 1 and report.warnings[0].startswith("1 image (the first: ")
    assert "exp1_num_5.jpg" in report.warnings[0] and "left unlabeled" in report.warnings[0]


@pytest.mark.parametrize("name, verdict", [("Normal", OK), ("defect-free", OK), ("Defect Free", OK),
                                           ("NO_DEFECT", OK), ("non-defective", OK), ("NOK", "NOK"),
                                           ("abnormal", "abnormal"), ("not ok", "not ok")])
def test_folders_that_mean_good_parts(project: Project, tmp_path: Path, name: str, verdict: str):
    write_image(tmp_path / "src" / name / "a.png", part_image(7))
    import_folder(project, tmp_path / "src")
    assert [lab.verdict for _, lab in project.labeled()] == [verdict]


def test_missing_or_unusable_source_names_it(project: Project, tmp_path: Path):
    with pytest.raises(LinesideError, match="nowhere"):
        import_folder(project, tmp_path / "nowhere")
    (tmp_path / "file.png").write_bytes(b"x")
    with pytest.raises(LinesideError, match="file.png"):
        import_folder(project, tmp_path / "file.png")
    assert project.images() == []


def test_export_round_trip_gives_the_same_labels(project: Project, tmp_path: Path):
    source = tmp_path / "src"
    make_class_folders(source)
    import_folder(project, source)
    relabeled = next(r for r in project.images() if r.filename == "a.png")
    project.set_label(relabeled.id, "dent", mask=defect_mask(), author="anna")
    extra, _ = project.add_image_array(part_image(9))  # unlabeled: not exported

    counts = export_data(project, tmp_path / "out")
    assert counts == {OK: 1, "Scratch": 2, "dent": 2, "masks": 2}
    sha8 = relabeled.sha256[:8]
    assert (tmp_path / "out" / "dent" / f"{sha8}_a.png").read_bytes() == relabeled.path.read_bytes()
    assert (tmp_path / "out" / "masks" / "dent" / f"{sha8}_a.png").is_file()

    with Project.create(tmp_path / "copy") as other:
        report = import_folder(other, tmp_path / "out")
        assert report.skipped == [] and report.added == 5

        def labels(p: Project) -> dict[str, tuple]:
            return {
                rec.sha256: (lab.verdict, None if lab.mask_path is None else p.load_mask(lab).tobytes())
                for rec, lab in p.labeled()
            }

        assert labels(other) == labels(project)
        assert other.find_image(extra.sha256) is None


def test_export_refuses_non_empty_or_inside_project(project: Project, tmp_path: Path):
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "keep.txt").write_text("mine")
    with pytest.raises(LinesideError, match="not empty"):
        export_data(project, tmp_path / "busy")
    with pytest.raises(LinesideError, match="inside the project"):
        export_data(project, project.path / "export")
    assert (tmp_path / "busy" / "keep.txt").read_text() == "mine"


def test_export_on_full_disk_leaves_no_half_files(project: Project, tmp_path: Path, monkeypatch):
    for seed in range(3):
        record, _ = project.add_image_array(part_image(seed))
        project.set_label(record.id, OK)

    def no_space(src, dst, *args, **kwargs):
        Path(dst).write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(atomic.shutil, "copyfile", no_space)
    with pytest.raises(DiskFullError, match="disk is full"):
        export_data(project, tmp_path / "out")
    assert [p for p in (tmp_path / "out").rglob("*") if p.is_file()] == []


@pytest.mark.dataset
@pytest.mark.skipif(not DATASET.is_dir(), reason="the magnetic-tile dataset is not present")
def test_real_dataset_imports_in_seconds(project: Project):
    started = time.monotonic()
    report = import_folder(project, DATASET)
    elapsed = time.monotonic() - started
    assert report.layout == "class-folders" and report.skipped == []
    assert report.added == report.labeled == 1344
    assert report.masks > 0
    counts = project.label_counts()
    assert counts[OK] == 952 and counts["unlabeled"] == 0 and len(counts) == 7
    assert elapsed < 45, f"import took {elapsed:.1f}s"
