"""Tests of faceattr.inference.video (tracking, smoothing, detection reuse) and of the video demo (faceattr.inference.webcam) on a real video."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from faceattr import ATTRIBUTES, FaceResult
from faceattr.errors import CheckpointError, ImageError
from faceattr.inference.benchmark import make_video
from faceattr.inference.detect import Detection
from faceattr.inference.video import (
    FaceTracker,
    VideoPredictor,
    iou,
    match,
    motion,
    thumbnail,
)
from faceattr.inference.webcam import DemoOptions, gui_problem, run_demo
from faceattr.models import deployed

REPO = Path(__file__).resolve().parents[1]

FRAME = (480, 640)
STILL, PAN, GROUP = 10, 8, 12  # frames of each part of the test video


def face(box: Sequence[float], p: float = 0.5, beauty: float = 3.0) -> FaceResult:
    """A face whose 40 probabilities are all ``p``."""
    return FaceResult(tuple(map(float, box)), 1.0, None, dict.fromkeys(ATTRIBUTES, p), (), beauty)


def noise(seed: int, shape: tuple[int, int] = (120, 160)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


class CountingDetector:
    """A detector stand-in with fixed boxes that counts its calls."""

    def __init__(self, boxes: list[tuple[float, float, float, float]]):
        self.boxes, self.calls = boxes, 0

    def detect(self, image: np.ndarray) -> list[Detection]:
        self.calls += 1
        return [Detection(box, 0.99, None) for box in self.boxes]


class FakePredictor:
    """A Predictor stand-in: thresholds 0.5, a counting detector, and a classify that records what it got."""

    def __init__(self, boxes: list[tuple[float, float, float, float]]):
        self.thresholds = np.full(len(ATTRIBUTES), 0.5)
        self.detector = CountingDetector(boxes)
        self.classified: list[list[tuple[float, ...]]] = []

    def classify(self, arrays: Sequence[np.ndarray], detections: Sequence[Sequence[Detection]]
                 ) -> list[list[FaceResult]]:
        self.classified.append([d.box for d in detections[0]])
        return [[face(d.box, p=0.7) for d in found] for found in detections]


def test_iou_of_overlapping_disjoint_and_equal_boxes() -> None:
    values = iou(np.array([[0, 0, 10, 10]]), np.array([[5, 0, 15, 10], [20, 20, 30, 30], [0, 0, 10, 10]]))
    assert np.allclose(values, [[50 / 150, 0.0, 1.0]])


def test_match_takes_the_best_pair_first_one_to_one_and_above_the_threshold() -> None:
    overlaps = np.array([[0.6, 0.9, 0.0],
                         [0.5, 0.8, 0.0],
                         [0.0, 0.0, 0.2]])
    # Row 0 takes column 1 (0.9); row 1 then gets column 0 (0.5), not its best; 0.2 is too low.
    assert match(overlaps, 0.3) == [(0, 1), (1, 0)]


def test_ids_stay_with_moving_faces_and_follow_the_input_order() -> None:
    tracker = FaceTracker([0.5] * 40)
    assert [t.track_id for t in tracker.update([face((0, 0, 50, 50)), face((100, 0, 150, 50))])] == [1, 2]
    # Both moved a little and come in the other order; a third face appears far away.
    moved = [face((104, 2, 154, 52)), face((200, 200, 250, 250)), face((5, 3, 55, 53))]
    assert [t.track_id for t in tracker.update(moved)] == [2, 3, 1]


def test_smoothing_is_an_exact_exponential_moving_average() -> None:
    tracker = FaceTracker([0.5] * 40, smoothing=0.5)
    box = (0, 0, 40, 40)
    values = [tracker.update([face(box, p, beauty)])[0].face for p, beauty in ((0.2, 2.0), (0.6, 4.0), (1.0, 1.0))]
    assert [v.probabilities["Smiling"] for v in values] == pytest.approx([0.2, 0.4, 0.7])
    assert [v.beauty for v in values] == pytest.approx([2.0, 3.0, 2.0])
    assert [len(v.attributes) for v in values] == [0, 0, 40]


def test_no_smoothing_and_no_hysteresis_give_the_predictor_thresholding() -> None:
    thresholds = np.linspace(0.1, 0.9, 40)
    tracker = FaceTracker(thresholds, smoothing=0.0, hysteresis=0.0)
    probabilities = np.linspace(0.9, 0.1, 40)
    raw = FaceResult((0.0, 0.0, 9.0, 9.0), 1.0, None, dict(zip(ATTRIBUTES, probabilities)), (), 3.3)
    result = tracker.update([raw])[0].face
    assert result.probabilities == raw.probabilities and result.beauty == 3.3
    assert result.attributes == tuple(name for name, p, t in zip(ATTRIBUTES, probabilities, thresholds) if p >= t)


def test_tracked_attributes_come_most_probable_first() -> None:
    tracker = FaceTracker(np.full(40, 0.5), smoothing=0.0, hysteresis=0.0)
    probabilities = dict.fromkeys(ATTRIBUTES, 0.1) | {"Bags_Under_Eyes": 0.6, "Smiling": 0.99, "Young": 0.8}
    result = tracker.update([FaceResult((0.0, 0.0, 9.0, 9.0), 1.0, None, probabilities, (), 3.0)])[0].face
    assert result.attributes == ("Smiling", "Young", "Bags_Under_Eyes")


def test_hysteresis_turns_on_at_the_threshold_and_off_only_below_the_margin() -> None:
    tracker = FaceTracker([0.5] * 40, smoothing=0.0, hysteresis=0.1)
    sequence = [0.45, 0.5, 0.42, 0.41, 0.39, 0.45, 0.5]
    present = [bool(tracker.update([face((0, 0, 40, 40), p)])[0].face.attributes) for p in sequence]
    assert present == [False, True, True, True, False, False, True]


def test_track_survives_max_missed_frames_and_is_dropped_after() -> None:
    tracker = FaceTracker([0.5] * 40, max_missed=2)
    box = face((0, 0, 40, 40))
    assert tracker.update([box])[0].track_id == 1
    tracker.update([])
    tracker.update([])
    assert tracker.update([box])[0].track_id == 1  # back after 2 missed frames: same track
    for _ in range(3):
        tracker.update([])
    assert tracker.track_ids == []
    assert tracker.update([box])[0].track_id == 2  # after 3 missed frames: a new one


def test_motion_counts_a_change_inside_a_small_face_box() -> None:
    before = thumbnail(np.zeros(FRAME + (3,), np.uint8))
    frame = np.zeros(FRAME + (3,), np.uint8)
    frame[80:160, 80:160] = 200  # an 80-pixel face region changes, 2% of the frame
    after = thumbnail(frame)
    whole = motion(before, after)
    assert whole == pytest.approx(200 * 0.0208, rel=0.01)
    assert motion(before, after, [(80, 80, 160, 160)]) == pytest.approx(200.0)


def test_unchanged_frames_reuse_the_detections() -> None:
    fake = FakePredictor([(20.0, 20.0, 80.0, 90.0)])
    video = VideoPredictor(fake, detect_every=10)
    frame = noise(1)
    results = [video.process(frame.copy()) for _ in range(6)]
    assert fake.detector.calls == video.detector_runs == 1
    assert fake.classified == [[(20.0, 20.0, 80.0, 90.0)]] * 6
    assert [[t.track_id for t in r] for r in results] == [[1]] * 6


def test_a_changed_frame_runs_the_detector_again() -> None:
    fake = FakePredictor([(20.0, 20.0, 80.0, 90.0)])
    video = VideoPredictor(fake, detect_every=10)
    bright = noise(1)
    dark = bright // 4  # the thumbnails' mean gray level drops by about 95
    for frame in (bright, bright, dark, dark):
        video.process(frame)
    assert [video.frames, fake.detector.calls] == [4, 2]
    assert video.detected is False  # the last frame equals the one detected before it


def test_detector_runs_every_detect_every_frames_on_a_still_scene() -> None:
    fake = FakePredictor([])
    video = VideoPredictor(fake, detect_every=10)
    frame = noise(3)
    detected = []
    for _ in range(25):
        assert video.process(frame) == []
        detected.append(video.detected)
    assert [i for i, flag in enumerate(detected) if flag] == [0, 10, 20]
    assert fake.classified == []  # no faces: the network is not run


def test_bgr_frames_reach_the_detector_and_network_as_rgb() -> None:
    seen: list[np.ndarray] = []
    fake = FakePredictor([(20.0, 20.0, 80.0, 90.0)])
    fake.detector.detect = lambda image: seen.append(image) or [Detection((20.0, 20.0, 80.0, 90.0), 0.99, None)]
    classify = fake.classify
    fake.classify = lambda arrays, detections: seen.append(arrays[0]) or classify(arrays, detections)
    rgb = noise(5)
    VideoPredictor(fake).process(np.ascontiguousarray(rgb[..., ::-1]), bgr=True)
    assert len(seen) == 2 and all(np.array_equal(image, rgb) for image in seen)


def test_without_gui_the_problem_says_how_to_get_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cv2, "getBuildInformation", lambda: "  GUI:                           NONE\n")
    problem = gui_problem()
    assert "pip uninstall -y opencv-python-headless" in problem and "--headless --output" in problem


def test_options_name_each_bad_flag() -> None:
    assert DemoOptions("0").problems() == []
    problems = DemoOptions("0", max_frames=0, max_side=16, min_face_size=0, top=-1, smoothing=-0.1).problems()
    assert problems == ["--max-frames must be at least 1", "--max-side must be at least 32",
                        "--min-face-size must be at least 1", "--top must be at least 0", "--smoothing must be in [0, 1)"]


def test_without_model_or_default_the_demo_asks_for_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(deployed, "DEFAULT_MODEL", tmp_path / "default.safetensors")
    with pytest.raises(CheckpointError, match="no default model is installed.*--model PATH"):
        run_demo(DemoOptions("0", headless=True))


def test_an_unreadable_source_is_named(tmp_path: Path) -> None:
    source = tmp_path / "missing.mp4"
    with pytest.raises(ImageError, match=str(source)):
        run_demo(DemoOptions(str(source), headless=True, model=str(tmp_path / "m.pt")))


def test_demo_tool_exits_2_on_bad_options_or_an_unreadable_source(tmp_path: Path, run_tool) -> None:
    source = tmp_path / "missing.mp4"
    for args, message in [(["0", "--headless", "--detect-every", "0"], "--detect-every must be at least 1"),
                          ([str(source), "--headless", "--model", str(tmp_path / "m.pt")], str(source))]:
        result = run_tool("webcam_demo", *args)
        assert result.status == 2 and result.err.startswith("webcam_demo: ") and message in result.err


@pytest.fixture
def torch_threads() -> Iterator[None]:
    """Restores torch's thread count, which the demo sets (--threads) for the whole process."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.real_data
