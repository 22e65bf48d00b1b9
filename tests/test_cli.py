"""Tests of the ``faceattr`` command: outputs, folder search, annotated copies and exit codes."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from faceattr import cli
from faceattr.attributes import ATTRIBUTES
from faceattr.errors import CheckpointError
from faceattr.inference.annotate import annotate, face_labels
from faceattr.inference.results import (
    CSV_HEADER,
    FaceResult,
    ImageResult,
    spreadsheet_safe,
)

TWO_PEOPLE = "faces/face_recognition/examples/two_people.jpg"


class FakePredictor:
    """One face in the middle of each photo, none in photos named ``blank*``; unreadable files give an error."""

    def __init__(self, checkpoint: str | None, device: str, batch_size: int, decision: str | None = None,
                 threshold: float | None = None, backend: str | None = None):
        self.checkpoint = checkpoint
        self.backend = backend
        self.decision = decision or ("probability" if threshold is not None else "f1")
        self.threshold = threshold
        self.batches: list[int] = []
        self.aligned: list[bool] = []

    def predict_many(self, images: list[str], aligned: bool = False) -> list[ImageResult]:
        self.batches.append(len(images))
        self.aligned.append(aligned)
        results = []
        for source in images:
            try:
                width, height = Image.open(source).size
            except OSError as error:
                results.append(ImageResult(source, error=f"cannot decode ({error.__class__.__name__})"))
                continue
            probabilities = {name: 0.1 for name in ATTRIBUTES} | {"Male": 0.7, "Smiling": 0.9}
            face = FaceResult((width / 4, height / 4, 3 * width / 4, 3 * height / 4), 0.99,
                              ((width / 2, height / 2),) * 5, probabilities, ("Smiling", "Male"), 3.456, self.decision)
            faces = [] if Path(source).name.startswith("blank") else [face]
            results.append(ImageResult(source, faces, None, width, height))
        return results


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> list[FakePredictor]:
    """Replaces the real predictor; the list receives each one the command builds."""
    made: list[FakePredictor] = []

    def load(checkpoint: str | None, device: str, batch_size: int, decision: str | None = None,
             threshold: float | None = None, backend: str | None = None) -> FakePredictor:
        made.append(FakePredictor(checkpoint, device, batch_size, decision, threshold, backend))
        return made[-1]

    monkeypatch.setattr(cli, "load_predictor", load)
    return made


@pytest.fixture
def model(tmp_path: Path) -> Path:
    """A model file that exists (the fake predictor does not read it)."""
    path = tmp_path / "model.pt"
    path.write_bytes(b"fake")
    return path


def photo(path: Path, size: tuple[int, int] = (80, 60), value: int = 128) -> Path:
    """Writes a plain grey photo."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(path)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    code = cli.main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_text_output_has_one_line_per_face_and_no_face_lines(tmp_path, fake, model, capsys) -> None:
    face, blank = photo(tmp_path / "a.jpg"), photo(tmp_path / "blank.png")
    code, out, _ = run(capsys, "predict", face, blank, "--model", model)
    assert code == 0
    assert out.splitlines() == [f"{face}  face 1  box (20,15,60,45)  beauty 3.46  Smiling 0.90, Male 0.70",
                                f"{blank}  no face"]


def test_top_lists_at_most_k_attributes_most_probable_first(tmp_path, fake, model, capsys) -> None:
    face = photo(tmp_path / "a.jpg")
    code, out, _ = run(capsys, "predict", face, "--model", model, "--top", "1")
    assert code == 0 and out.splitlines() == [f"{face}  face 1  box (20,15,60,45)  beauty 3.46  Smiling 0.90"]


@pytest.mark.parametrize("argv, backend", [([], None), (["--backend", "onnx"], "onnx"), (["--backend", "torch"], "torch")])
def test_backend_reaches_the_predictor(tmp_path, fake, model, capsys, argv, backend) -> None:
    assert run(capsys, "predict", photo(tmp_path / "a.jpg"), "--model", model, *argv)[0] == 0
    assert fake[0].backend == backend


def test_an_unknown_backend_is_a_usage_error_naming_the_choices(tmp_path, fake, model, capsys) -> None:
    code, _, err = run(capsys, "predict", photo(tmp_path / "a.jpg"), "--model", model, "--backend", "tensorflow")
    assert code == 2 and "--backend" in err and "'torch', 'onnx'" in err and fake == []


