"""Tests of the dataset readers on generated files in each official layout, and on the real data."""

from __future__ import annotations

import functools
import importlib.util
import logging
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from faceattr.attributes import ATTRIBUTE_INDEX, ATTRIBUTES
from faceattr.config import SourceConfig
from faceattr.data.celeba import read_celeba
from faceattr.data.celebahq import read_celebahq
from faceattr.data.csvfile import hashed_split, read_csv
from faceattr.data.fixtures import make_celeba, make_celebahq, make_csv, make_scut
from faceattr.data.scut import read_scut, scut_folds, stratified_folds
from faceattr.data.sources import read_source
from faceattr.errors import ConfigError, DatasetError

TOOLS = Path(__file__).resolve().parents[1] / "tools"


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


@pytest.fixture(scope="module")
def celeba_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_celeba(tmp_path_factory.mktemp("celeba"), identities=10, images_per_identity=3, seed=1,
                       missing_fraction=0.2)


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

@pytest.fixture(scope="module")
def hq_root(celeba_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_celebahq(tmp_path_factory.mktemp("hq"), celeba_root, count=12, size=16)


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


# ---- SCUT-FBP5500 ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def scut_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_scut(tmp_path_factory.mktemp("scut"), count=60, size=16)


def test_scut_reads_scores_as_beauty_without_attributes(scut_root: Path) -> None:
    scores = dict(line.split() for line in (scut_root / "train_test_files/All_labels.txt").read_text().splitlines())
    records = read_scut(scut_root).records
    assert len(records) == 60
    for record in records:
        assert record.beauty == float(scores[record.path.name]) and record.attributes is None
        assert record.group == f"scut:{record.path.stem}" and record.source == "scut"


def test_scut_folds_are_disjoint_and_cover_every_image(scut_root: Path) -> None:
    vals = [{r.path.name for r in read_scut(scut_root, folds=5, fold=k).records if r.split == "val"} for k in range(5)]
    assert [len(v) for v in vals] == [12] * 5
    assert set().union(*vals) == {p.name for p in (scut_root / "Images").iterdir()}


def test_stratified_folds_are_deterministic_and_depend_on_the_seed() -> None:
    scores = {f"{g}{i}.jpg": 1 + (i * 37 % 40) / 10 for g in ("AF", "AM", "CF", "CM") for i in range(23)}
    assert stratified_folds(scores, 5, seed=3) == stratified_folds(dict(reversed(scores.items())), 5, seed=3)
    assert stratified_folds(scores, 5, seed=3) != stratified_folds(scores, 5, seed=4)


def test_stratified_folds_share_groups_and_scores_evenly() -> None:
    rng = np.random.default_rng(0)
    scores = {f"{g}{i}.jpg": float(rng.uniform(1, 5)) for g, n in (("AF", 101), ("AM", 99), ("CF", 38), ("CM", 37))
              for i in range(n)}
    folds = stratified_folds(scores, 4, seed=0)
    sizes = Counter(folds.values())
    assert max(sizes.values()) - min(sizes.values()) <= 1
    for group in ("AF", "AM", "CF", "CM"):
        per_fold = Counter(fold for name, fold in folds.items() if name.startswith(group))
        assert max(per_fold.values()) - min(per_fold.values()) <= 1
    means = [np.mean([scores[n] for n, f in folds.items() if f == k]) for k in range(4)]
    assert max(means) - min(means) < 0.1


def test_scut_test_file_images_are_test_and_out_of_the_folds(scut_root: Path, tmp_path: Path) -> None:
    shutil.copytree(scut_root, tmp_path / "s")
    labels = (tmp_path / "s/train_test_files/All_labels.txt").read_text().splitlines()
    (tmp_path / "s/train_test_files/split_of_60%training and 40%testing/test.txt").write_text("\n".join(labels[:10]))
    records = read_scut(tmp_path / "s").records
    test = {r.path.name for r in records if r.split == "test"}
    assert test == {line.split()[0] for line in labels[:10]}
    assert not test & set(scut_folds(tmp_path / "s"))
    assert sum(r.split == "val" for r in records) == 10


def test_scut_uses_the_official_fold_files_when_present(scut_root: Path, tmp_path: Path) -> None:
    shutil.copytree(scut_root, tmp_path / "s")
    labels = (tmp_path / "s/train_test_files/All_labels.txt").read_text().splitlines()
    for k in range(1, 6):
        path = tmp_path / f"s/train_test_files/5_folders_cross_validations_files/cross_validation_{k}/test_{k}.txt"
        path.parent.mkdir(parents=True)
        path.write_text("\n".join(labels[(k - 1) * 12:k * 12]) + "\n")
    val = {r.path.name for r in read_scut(tmp_path / "s", folds=5, fold=2).records if r.split == "val"}
    assert val == {line.split()[0] for line in labels[24:36]}


def test_scut_reads_the_split_files_without_all_labels(scut_root: Path, tmp_path: Path) -> None:
    shutil.copytree(scut_root, tmp_path / "s")
    (tmp_path / "s/train_test_files/All_labels.txt").unlink()
    split_folder = tmp_path / "s/train_test_files/split_of_60%training and 40%testing"
    lines = (split_folder / "train.txt").read_text().splitlines()
    (split_folder / "train.txt").write_text("\n".join(lines[:50]) + "\n")
    (split_folder / "test.txt").write_text("\n".join(lines[50:]) + "\n")
    records = read_scut(tmp_path / "s").records
    assert len(records) == 60 and sum(r.split == "test" for r in records) == 10


def test_scut_score_outside_1_to_5_names_its_line(scut_root: Path, tmp_path: Path) -> None:
    shutil.copytree(scut_root, tmp_path / "s")
    labels = tmp_path / "s/train_test_files/All_labels.txt"
    lines = labels.read_text().splitlines()
    lines[6] = lines[6].split()[0] + " 5.5"
    labels.write_text("\n".join(lines) + "\n")
    with pytest.raises(DatasetError, match="outside 1-5") as error:
        read_scut(tmp_path / "s")
    assert error.value.line == 7
    assert read_scut(tmp_path / "s", on_bad_row="skip").bad_rows == 1


def test_scut_without_labels_shows_the_layout(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="All_labels.txt.*expected layout"):
        read_scut(tmp_path)


def test_scut_fold_outside_the_folds_is_a_config_error(scut_root: Path) -> None:
    with pytest.raises(ConfigError, match="fold: 5 is outside 0..4"):
        read_scut(scut_root, folds=5, fold=5)


# ---- CSV ---------------------------------------------------------------------------------------

def write_csv(tmp_path: Path, text: str, images: tuple[str, ...] = ("a.jpg", "b.jpg", "c.jpg")) -> Path:
    (tmp_path / "img").mkdir(exist_ok=True)
    for name in images:
        (tmp_path / "img" / name).touch()
    (tmp_path / "team.csv").write_text(text)
    return tmp_path / "team.csv"


def test_csv_accepts_each_value_spelling_and_masks_empty_cells(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "image,Male,Smiling,Bald,Young\nimg/a.jpg,1,-1,yes,\nimg/b.jpg,true,0,No,FALSE\n")
    a, b = read_csv(path).records
    index = [ATTRIBUTE_INDEX[n] for n in ("Male", "Smiling", "Bald", "Young")]
    assert a.attributes[index].tolist() == [1, 0, 1, 0] and a.attribute_mask[index].tolist() == [1, 1, 1, 0]
    assert b.attributes[index].tolist() == [1, 0, 0, 0] and b.attribute_mask[index].all()
    assert a.attribute_mask.sum() == 3 and a.beauty is None


def test_csv_unknown_column_names_file_line_and_valid_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "image,Smile\nimg/a.jpg,1\n")
    with pytest.raises(DatasetError, match="unknown column 'Smile'.*valid columns: image, beauty") as error:
        read_csv(path)
    assert error.value.line == 1 and error.value.path == path


