"""Tests of the CelebA and CelebA-HQ readers on generated and hand-written files, and on the real data."""

from __future__ import annotations

import functools
import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from faceattr.attributes import ATTRIBUTE_INDEX, ATTRIBUTES
from faceattr.config import SourceConfig
from faceattr.data.readers.celeba import read_celeba
from faceattr.data.readers.celebahq import read_celebahq
from faceattr.data.sources import read_source
from faceattr.errors import DatasetError
from faceattr.synthetic.fixtures import make_celeba

# ---- hand-written CelebA-format files -----------------------------------------------------------

def write_celeba(root: Path, rows: list[str], names: list[str] = ATTRIBUTES, count: int | None = None,
                 images: list[str] | None = None, newline: str = "\r\n") -> Path:
    """A CelebA folder with the given attribute rows, every image in train and person 1."""
    root.mkdir(parents=True, exist_ok=True)
    lines = [str(len(rows) if count is None else count), " ".join(names), *rows]
    (root / "list_attr_celeba.txt").write_bytes((newline.join(lines) + newline).encode())
    image_names = [row.split()[0] for row in rows if row.split()]
    (root / "list_eval_partition.txt").write_text("".join(f"{n} 0\n" for n in image_names))
    (root / "identity_CelebA.txt").write_text("".join(f"{n} 1\n" for n in image_names))
    (root / "img_align_celeba").mkdir(exist_ok=True)
    for name in image_names if images is None else images:
        (root / "img_align_celeba" / name).touch()
    return root


def row(name: str, values: list[int] | None = None, spacing: str = " ") -> str:
    values = values if values is not None else [1] * len(ATTRIBUTES)
    return name + spacing + spacing.join(f"{v:2d}" for v in values)


def attribute_table(root: Path) -> dict[str, list[int]]:
    lines = (root / "list_attr_celeba.txt").read_text().splitlines()[2:]
    return {line.split()[0]: [int(v) for v in line.split()[1:]] for line in lines}


# ---- CelebA ------------------------------------------------------------------------------------

def test_celeba_labels_match_the_attribute_file(celeba_root: Path) -> None:
    table = attribute_table(celeba_root)
    result = read_celeba(celeba_root)
    assert result.source == "celeba" and result.records
    for record in result.records:
        assert record.source == "celeba"
        assert np.array_equal(record.attributes, np.array(table[record.path.name]) == 1)
        assert record.attribute_mask.all()


def test_celeba_counts_rows_whose_image_is_missing(celeba_root: Path) -> None:
    present = {p.name for p in (celeba_root / "img_align_celeba").iterdir()}
    result = read_celeba(celeba_root)
    assert {r.path.name for r in result.records} == present
    assert result.missing_images == 30 - len(present) > 0


def test_celeba_split_and_group_come_from_partition_and_identity_files(celeba_root: Path) -> None:
    codes = dict(line.split() for line in (celeba_root / "list_eval_partition.txt").read_text().splitlines())
    people = dict(line.split() for line in (celeba_root / "identity_CelebA.txt").read_text().splitlines())
    for record in read_celeba(celeba_root).records:
        assert record.split == {"0": "train", "1": "val", "2": "test"}[codes[record.path.name]]
        assert record.group == f"celeba-id:{people[record.path.name]}"


def test_celeba_zero_is_an_unknown_label(tmp_path: Path) -> None:
    values = [1] * 40
    values[ATTRIBUTE_INDEX["Smiling"]] = 0
    values[ATTRIBUTE_INDEX["Male"]] = -1
    (record,) = read_celeba(write_celeba(tmp_path, [row("000001.jpg", values)])).records
    assert not record.attribute_mask[ATTRIBUTE_INDEX["Smiling"]]
    assert record.attribute_mask.sum() == 39
    assert record.attributes[ATTRIBUTE_INDEX["Male"]] == 0.0 and record.attributes[ATTRIBUTE_INDEX["Young"]] == 1.0


def test_celeba_columns_map_by_name_in_any_order_or_subset(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, ["000001.jpg  1 -1"], names=["Young", "Bald"])
    (record,) = read_celeba(root).records
    assert record.attributes[ATTRIBUTE_INDEX["Young"]] == 1.0 and record.attributes[ATTRIBUTE_INDEX["Bald"]] == 0.0
    assert set(np.flatnonzero(record.attribute_mask)) == {ATTRIBUTE_INDEX["Young"], ATTRIBUTE_INDEX["Bald"]}