@pytest.mark.parametrize("argv, decision, threshold", [
    ([], None, None), (["--decision", "balanced"], "balanced", None), (["--decision", "f1"], "f1", None),
    (["--threshold", "0.7"], None, 0.7), (["--decision", "probability", "--threshold", "0.3"], "probability", 0.3)])
def test_decision_and_threshold_reach_the_predictor(tmp_path, fake, model, capsys, argv, decision, threshold) -> None:
    assert run(capsys, "predict", photo(tmp_path / "a.jpg"), "--model", model, *argv)[0] == 0
    assert (fake[0].decision, fake[0].threshold) == (decision or ("probability" if threshold else "f1"), threshold)


@pytest.mark.parametrize("argv", [["--decision", "strict"], ["--threshold", "1.5"], ["--threshold", "0"]])
def test_bad_decision_or_threshold_is_a_usage_error(tmp_path, fake, model, capsys, argv) -> None:
    code, _, err = run(capsys, "predict", photo(tmp_path / "a.jpg"), "--model", model, *argv)
    assert code == 2 and ("invalid choice" in err or "between 0 and 1" in err)
    assert not fake


def test_json_output_is_one_document_with_every_image(tmp_path, fake, model, capsys) -> None:
    face, broken = photo(tmp_path / "a.jpg"), tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    code, out, _ = run(capsys, "predict", face, broken, "--model", model, "--json")
    documents = json.loads(out)
    assert code == 1
    assert [d["source"] for d in documents] == [str(face), str(broken)]
    assert documents[0]["faces"][0]["beauty"] == pytest.approx(3.456)
    assert documents[0]["faces"][0]["decision"] == "f1"
    assert documents[0]["faces"][0]["present"] == {name: name in ("Male", "Smiling") for name in ATTRIBUTES}
    assert documents[1]["error"].startswith("cannot decode")


def test_csv_has_a_row_per_face_with_all_probabilities(tmp_path, fake, model, capsys) -> None:
    images = [photo(tmp_path / "a.jpg"), photo(tmp_path / "b.jpg"), photo(tmp_path / "blank.jpg")]
    table = tmp_path / "out.csv"
    assert run(capsys, "predict", *images, "--model", model, "--csv", table)[0] == 0
    rows = list(csv.DictReader(table.open(encoding="utf-8")))
    assert [row["path"] for row in rows] == [str(images[0]), str(images[1])]
    assert list(rows[0]) == [*CSV_HEADER, *ATTRIBUTES, "decision", *(f"{name}_present" for name in ATTRIBUTES)]
    assert (rows[0]["face"], rows[0]["x1"], rows[0]["Smiling"], rows[0]["Bald"]) == ("1", "20.0", "0.9000", "0.1000")
    assert (rows[0]["decision"], rows[0]["Smiling_present"], rows[0]["Male_present"], rows[0]["Bald_present"]) == (
        "f1", "1", "1", "0")


def test_folders_are_searched_recursively_sorted_by_extension(tmp_path, fake, model, capsys) -> None:
    root = tmp_path / "photos"
    expected = [photo(root / "b.JPG"), photo(root / "sub" / "a.webp"), photo(root / "z" / "c.TIFF")]
    (root / "notes.txt").write_text("not an image")
    (root / "sub" / "d.gif").write_bytes(b"GIF89a")
    code, out, _ = run(capsys, "predict", root, "--model", model)
    assert code == 0
    assert [line.split("  ")[0] for line in out.splitlines()] == [str(p) for p in sorted(expected)]


