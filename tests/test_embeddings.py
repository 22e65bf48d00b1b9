"""Face embeddings: Predictor.embed, collection files, map, neighbours, probes and ``faceattr embed``/``embeddings``.

The network's numbers come from an untrained ResNet-10-T (the ``checkpoint`` fixture) on drawn CelebA-layout
faces (``celeba_root``); where a face must be found in a photo, the installed default model on
examples/astronaut.jpg; the probes' statistics on planted signals.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from faceattr.attributes import ATTRIBUTES
from faceattr.cli import EXIT_OK, EXIT_USAGE, main
from faceattr.errors import ConfigError, DatasetError
from faceattr.explain.embeddings import (
    INDEX_COLUMNS,
    Embeddings,
    cross_validated_auc,
    nearest,
    probe,
    read_embeddings,
    read_labels,
    write_embeddings,
)
from faceattr.inference.detect import FaceDetector
from faceattr.inference.predictor import Predictor
from faceattr.inference.results import FaceEmbedding, FaceResult, ImageEmbeddings, normalised

ASTRONAUT = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"


@pytest.fixture(scope="module")
def aligned_faces(celeba_root: Path) -> list[str]:
    return [str(path) for path in sorted((celeba_root / "img_align_celeba").glob("*.jpg"))[:11]]


@pytest.fixture(scope="module")
def tiny(checkpoint: Path) -> Predictor:
    return Predictor(checkpoint, device="cpu", batch_size=4, detector=FaceDetector("haar"))  # aligned: never detects


def _vectors(images: list[ImageEmbeddings]) -> np.ndarray:
    return np.stack([face.vector for image in images for face in image.faces])


def test_embeddings_do_not_depend_on_the_batch_size(tiny: Predictor, aligned_faces: list[str]) -> None:
    by_size = {}
    for size in (1, 4, 32):
        tiny.batch_size = size
        by_size[size] = _vectors(tiny.embed(aligned_faces, aligned=True))
    tiny.batch_size = 4
    assert by_size[1].shape == (11, 512) and by_size[1].dtype == np.float32
    np.testing.assert_allclose(by_size[4], by_size[1], atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(by_size[32], by_size[1], atol=1e-5, rtol=1e-5)


def test_each_face_carries_the_prediction_of_the_same_pass(tiny: Predictor, aligned_faces: list[str]) -> None:
    embedded = tiny.embed(aligned_faces, aligned=True)
    predicted = tiny.predict_aligned(aligned_faces)
    assert [image.source for image in embedded] == aligned_faces
    for image, face in zip(embedded, predicted):
        assert image.faces[0].face.beauty == pytest.approx(face.beauty, abs=1e-5)
        assert image.faces[0].face.probabilities["Smiling"] == pytest.approx(face.probabilities["Smiling"], abs=1e-5)


def test_normalisations(tiny: Predictor, aligned_faces: list[str]) -> None:
    raw = _vectors(tiny.embed(aligned_faces[:5], aligned=True))
    l1 = _vectors(tiny.embed(aligned_faces[:5], aligned=True, normalise="l1"))
    l2 = _vectors(tiny.embed(aligned_faces[:5], aligned=True, normalise="l2"))
    np.testing.assert_allclose(np.abs(l1).sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(l2, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(l2, raw / np.linalg.norm(raw, axis=1, keepdims=True), rtol=1e-4, atol=1e-7)
    with pytest.raises(ConfigError, match="normalise: expected one of none, l1, l2, got 'l3'"):
        tiny.embed(aligned_faces[:1], aligned=True, normalise="l3")


def test_an_unreadable_input_has_its_error_and_no_face(tiny: Predictor, tmp_path: Path, aligned_faces: list[str]
                                                       ) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not an image")
    first, second = tiny.embed([str(broken), aligned_faces[0]], aligned=True)
    assert first.faces == [] and "broken.jpg" in first.error
    assert len(second.faces) == 1 and second.error is None


def test_faces_found_in_a_photo_have_vectors() -> None:
    predictor = Predictor(device="cpu")
    [image] = predictor.embed([str(ASTRONAUT)], normalise="l2")
    [face] = predictor.predict(str(ASTRONAUT))
    assert len(image.faces) == 1 and image.faces[0].vector.shape == (512,)
    assert image.faces[0].face.box == pytest.approx(face.box)
    assert image.faces[0].face.beauty == pytest.approx(face.beauty, abs=1e-5)


def _collection(count: int = 6, dimension: int = 8, seed: int = 0) -> list[ImageEmbeddings]:
    """Images of one or two faces with random vectors and probabilities."""
    rng = np.random.default_rng(seed)
    images = []
    for number in range(count):
        faces = [FaceEmbedding(FaceResult((1.0 * k, 2.0, 30.0, 40.0), 0.9, None,
                                          {name: float(rng.random()) for name in ATTRIBUTES}, (),
                                          float(rng.uniform(1, 5))),
                               rng.normal(size=dimension).astype(np.float32)) for k in range(1 + number % 2)]
        images.append(ImageEmbeddings(f"photos/{number:03d}.jpg", faces))
    return [*images, ImageEmbeddings("photos/none.jpg", [])]


@pytest.mark.parametrize("suffix", [".parquet", ".npy"])
def test_a_collection_reads_back_as_written(tmp_path: Path, suffix: str) -> None:
    images = _collection()
    path = tmp_path / f"faces{suffix}"
    assert write_embeddings(path, iter(images), "none", "default") == 9
    read = read_embeddings(path)
    assert len(read) == 9 and read.normalise == "none" and read.model == "default"
    np.testing.assert_array_equal(read.vectors, np.stack([f.vector for i in images for f in i.faces]))
    assert list(read.columns["source"][:3]) == ["photos/000.jpg", "photos/001.jpg", "photos/001.jpg"]
    assert list(read.columns["face"][:3]) == [1, 1, 2]
    assert read.columns["x1"][2] == 1.0
    assert read.columns["Smiling"][0] == pytest.approx(images[0].faces[0].face.probabilities["Smiling"], rel=1e-6)
    assert read.values("beauty")[0] == pytest.approx(images[0].faces[0].face.beauty)


@pytest.mark.parametrize("suffix", [".parquet", ".npy"])
def test_an_empty_collection_is_a_file(tmp_path: Path, suffix: str) -> None:
    write_embeddings(tmp_path / f"none{suffix}", [ImageEmbeddings("a.jpg", [])], "l2", "m")
    assert len(read_embeddings(tmp_path / f"none{suffix}")) == 0


@pytest.mark.parametrize("suffix", [".parquet", ".npy"])
def test_a_collection_is_never_overwritten(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"faces{suffix}"
    write_embeddings(path, _collection(), "none", "default")
    before = path.read_bytes()
    with pytest.raises(ConfigError, match="exists; not overwritten"):
        write_embeddings(path, _collection(seed=1), "none", "default")
    assert path.read_bytes() == before


def test_a_failed_write_leaves_no_file(tmp_path: Path) -> None:
    def failing():
        yield from _collection()
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError):
        write_embeddings(tmp_path / "faces.npy", failing(), "none", "default")
    assert list(tmp_path.iterdir()) == []


def test_files_that_are_not_collections_are_refused_by_name(tmp_path: Path) -> None:
    table = tmp_path / "other.parquet"
    table.write_bytes(b"PAR1 not really")
    with pytest.raises(DatasetError, match="other.parquet: not a faceattr embeddings file"):
        read_embeddings(table)
    np.save(tmp_path / "other.npy", np.zeros((2, 3), np.float32))
    (tmp_path / "other.csv").write_text("source,face\na.jpg,1\n")
    with pytest.raises(DatasetError, match="other.csv: not a faceattr embeddings file"):
        read_embeddings(tmp_path / "other.npy")
    with pytest.raises(ConfigError, match="faces.txt: an embeddings file must end in .parquet or .npy"):
        read_embeddings(tmp_path / "faces.txt")
    with pytest.raises(DatasetError, match="missing.npy|missing.csv"):
        read_embeddings(tmp_path / "missing.npy")


def test_the_exact_duplicate_is_the_nearest_neighbour() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(50, 16))
    for metric in ("cosine", "euclidean"):
        found = nearest(vectors, vectors[17].copy(), k=3, metric=metric)
        assert found[0][0] == 17 and found[0][1] == pytest.approx(1.0 if metric == "cosine" else 0.0)
        assert found[0][1] > found[1][1] >= found[2][1]
    # Cosine ignores a vector's scale: a scaled copy of row 5 is still row 5's direction.
    assert nearest(vectors, 3 * vectors[5], k=1) == [(5, 1.0)]


def _planted(count: int = 200, dimension: int = 20, seed: int = 0) -> tuple[Embeddings, dict[str, dict[str, float]]]:
    """A collection whose beauty and Smiling are linear in the first two dimensions; Male is noise."""
    rng = np.random.default_rng(seed)
    vectors = rng.normal(size=(count, dimension)).astype(np.float32) + 3.0
    sources = np.array([f"{k}.jpg" for k in range(count)])
    columns = {name: np.zeros(count) for name in INDEX_COLUMNS} | {"source": sources, "face": np.ones(count, int)}
    beauty = 3 + vectors[:, 0] - 3 + 0.3 * rng.normal(size=count)
    smiling = (vectors[:, 1] - 3 + 0.3 * rng.normal(size=count)) > 0
    male = rng.random(count) > 0.5
    labels = {source: {"beauty": float(b), "Smiling": float(s), "Male": float(m)}
              for source, b, s, m in zip(sources, beauty, smiling, male)}
    return Embeddings(columns, vectors, "none", "planted"), labels


def test_probes_find_a_planted_signal_and_not_noise() -> None:
    collection, labels = _planted()
    results = {(r.normalise, r.target): r for r in probe(collection, labels, folds=5, repeats=1)}
    assert {n for n, _ in results} == {"none", "l1", "l2"}
    raw = {target: results["none", target] for target in ("beauty", "Smiling", "Male")}
    assert raw["beauty"].metric == "r2" and raw["beauty"].mean > 0.8
    assert raw["Smiling"].metric == "auc" and raw["Smiling"].mean > 0.9
    assert 0.3 < raw["Male"].mean < 0.65
    assert all(result.faces == 200 for result in results.values())


def test_probes_of_a_normalised_collection_leave_raw_out_and_rare_labels_out() -> None:
    collection, labels = _planted()
    collection.normalise = "l2"
    for values in labels.values():
        values["Bald"] = 0.0
    labels["0.jpg"]["Bald"] = 1.0
    results = probe(collection, labels, folds=5, repeats=1)
    assert {r.normalise for r in results} == {"l1", "l2"}
    assert "Bald" not in {r.target for r in results}
    with pytest.raises(ConfigError, match="no source of the collection has labels"):
        probe(collection, {"elsewhere.jpg": {"beauty": 3.0}})


def test_auc_refuses_labels_that_are_not_binary() -> None:
    with pytest.raises(ConfigError, match="labels must be 0 or 1"):
        cross_validated_auc(np.zeros((10, 2)), np.arange(10))


def test_labels_csv_reads_beauty_and_attributes_and_names_a_bad_cell(tmp_path: Path) -> None:
    path = tmp_path / "labels.csv"
    path.write_text("source,beauty,Smiling,comment\na.jpg,3.5,-1,x\nb.jpg,,1,y\n")
    assert read_labels(path) == {"a.jpg": {"beauty": 3.5, "Smiling": 0.0}, "b.jpg": {"Smiling": 1.0}}
    path.write_text("source,beauty\na.jpg,pretty\n")
    with pytest.raises(DatasetError, match="labels.csv:2: beauty: not a number: 'pretty'"):
        read_labels(path)
    path.write_text("source,beauty,Smilling\na.jpg,3.5,1\n")  # a misspelt label is refused, not left out
    with pytest.raises(DatasetError, match="labels.csv:1: column 'Smilling' looks like a misspelt 'Smiling'"):
        read_labels(path)


def test_cli_embed_then_map_neighbours_and_probe(tmp_path: Path, checkpoint: Path, celeba_root: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    images = celeba_root / "img_align_celeba"
    out = tmp_path / "faces.npy"
    assert main(["embed", str(images), "--aligned", "--model", str(checkpoint), "--device", "cpu",
                 "--out", str(out)]) == EXIT_OK
    count = len(list(images.glob("*.jpg")))
    assert f"{count} faces of {count} images (none)" in capsys.readouterr().out
    with (tmp_path / "faces.csv").open() as file:
        assert json.loads(file.readline().split(" ", 2)[2])["model"] == str(checkpoint)
        assert tuple(next(csv.reader(file))) == INDEX_COLUMNS
    assert main(["embed", str(images), "--aligned", "--model", str(checkpoint), "--out", str(out)]) == EXIT_USAGE
    assert "exists; not overwritten" in capsys.readouterr().err

    assert main(["embeddings", "map", str(out), "--colour", "Smiling", "--out", str(tmp_path / "map.png")]) == EXIT_OK
    assert (tmp_path / "map.png").read_bytes()[:4] == b"\x89PNG"
    assert main(["embeddings", "map", str(out), "--colour", "Nothing", "--out", str(tmp_path / "m.png")]) == EXIT_USAGE
    assert "'Nothing': not a column to colour by" in capsys.readouterr().err

    first = sorted(images.glob("*.jpg"))[0]
    assert main(["embeddings", "neighbours", str(out), "--source", first.name, "-k", "2"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].split()[:3] == ["1", "1.0000", str(first)]
    assert main(["embeddings", "neighbours", str(out), "--photo", str(first), "--aligned", "-k", "1"]) == EXIT_OK
    assert capsys.readouterr().out.splitlines()[1].split()[:3] == ["1", "1.0000", str(first)]

    labels = tmp_path / "labels.csv"
    labels.write_text("source,Smiling,beauty\n" + "".join(f"{path.name},{k % 2},{1 + k % 4}\n"
                                                           for k, path in enumerate(sorted(images.glob("*.jpg")))))
    assert main(["embeddings", "probe", str(out), "--labels", str(labels), "--folds", "2", "--repeats", "1",
                 "--json"]) == EXIT_OK
    results = json.loads(capsys.readouterr().out)
    assert {(r["normalise"], r["target"], r["metric"]) for r in results} == {
        (n, t, m) for n in ("none", "l1", "l2") for t, m in (("beauty", "r2"), ("Smiling", "auc"))}


def test_cli_refuses_an_unknown_suffix_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["embed", str(ASTRONAUT), "--out", str(tmp_path / "faces.h5")]) == EXIT_USAGE
    assert "faces.h5: an embeddings file must end in .parquet or .npy" in capsys.readouterr().err


def test_real_celeba_faces_embed_with_the_default_model(shared_data: Path) -> None:
    faces = sorted((shared_data / "celeba" / "img_align_celeba").glob("*.jpg"))[:8]
    predictor = Predictor(device="cpu", batch_size=3)
    vectors = _vectors(predictor.embed([str(path) for path in faces], aligned=True))
    predictor.batch_size = 8
    np.testing.assert_allclose(_vectors(predictor.embed([str(path) for path in faces], aligned=True)), vectors,
                               atol=1e-5, rtol=1e-5)
    assert vectors.shape == (8, 512) and (vectors >= 0).all()  # pooled after a ReLU
    assert not np.allclose(normalised(vectors, "l2")[0], normalised(vectors, "l2")[1])


def test_onnx_embeddings_match_torch_and_an_old_export_is_refused_naming_it(checkpoint: Path, tmp_path: Path,
                                                                             aligned_faces: list[str]) -> None:
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from faceattr.models.onnx import OUTPUTS, OnnxNetwork
    from faceattr.training.export import export_model

    export = tmp_path / "tiny.onnx"
    export_model(checkpoint, export, "float32")
    torch_vectors = _vectors(Predictor(checkpoint, device="cpu", detector=FaceDetector("haar")).embed(
        aligned_faces[:4], aligned=True))
    onnx_predictor = Predictor(export, device="cpu", detector=FaceDetector("haar"))
    assert onnx_predictor.backend == "onnx"
    np.testing.assert_allclose(_vectors(onnx_predictor.embed(aligned_faces[:4], aligned=True)), torch_vectors,
                               atol=1e-4, rtol=1e-4)

    graph = onnx.load(export)
    assert [output.name for output in graph.graph.output] == list(OUTPUTS)
    old = [output for output in graph.graph.output if output.name != "features"]
    del graph.graph.output[:]
    graph.graph.output.extend(old)  # as exported before embeddings: attributes and beauty only
    network = OnnxNetwork(graph.SerializeToString(), {}, name="old.onnx")
    crops = np.zeros((2, 64, 64, 3), np.uint8)
    assert [output.shape for output in network(crops)] == [(2, 40), (2,)]  # still predicts
    with pytest.raises(ConfigError, match="old.onnx: this ONNX model has no 'features' output.*export it again"):
        network.with_features(crops)


def test_probe_tool_measures_every_set_and_saves_its_table(run_tool, checkpoint: Path, celeba_root: Path,
                                                           scut_root: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "celeba").symlink_to(celeba_root)
    (data / "scut_fbp5500").symlink_to(scut_root)
    result = run_tool("probe_embeddings", data, "--out", tmp_path / "out", "--model", checkpoint, "--folds", "2",
                      "--repeats", "1")
    assert result.status == 0, result.err
    record = json.loads((tmp_path / "out" / "probes.json").read_text())
    assert list(record["sets"]) == ["celeba_val", "scut_celeba_crop", "scut_training_crop",
                                    "scut_held_out_training_crop"]
    assert record["sets"]["scut_training_crop"]["faces"] == 60
    assert {r["target"] for r in record["sets"]["scut_training_crop"]["results"]} == {"beauty"}
    assert "| beauty | r2 | 60 |" in (tmp_path / "out" / "probes.md").read_text()