@pytest.mark.usefixtures("torch_threads")
def test_headless_demo_writes_the_annotated_video_and_tracks_faces(shared_data: Path, checkpoint: Path,
                                                                   tmp_path: Path) -> None:
    source, output = tmp_path / "clip.avi", tmp_path / "annotated.avi"
    make_video(shared_data, source, STILL, PAN, GROUP, step=8)
    stats = run_demo(DemoOptions(str(source), model=str(checkpoint), headless=True, output=str(output), device="cpu"))
    assert torch.get_num_threads() == 1  # the demo's default: see faceattr.inference.webcam.build_video_predictor
    total = STILL + PAN + GROUP
    written = cv2.VideoCapture(str(output))
    assert int(written.get(cv2.CAP_PROP_FRAME_COUNT)) == stats.frames == total
    assert (written.get(cv2.CAP_PROP_FRAME_WIDTH), written.get(cv2.CAP_PROP_FRAME_HEIGHT)) == (640, 480)
    still, group = stats.track_ids[:STILL], stats.track_ids[-GROUP:]
    assert all(len(ids) == 1 for ids in stats.track_ids[:STILL + PAN])
    assert all(len(ids) == 2 for ids in group)
    assert still == [still[0]] * STILL and group == [group[0]] * GROUP
    assert not set(still[0]) & set(group[0])  # the cut to other people starts new tracks
    assert 2 <= stats.detector_runs < total / 2