class TerminalIO(io.StringIO):
    """A stderr that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def test_images_go_to_the_predictor_in_batches_of_batch_size(tmp_path, fake, model, capsys) -> None:
    images = [photo(tmp_path / f"{i}.png") for i in range(5)]
    code, _, err = run(capsys, "predict", *images, "--model", model, "--batch-size", "2")
    assert code == 0 and fake[0].batches == [2, 2, 1]
    assert err == ""  # stderr is no terminal here (a log file, a pipe): no progress bar in it


def test_progress_bar_is_shown_on_a_terminal(tmp_path, fake, model) -> None:
    images = [str(photo(tmp_path / f"{i}.png")) for i in range(3)]
    terminal = TerminalIO()
    args = cli.build_parser().parse_args(["predict", *images, "--model", str(model)])
    assert cli.run_predict(args, io.StringIO(), terminal) == 0
    assert "3/3" in terminal.getvalue()


def test_annotated_copies_are_drawn_and_keep_folder_layout(tmp_path, fake, model, capsys) -> None:
    root = tmp_path / "photos"
    source = photo(root / "sub" / "a.png", size=(200, 160))
    photo(root / "blank.jpg")
    out_dir = tmp_path / "drawn"
    assert run(capsys, "predict", root, "--model", model, "--save-annotated", out_dir)[0] == 0
    written = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*"))
    assert written == ["blank.jpg", "sub", "sub/a.jpg"]
    drawn = np.asarray(Image.open(out_dir / "sub" / "a.jpg"), dtype=np.int16)
    assert drawn.shape == (160, 200, 3)
    assert np.abs(drawn - np.asarray(Image.open(source), dtype=np.int16)).max() > 100


def test_annotated_names_never_overwrite_each_other(tmp_path, fake, model, capsys) -> None:
    images = [photo(tmp_path / "x" / "a.png"), photo(tmp_path / "y" / "a.jpg")]
    out_dir = tmp_path / "drawn"
    assert run(capsys, "predict", *images, "--model", model, "--save-annotated", out_dir)[0] == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["a.jpg", "a_2.jpg"]


def test_unreadable_inputs_exit_1_and_the_others_are_processed(tmp_path, fake, model, capsys) -> None:
    good, broken = photo(tmp_path / "a.jpg"), tmp_path / "broken.png"
    broken.write_bytes(b"garbage")
    code, out, err = run(capsys, "predict", good, broken, tmp_path / "missing.jpg", "--model", model)
    assert code == 1
    assert out.startswith(f"{good}  face 1")
    assert f"{broken}: cannot decode" in err and f"{tmp_path / 'missing.jpg'}: no such file" in err


def test_no_images_found_exits_2(tmp_path, fake, model, capsys) -> None:
    (tmp_path / "empty").mkdir()
    code, out, err = run(capsys, "predict", tmp_path / "empty", "--model", model)
    assert (code, out) == (2, "")
    assert "no images found" in err and not fake


def test_missing_model_exits_2_naming_the_file(tmp_path, fake, capsys) -> None:
    code, _, err = run(capsys, "predict", photo(tmp_path / "a.jpg"), "--model", tmp_path / "nope.pt")
    assert code == 2
    assert err == f"faceattr: {tmp_path / 'nope.pt'}: model file not found\n"


def test_without_model_the_default_is_loaded(tmp_path, fake, capsys) -> None:
    code, out, _ = run(capsys, "predict", photo(tmp_path / "a.jpg"))
    assert code == 0 and "Male" in out
    assert [predictor.checkpoint for predictor in fake] == [None]


def test_aligned_flag_reaches_the_predictor(tmp_path, fake, model, capsys) -> None:
    assert run(capsys, "predict", photo(tmp_path / "a.jpg"), "--model", model, "--aligned")[0] == 0
    assert run(capsys, "predict", photo(tmp_path / "b.jpg"), "--model", model)[0] == 0
    assert [predictor.aligned for predictor in fake] == [[True], [False]]


def test_bad_model_file_exits_2_without_traceback(tmp_path, model, monkeypatch, capsys) -> None:
    def refuse(checkpoint: str, device: str, batch_size: int, *policy: object, **backend: object) -> None:
        raise CheckpointError(f"{checkpoint}: not a readable checkpoint")

    monkeypatch.setattr(cli, "load_predictor", refuse)
    code, _, err = run(capsys, "predict", photo(tmp_path / "a.jpg"), "--model", model)
    assert code == 2
    assert err == f"faceattr: {model}: not a readable checkpoint\n"


@pytest.mark.parametrize("argv", [["predict"], ["predict", "a.jpg", "--model", "m.pt", "--top", "-1"],
                                  ["predict", "a.jpg", "--model", "m.pt", "--device", "tpu"], []])
def test_usage_errors_exit_2(argv, capsys) -> None:
    assert cli.main(argv) == 2
    assert capsys.readouterr().err.startswith("usage: faceattr")


def test_help_documents_exit_codes_and_version_prints(capsys) -> None:
    assert cli.main(["predict", "--help"]) == 0
    assert "exit status:" in capsys.readouterr().out
    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("faceattr 0.")


def test_face_labels_show_beauty_then_top_attributes_by_probability() -> None:
    face = FaceResult((0, 0, 1, 1), 1.0, None, {"Male": 0.6, "Smiling": 0.9, "Young": 0.7},
                    ("Male", "Smiling", "Young"), 2.5)
    assert face_labels(face, top=2) == ["beauty 2.50", "Smiling", "Young"]
    assert face_labels(face, top=0) == ["beauty 2.50"]


@pytest.mark.parametrize("size", [(48, 64), (3000, 4000)])
def test_annotate_draws_on_a_copy_inside_the_photo_at_any_size(size) -> None:
    height, width = size
    image = np.full((height, width, 3), 128, np.uint8)
    face = FaceResult((width * 0.3, height * 0.3, width * 0.7, height * 0.7), 0.9, ((width / 2, height / 2),) * 5,
                      {"Smiling": 0.9}, ("Smiling",), 3.0)
    drawn = annotate(image, [face])
    assert drawn.shape == image.shape and (image == 128).all()
    # The text is dark: its rows span at least 8 pixels, and 1.5% of a large photo's height.
    text_rows = (drawn < 60).all(axis=2).any(axis=1).sum()
    assert text_rows >= max(8, 0.015 * height)
    assert (drawn[round(height / 2), round(width / 2)] != 128).any()  # the landmark dot


def test_annotate_colours_faces_by_id_and_heads_their_labels_with_it() -> None:
    from faceattr.inference.annotate import PALETTE

    image = np.full((200, 200, 3), 128, np.uint8)
    face = FaceResult((40, 40, 120, 120), 0.9, None, {}, (), 3.0)
    plain, tracked = annotate(image, [face]), annotate(image, [face], ids=[4])
    nearest = lambda pixel: int(np.argmin(np.abs(np.array(PALETTE) - pixel.astype(int)).sum(axis=1)))
    assert nearest(plain[40, 80]) == 0 and nearest(tracked[40, 80]) == 4  # the box's top edge
    label_rows = lambda drawn: (drawn[:, 40:120] < 60).all(axis=2).any(axis=1).sum()  # dark text below the box
    assert label_rows(tracked) > label_rows(plain)  # "#4" is a line more
    with pytest.raises(ValueError, match="ids"):
        annotate(image, [face], ids=[1, 2])


@pytest.mark.real_data
def test_real_predictor_on_two_people(shared_data, checkpoint, tmp_path, capsys) -> None:
    image = shared_data / TWO_PEOPLE
    code, out, err = run(capsys, "predict", image, "--model", checkpoint, "--device", "cpu", "--json",
                         "--save-annotated", tmp_path / "drawn")
    assert code == 0, err
    [document] = json.loads(out)
    assert len(document["faces"]) == 2
    assert (tmp_path / "drawn" / "two_people.jpg").is_file()


@pytest.mark.real_data
def test_large_jpeg_is_annotated_on_a_reduced_decode_where_its_faces_are(shared_data, checkpoint, tmp_path,
                                                                         monkeypatch, capsys) -> None:
    from faceattr.inference.annotate import PALETTE
    from faceattr.inference.detect import FaceDetector
    from faceattr.inference.predictor import Predictor

    # A detector that sees 512 px: the predictor decodes this 4096 px JPEG at 1/4, the annotation at 1/2
    # (the largest reduction keeping 1920 px), not a second time at full size.
    monkeypatch.setattr(cli, "load_predictor", lambda checkpoint, device, batch_size, *policy, **backend: Predictor(
        checkpoint, device=device, batch_size=batch_size, detector=FaceDetector(max_side=512)))
    image = tmp_path / "big.jpg"
    Image.open(shared_data / TWO_PEOPLE).convert("RGB").resize((4096, 2404)).save(image, quality=95)
    code, out, err = run(capsys, "predict", image, "--model", checkpoint, "--json",
                         "--device", "cpu", "--save-annotated", tmp_path / "drawn")
    assert code == 0, err
    [document] = json.loads(out)
    assert (document["width"], document["height"]) == (4096, 2404)
    drawn = np.asarray(Image.open(tmp_path / "drawn" / "big.jpg"))
    assert drawn.shape == (1202, 2048, 3)
    # The first face's box is drawn in its colour where the JSON puts its left edge, at half scale.
    x1, y1, _, y2 = (round(v / 2) for v in document["faces"][0]["box"])
    edge = drawn[(y1 + y2) // 2, x1 - 1:x1 + 2].astype(int)
    assert (np.abs(edge - PALETTE[0]).max(axis=1) < 40).any()


def test_a_missing_photo_is_reported_in_one_line(tmp_path, fake, model, capsys) -> None:
    code, out, err = run(capsys, "predict", tmp_path / "missing.jpg", "--model", model)
    assert (code, out) == (2, "")
    assert err == f"faceattr: {tmp_path / 'missing.jpg'}: no such file or folder\n"


def test_annotated_copies_never_go_into_an_input_folder(tmp_path, fake, model, capsys) -> None:
    root = tmp_path / "photos"
    source = photo(root / "a.png")
    before = source.read_bytes()
    for out_dir in (root, tmp_path, source):  # the input folder, a folder holding it, an input file
        code, out, err = run(capsys, "predict", root, "--model", model, "--save-annotated", out_dir)
        assert (code, out) == (2, "")
        assert f"--save-annotated {out_dir}: is or holds an input" in err
    assert source.read_bytes() == before and sorted(os.listdir(root)) == ["a.png"]
    assert not fake  # refused before the model is loaded


def test_an_output_folder_inside_an_input_folder_is_not_read_back(tmp_path, fake, model, capsys) -> None:
    root = tmp_path / "photos"
    photo(root / "a.png")
    for _ in range(2):
        code, out, _ = run(capsys, "predict", root, "--model", model, "--save-annotated", root / "annotated")
        assert code == 0 and len(out.splitlines()) == 1
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) == ["a.png", "annotated",
                                                                                "annotated/a.jpg"]


def test_annotated_copies_replace_a_planted_link_not_its_target(tmp_path, fake, model, capsys) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out_dir = tmp_path / "drawn"
    out_dir.mkdir()
    (out_dir / "a.jpg").symlink_to(victim)
    assert run(capsys, "predict", photo(tmp_path / "a.png"), "--model", model, "--save-annotated", out_dir)[0] == 0
    assert victim.read_text() == "precious"
    assert Image.open(out_dir / "a.jpg").size == (80, 60)


def test_long_names_that_collide_are_shortened_and_kept_apart(tmp_path, fake, model, capsys) -> None:
    name = "n" * 251 + ".png"  # 255 characters, the most a name may have; a second copy would be n..._2.jpg
    images = [photo(tmp_path / "x" / name), photo(tmp_path / "y" / name), photo(tmp_path / "z" / ("n" * 250 + ".png"))]
    out_dir = tmp_path / "drawn"
    code, _, err = run(capsys, "predict", *images, "--model", model, "--save-annotated", out_dir)
    assert code == 0, err
    written = sorted(os.listdir(out_dir))
    assert len(written) == 3 and all(len(n) <= 255 and n.endswith(".jpg") for n in written)


def test_an_output_that_cannot_be_written_fails_that_file_only(tmp_path, fake, model, capsys) -> None:
    out_dir = tmp_path / "drawn"
    (out_dir / "a.jpg").mkdir(parents=True)  # a folder where a's copy would go
    images = [photo(tmp_path / "a.png"), photo(tmp_path / "b.png")]
    code, out, err = run(capsys, "predict", *images, "--model", model, "--save-annotated", out_dir)
    assert code == 1
    assert len(out.splitlines()) == 2 and (out_dir / "b.jpg").is_file()
    assert f"faceattr: {images[0]}: cannot write {out_dir / 'a.jpg'}:" in err


def test_a_name_that_is_not_utf8_is_written_with_its_byte_escaped(tmp_path, fake, model, capsys) -> None:
    folder = os.fsencode(tmp_path)
    strange = os.fsdecode(folder + b"/caf\xe9.jpg")
    photo(Path(strange))
    table = tmp_path / "out.csv"
    code, out, err = run(capsys, "predict", strange, photo(tmp_path / "b.jpg"), "--model", model,
                         "--csv", table, "--json")
    assert code == 0, err
    shown = f"{tmp_path}/caf\\xe9.jpg"
    assert [document["source"] for document in json.loads(out)] == [shown, str(tmp_path / "b.jpg")]
    assert [row["path"] for row in csv.DictReader(table.open(encoding="utf-8"))] == [shown, str(tmp_path / "b.jpg")]
    code, out, err = run(capsys, "predict", strange, "--model", model, "--save-annotated", tmp_path / "drawn")
    assert out.startswith(shown) and os.listdir(os.fsencode(tmp_path / "drawn")) == [b"caf\xe9.jpg"]


def test_an_internal_error_has_its_own_exit_status(tmp_path, fake, model, monkeypatch, capsys) -> None:
    def broken(self, images, aligned=False):
        raise RuntimeError("a bug")

    monkeypatch.setattr(FakePredictor, "predict_many", broken)
    code, _, err = run(capsys, "predict", photo(tmp_path / "a.jpg"), "--model", model)
    assert code == cli.EXIT_INTERNAL == 70
    assert "RuntimeError: a bug" in err and err.endswith("faceattr: internal error (a bug in faceattr): a bug\n")


def test_csv_naming_an_input_is_refused_before_it_is_touched(tmp_path, fake, model, capsys) -> None:
    source = photo(tmp_path / "a.png")
    before = source.read_bytes()
    code, _, err = run(capsys, "predict", tmp_path, "--model", model, "--csv", source)
    assert code == 2 and f"--csv {source}: is one of the inputs" in err
    assert source.read_bytes() == before and not fake


def test_csv_cells_that_a_spreadsheet_would_run_are_escaped(tmp_path, fake, model, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    names = ["=HYPERLINK(1).png", "+1.png", "-x.png", "@SUM.png", "\tx.png", "plain.png"]
    for name in names:
        photo(tmp_path / name)
    assert run(capsys, "predict", "--model", model, "--csv", "out.csv", "--", *names)[0] == 0
    paths = [row["path"] for row in csv.DictReader(Path("out.csv").read_text(encoding="utf-8").splitlines())]
    assert paths == ["'" + name for name in names[:-1]] + ["plain.png"]
    assert spreadsheet_safe("-3.5") == "-3.5"  # numbers (a box off the photo's edge) stay numbers
    assert cli.main(["predict", "--help"]) == 0
    assert "formula" in capsys.readouterr().out


def test_help_says_which_links_are_followed(capsys) -> None:
    assert cli.main(["predict", "--help"]) == 0
    assert "links to folders are followed" in " ".join(capsys.readouterr().out.split())


def test_annotated_copies_never_go_through_a_linked_subfolder(tmp_path, fake, model, capsys) -> None:
    victim = tmp_path / "victim"
    (victim / "a.jpg").parent.mkdir()
    (victim / "a.jpg").write_text("precious")
    out_dir = tmp_path / "drawn"
    out_dir.mkdir()
    (out_dir / "sub").symlink_to(victim, target_is_directory=True)
    source = photo(tmp_path / "photos" / "sub" / "a.png")
    code, _, err = run(capsys, "predict", tmp_path / "photos", "--model", model, "--save-annotated", out_dir)
    assert code == 1 and (victim / "a.jpg").read_text() == "precious"
    assert f"faceattr: {source}: cannot write {out_dir / 'sub' / 'a.jpg'}: {out_dir / 'sub'} links out of" in err


def test_a_closed_pipe_on_stdout_ends_the_run_quietly() -> None:
    """`faceattr predict ... | head`: the reader leaving is not a bug (no traceback, no status 70)."""
    script = ("import sys\nfrom faceattr import cli\n"
              "def closed(*args):\n    raise BrokenPipeError\n"
              "cli.run_predict = closed\nsys.exit(cli.main(['predict', 'photo.jpg']))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode == cli.EXIT_OK and result.stderr == ""


def test_csv_replaces_a_planted_link_and_never_writes_through_it(tmp_path, fake, model, capsys) -> None:
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    table = tmp_path / "out.csv"
    table.symlink_to(victim)
    assert run(capsys, "predict", photo(tmp_path / "a.jpg"), "--model", model, "--csv", table)[0] == 0
    assert victim.read_text() == "precious"
    assert not table.is_symlink() and next(csv.DictReader(table.open(encoding="utf-8")))["path"].endswith("a.jpg")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["a.jpg", "model.pt", "out.csv", "victim.txt"]