def test_celeba_reads_crlf_and_lf_files_with_runs_of_spaces_alike(tmp_path: Path) -> None:
    rows = [row("000001.jpg", [1, -1] * 20, spacing="   "), row("000002.jpg", [-1, 1] * 20)]
    crlf = read_celeba(write_celeba(tmp_path / "crlf", rows, newline="\r\n")).records
    lf = read_celeba(write_celeba(tmp_path / "lf", rows, newline="\n")).records
    assert [r.path.name for r in crlf] == [r.path.name for r in lf] == ["000001.jpg", "000002.jpg"]
    assert all(np.array_equal(a.attributes, b.attributes) for a, b in zip(crlf, lf))
    assert crlf[0].attributes[0] == 1.0 and crlf[0].attributes[1] == 0.0


def test_celeba_row_with_wrong_field_count_names_its_line(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, [row("000001.jpg"), "000002.jpg 1 -1", row("000003.jpg")])
    with pytest.raises(DatasetError, match="expected 41 fields") as error:
        read_celeba(root)
    assert error.value.line == 4 and error.value.path == root / "list_attr_celeba.txt"


def test_celeba_value_outside_1_minus1_0_names_its_line(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, [row("000001.jpg"), row("000002.jpg", [1] * 39 + [2])])
    with pytest.raises(DatasetError, match="'2' is not 1, -1 or 0") as error:
        read_celeba(root)
    assert error.value.line == 4