def test_csv_without_an_image_column_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="no 'image' column"):
        read_csv(write_csv(tmp_path, "Male,beauty\n1,3\n"))


def test_csv_bad_value_names_its_line_and_skip_counts_it(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "image,beauty,Male\nimg/a.jpg,3.5,1\n\nimg/b.jpg,6,1\nimg/c.jpg,2,maybe\n")
    with pytest.raises(DatasetError, match="outside 1-5") as error:
        read_csv(path)
    assert error.value.line == 4
    result = read_csv(path, on_bad_row="skip")
    assert result.bad_rows == 2 and [r.path.name for r in result.records] == ["a.jpg"]


def test_csv_without_split_column_hashes_groups_stably(tmp_path: Path) -> None:
    images = tuple(f"{i}.jpg" for i in range(200))
    rows = "".join(f"img/{name},p{i % 50},{1 + i % 4}\n" for i, name in enumerate(images))
    records = read_csv(write_csv(tmp_path, "image,group,beauty\n" + rows, images), val_fraction=0.3).records
    sides = {}
    for record in records:
        assert sides.setdefault(record.group, record.split) == record.split
        assert record.split == hashed_split(record.group.rsplit(":", 1)[1], 0.3)
    assert 8 <= sum(side == "val" for side in sides.values()) <= 25
    assert records[0].group == "csv:team:id:p0"


