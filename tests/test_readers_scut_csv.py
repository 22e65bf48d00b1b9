"""Tests of the SCUT-FBP5500 and team-CSV readers on generated and hand-written files, and on the real data."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from faceattr.attributes import ATTRIBUTE_INDEX
from faceattr.data.readers.csvfile import hashed_split, read_csv
from faceattr.data.readers.scut import read_scut, scut_folds, stratified_folds
from faceattr.errors import ConfigError, DatasetError

# ---- SCUT-FBP5500 ------------------------------------------------------------------------------

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


@pytest.mark.parametrize("column, meant", [("Smile", "Smiling"), ("male", "Male"), ("beuaty", "beauty"),
                                           ("glasses", "Eyeglasses")])
def test_csv_misspelt_label_column_is_an_error_naming_it_and_what_it_looks_like(
        tmp_path: Path, column: str, meant: str) -> None:
    path = write_csv(tmp_path, f"image,{column}\nimg/a.jpg,1\n")
    with pytest.raises(DatasetError, match=f"column '{column}' looks like a misspelt '{meant}'") as error:
        read_csv(path)
    assert error.value.line == 1 and error.value.path == path


def test_csv_reads_the_label_export_and_ignores_its_other_columns_with_a_log_naming_them(tmp_path: Path,
                                                                                        caplog) -> None:
    from faceattr.label.project import EXPORT_COLUMNS

    extra = [name for name in EXPORT_COLUMNS if name not in ("image", "beauty", "split")]
    cells = {"image": "img/a.jpg", "beauty": "3.5", "split": ""}
    path = write_csv(tmp_path, ",".join(EXPORT_COLUMNS) + "\n"
                     + ",".join(cells.get(name, "1") for name in EXPORT_COLUMNS) + "\n"
                     + ",".join({**cells, "image": "img/b.jpg", "beauty": "2.0", "split": "val"}.get(name, "0")
                                for name in EXPORT_COLUMNS) + "\n")
    with caplog.at_level("INFO", logger="faceattr.data.readers.csvfile"):
        a, b = read_csv(path).records
    assert (a.beauty, b.beauty, b.split) == (3.5, 2.0, "val")
    assert a.attributes is None and a.attribute_mask is None
    assert f"ignoring the columns {', '.join(extra)}" in caplog.text


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
    with pytest.raises(DatasetError, match="group 'ann' is split 'val' here but split 'train' on line 2") as error:
        read_csv(path)
    assert error.value.line == 3


def test_csv_fold_column_makes_the_sources_fold_val_and_the_other_folds_train(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "image,fold,split\nimg/a.jpg,0,\nimg/b.jpg,2,\nimg/c.jpg,,test\nimg/d.jpg,,\n",
                     ("a.jpg", "b.jpg", "c.jpg", "d.jpg"))
    splits = {k: [r.split for r in read_csv(path, val_fraction=0.0, folds=3, fold=k).records] for k in range(3)}
    assert splits == {0: ["val", "train", "test", "train"], 1: ["train", "train", "test", "train"],
                      2: ["train", "val", "test", "train"]}  # rows without a fold keep their (hashed) split


def test_csv_source_passes_its_folds_and_fold_to_the_reader(tmp_path: Path) -> None:
    from faceattr.config import SourceConfig
    from faceattr.data.sources import read_source

    path = write_csv(tmp_path, "image,fold\nimg/a.jpg,0\nimg/b.jpg,2\nimg/c.jpg,1\n")
    result = read_source(SourceConfig(kind="csv", root=str(path), folds=3, fold=2))
    assert [r.split for r in result.records] == ["train", "val", "train"]


def test_csv_fold_outside_the_folds_setting_is_a_bad_row_naming_the_line(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "image,fold\nimg/a.jpg,1\nimg/b.jpg,3\nimg/c.jpg,x\n")
    with pytest.raises(DatasetError, match=r"fold 3 is outside 0..2 \(the source's folds setting is 3\)") as error:
        read_csv(path, folds=3)
    assert error.value.line == 3
    result = read_csv(path, on_bad_row="skip", folds=3)
    assert result.bad_rows == 2 and [r.path.name for r in result.records] == ["a.jpg"]
    assert len(read_csv(path, on_bad_row="skip", folds=4).records) == 2


def test_csv_row_with_both_a_split_and_a_fold_is_refused_as_ambiguous(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "image,split,fold\nimg/a.jpg,,1\nimg/b.jpg,train,1\n")
    with pytest.raises(DatasetError, match="both a split \\('train'\\) and a fold \\(1\\).*ambiguous") as error:
        read_csv(path)
    assert error.value.line == 3


def test_csv_group_in_two_folds_is_refused_whatever_the_fold(tmp_path: Path) -> None:
    path = write_csv(tmp_path, "image,group,fold\nimg/a.jpg,ann,0\nimg/b.jpg,ann,1\nimg/c.jpg,bob,2\n")
    for fold in (0, 2):  # in fold 2 both of ann's rows are train, yet fold 0 or 1 would leak
        with pytest.raises(DatasetError, match="group 'ann' is in fold 1 here but in fold 0 on line 2") as error:
            read_csv(path, folds=3, fold=fold)
        assert error.value.line == 3


def test_csv_fold_outside_the_folds_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="fold: 3 is outside 0..2"):
        read_csv(write_csv(tmp_path, "image\nimg/a.jpg\n"), folds=3, fold=3)


def test_csv_takes_absolute_paths_and_counts_missing_images(tmp_path: Path) -> None:
    absolute = tmp_path / "img" / "b.jpg"
    path = write_csv(tmp_path, f"image,beauty\nimg/a.jpg,2.5\n{absolute},3\nimg/gone.jpg,4\nelsewhere/x.jpg,1\n")
    result = read_csv(path)
    assert [r.path for r in result.records] == [tmp_path / "img" / "a.jpg", absolute]
    assert result.missing_images == 2 and result.records[0].attributes is None
    assert result.source == "csv:team"


# ---- the real data in ../shared/data -----------------------------------------------------------

@pytest.mark.real_data
def test_real_scut_images_and_folds(shared_data: Path) -> None:
    records = read_scut(shared_data / "scut_fbp5500").records
    assert len(records) == 3300 and sum(r.split == "val" for r in records) == 660
    assert sorted(Counter(scut_folds(shared_data / "scut_fbp5500").values()).values()) == [660] * 5