def test_celeba_skip_mode_counts_and_warns_about_bad_rows(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_celeba(tmp_path, [row("000001.jpg"), "000002.jpg 1", row("000003.jpg", [5] * 40), row("000004.jpg")])
    with caplog.at_level(logging.WARNING):
        result = read_celeba(root, on_bad_row="skip")
    assert [r.path.name for r in result.records] == ["000001.jpg", "000004.jpg"]
    assert result.bad_rows == 2
    assert "line 4" in caplog.text and "line 5" in caplog.text


def test_celeba_unknown_attribute_name_is_named_with_its_line(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, ["000001.jpg 1 1"], names=["Young", "Wearing_Glasses"])
    with pytest.raises(DatasetError, match="unknown attribute name 'Wearing_Glasses'") as error:
        read_celeba(root)
    assert error.value.line == 2 and error.value.path.name == "list_attr_celeba.txt"


def test_celeba_count_line_that_disagrees_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = read_celeba(write_celeba(tmp_path, [row("000001.jpg")], count=7))
    assert len(result.records) == 1
    assert "line 1 says 7 rows, the file has 1" in caplog.text


def test_celeba_missing_label_file_shows_the_expected_layout(celeba_root: Path, tmp_path: Path) -> None:
    shutil.copytree(celeba_root, tmp_path / "c")
    (tmp_path / "c" / "list_eval_partition.txt").unlink()
    with pytest.raises(DatasetError, match="file not found; expected layout") as error:
        read_celeba(tmp_path / "c")
    assert "list_eval_partition.txt" in str(error.value) and "img_align_celeba/" in str(error.value)


def test_celeba_missing_image_folder_shows_the_expected_layout(celeba_root: Path) -> None:
    with pytest.raises(DatasetError, match="image folder not found; expected layout") as error:
        read_celeba(celeba_root, images="img_align_celeba_89x109")
    assert error.value.path == celeba_root / "img_align_celeba_89x109"


def test_celeba_in_the_wild_folder_asks_for_alignment(celeba_root: Path) -> None:
    with pytest.raises(DatasetError, match="tools/align_dataset.py"):
        read_celeba(celeba_root, images="img_celeba")


def test_celeba_half_size_folder_reads_like_the_full_size_one(tmp_path: Path) -> None:
    root = make_celeba(tmp_path, identities=3, images_per_identity=2, size=(89, 109))
    records = read_celeba(root, images="img_align_celeba_89x109").records
    assert len(records) == 6 and records[0].path.parent.name == "img_align_celeba_89x109"


def test_celeba_without_identities_groups_by_image_and_warns(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = write_celeba(tmp_path, [row("000001.jpg"), row("000002.jpg")])
    (root / "identity_CelebA.txt").unlink()
    with caplog.at_level(logging.WARNING):
        records = read_celeba(root).records
    assert [r.group for r in records] == ["celeba-img:000001.jpg", "celeba-img:000002.jpg"]
    assert "identity_CelebA.txt not found" in caplog.text


def test_celeba_image_without_a_partition_row_is_a_bad_row(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, [row("000001.jpg"), row("000002.jpg")])
    (root / "list_eval_partition.txt").write_text("000001.jpg 0\n")
    with pytest.raises(DatasetError, match="000002.jpg has no row in list_eval_partition.txt") as error:
        read_celeba(root)
    assert error.value.line == 4
    assert read_celeba(root, on_bad_row="skip").bad_rows == 1


def test_celeba_bad_partition_code_names_the_partition_file_line(tmp_path: Path) -> None:
    root = write_celeba(tmp_path, [row("000001.jpg"), row("000002.jpg")])
    (root / "list_eval_partition.txt").write_text("000001.jpg 0\n000002.jpg 3\n")
    with pytest.raises(DatasetError, match="partition '3'") as error:
        read_celeba(root)
    assert error.value.path.name == "list_eval_partition.txt" and error.value.line == 2


# ---- CelebA-HQ ---------------------------------------------------------------------------------

def test_celebahq_takes_split_and_group_from_the_celeba_original(celeba_root: Path, hq_root: Path) -> None:
    mapping_lines = (hq_root / "CelebA-HQ-to-CelebA-mapping.txt").read_text().splitlines()[1:]
    mapping = dict(line.split()[0::2] for line in mapping_lines)
    codes = dict(line.split() for line in (celeba_root / "list_eval_partition.txt").read_text().splitlines())
    people = dict(line.split() for line in (celeba_root / "identity_CelebA.txt").read_text().splitlines())
    records = read_celebahq(hq_root, celeba_root).records
    assert len(records) == 12 and {r.source for r in records} == {"celebahq"}
    for record in records:
        original = mapping[record.path.stem]
        assert record.split == {"0": "train", "1": "val", "2": "test"}[codes[original]]
        assert record.group == f"celeba-id:{people[original]}"


def test_celebahq_needs_celeba_root_and_says_why(hq_root: Path) -> None:
    with pytest.raises(DatasetError, match="celeba_root is not set") as error:
        read_celebahq(hq_root, None)
    assert "takes its split and person from the CelebA image" in str(error.value)


def test_celebahq_celeba_root_without_partition_shows_the_layout(hq_root: Path, tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="CELEBA_ROOT/") as error:
        read_celebahq(hq_root, tmp_path)
    assert error.value.path == tmp_path / "list_eval_partition.txt"


def test_celebahq_finds_the_one_resized_image_folder_or_refuses_to_guess(hq_root: Path, tmp_path: Path,
                                                                         celeba_root: Path) -> None:
    assert read_celebahq(hq_root, celeba_root).records[0].path.parent.name == "CelebA-HQ-img-16"
    shutil.copytree(hq_root, tmp_path / "hq")
    (tmp_path / "hq" / "CelebA-HQ-img-128").mkdir()
    with pytest.raises(DatasetError, match="several image folders"):
        read_celebahq(tmp_path / "hq", celeba_root)


def test_celebahq_mapping_row_that_disagrees_with_itself_names_its_line(hq_root: Path, tmp_path: Path,
                                                                      celeba_root: Path) -> None:
    shutil.copytree(hq_root, tmp_path / "hq")
    mapping = tmp_path / "hq" / "CelebA-HQ-to-CelebA-mapping.txt"
    lines = mapping.read_text().splitlines()
    lines[3] = "2 5 000001.jpg"
    mapping.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match="does not match orig_idx 5") as error:
        read_celebahq(tmp_path / "hq", celeba_root)
    assert error.value.line == 4


# ---- the real data in ../shared/data -----------------------------------------------------------

@functools.cache
def real(kind: str, root: Path, images: str | None = None) -> list:
    celeba_root = root.parent / "celeba"
    return read_source(SourceConfig(kind=kind, root=str(root), images=images, celeba_root=str(celeba_root))).records


@pytest.mark.real_data
def test_real_celeba_aligned_images_and_splits(shared_data: Path) -> None:
    records = real("celeba", shared_data / "celeba")
    assert len(records) == 5340
    assert Counter(r.split for r in records) == {"train": 4560, "val": 780}
    assert len({r.group for r in records}) == 178


@pytest.mark.real_data
def test_real_celeba_half_size_images(shared_data: Path) -> None:
    records = real("celeba", shared_data / "celeba", "img_align_celeba_89x109")
    assert len(records) == 10000 and {r.split for r in records} == {"train"}


@pytest.mark.real_data
def test_real_celebahq_images(shared_data: Path) -> None:
    records = real("celebahq", shared_data / "celebahq")
    assert len(records) == 27176 and {r.split for r in records} == {"train", "val"}


@pytest.mark.real_data
def test_real_no_person_on_both_sides_across_celeba_and_hq(shared_data: Path) -> None:
    celeba_root = shared_data / "celeba"
    records = (real("celeba", celeba_root) + real("celeba", celeba_root, "img_align_celeba_89x109")
               + real("celebahq", shared_data / "celebahq"))
    sides: dict[str, set[str]] = {}
    for record in records:
        sides.setdefault(record.group, set()).add(record.split)
    assert all(len(splits) == 1 for splits in sides.values())