def test_csv_split_column_is_used_and_checked(tmp_path: Path) -> None:
    records = read_csv(write_csv(tmp_path, "image,split\nimg/a.jpg,test\nimg/b.jpg,val\nimg/c.jpg,\n"),
                       val_fraction=0.0).records
    assert [r.split for r in records] == ["test", "val", "train"]
    with pytest.raises(DatasetError, match="split 'dev'"):
        read_csv(write_csv(tmp_path, "image,split\nimg/a.jpg,dev\n"))


def test_csv_group_on_both_sides_of_the_split_is_refused(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "image,group,split\nimg/a.jpg,ann,train\nimg/b.jpg,ann,val\n")
    with pytest.raises(DatasetError, match="group 'ann' is split 'val' here but 'train' on line 2") as error:
        read_csv(path)
    assert error.value.line == 3


def test_csv_takes_absolute_paths_and_counts_missing_images(tmp_path: Path) -> None:
    absolute = tmp_path / "img" / "b.jpg"
    path = write_csv(tmp_path, f"image,beauty\nimg/a.jpg,2.5\n{absolute},3\nimg/gone.jpg,4\nelsewhere/x.jpg,1\n")
    result = read_csv(path)
    assert [r.path for r in result.records] == [tmp_path / "img" / "a.jpg", absolute]
    assert result.missing_images == 2 and result.records[0].attributes is None
    assert result.source == "csv:team"


# ---- dispatch and the checker ------------------------------------------------------------------

def test_read_source_reads_every_kind(celeba_root: Path, hq_root: Path, scut_root: Path, tmp_path: Path) -> None:
    csv_path = make_csv(tmp_path / "team.csv", tmp_path / "photos", count=4)
    sources = [SourceConfig(kind="celeba", root=str(celeba_root)),
               SourceConfig(kind="celebahq", root=str(hq_root), celeba_root=str(celeba_root)),
               SourceConfig(kind="scut", root=str(scut_root), folds=3, fold=1),
               SourceConfig(kind="csv", root=str(csv_path), val_fraction=1.0)]
    results = [read_source(source) for source in sources]
    assert [r.source for r in results] == ["celeba", "celebahq", "scut", "csv:team"]
    assert sum(r.split == "val" for r in results[2].records) == 20
    assert {r.split for r in results[3].records} == {"val"}


def test_read_source_rejects_an_unknown_kind_or_empty_root() -> None:
    with pytest.raises(ConfigError, match="'lfw' is not one of celeba, celebahq, scut, csv"):
        read_source(SourceConfig(kind="lfw", root="x"))
    with pytest.raises(ConfigError, match="has no root"):
        read_source(SourceConfig(kind="celeba"))


def load_check_dataset():
    spec = importlib.util.spec_from_file_location("check_dataset", TOOLS / "check_dataset.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_check_dataset_reports_a_usable_dataset(celeba_root: Path, capsys: pytest.CaptureFixture) -> None:
    assert load_check_dataset().main(["celeba", str(celeba_root)]) == 0
    out = capsys.readouterr().out
    found = len(list((celeba_root / "img_align_celeba").iterdir()))
    assert "list_attr_celeba.txt" in out and f"images found:      {found}" in out and "OK: usable" in out


def test_check_dataset_exits_1_with_the_reason(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert load_check_dataset().main(["scut", str(tmp_path)]) == 1
    assert "NOT USABLE" in capsys.readouterr().err


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
def test_real_scut_images_and_folds(shared_data: Path) -> None:
    records = real("scut", shared_data / "scut_fbp5500")
    assert len(records) == 3300 and sum(r.split == "val" for r in records) == 660
    assert sorted(Counter(scut_folds(shared_data / "scut_fbp5500").values()).values()) == [660] * 5


@pytest.mark.real_data
def test_real_no_person_on_both_sides_across_celeba_and_hq(shared_data: Path) -> None:
    celeba_root = shared_data / "celeba"
    records = (real("celeba", celeba_root) + real("celeba", celeba_root, "img_align_celeba_89x109")
               + real("celebahq", shared_data / "celebahq"))
    sides: dict[str, set[str]] = {}
    for record in records:
        sides.setdefault(record.group, set()).add(record.split)
    assert all(len(splits) == 1 for splits in sides.values())
