"""The service's web page in a real browser: Debian's ``chromium`` driven by Playwright, against the app under uvicorn.

Photos are uploaded through the page's file input; the webcam is Chromium's fake camera playing a
``.y4m`` video of a shared photo panning sideways (:mod:`faceattr.synthetic.video`). Screenshots
go to each test's tmp dir. Without ``chromium`` these tests skip, except in CI (``CI=true``), where
``.ci/run`` installs it and its absence is a failure.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import app_in_thread, chromium
from PIL import Image

from faceattr.files import save_table
from faceattr.synthetic.video import pan_frames, write_y4m

pytest.importorskip("fastapi")
playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")

from faceattr.serve.app import create_app  # noqa: E402  (after the skips: fastapi is an extra)
from faceattr.serve.settings import ServeSettings  # noqa: E402

TWO_PEOPLE = "faces/face_recognition/examples/two_people.jpg"
#: A face near the photo's top middle; the camera pans across it so that it moves right in the video.
PANNED = "faces/face_recognition/examples/obama-480p.jpg"
VIDEO_SIZE, VIDEO_FPS, VIDEO_FRAMES = (320, 240), 30, 120  # a webcam's rate, so the server sets the pace
#: The crop window's left edge goes from 290 to 0 photo pixels: the face moves 166 video pixels right.
PAN_X, PAN_CROP_WIDTH = (290, 0), 560
#: How long the webcam test watches the overlay.
WATCH_S = 4.0


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with app_in_thread(create_app(ServeSettings())) as url:
        yield url


@pytest.fixture(scope="module")
def browser_type() -> Iterator[Any]:
    path = chromium()
    with playwright.sync_playwright() as driver:
        yield driver.chromium, path


def launch(browser_type: Any, *args: str) -> Any:
    kind, path = browser_type
    return kind.launch(executable_path=path, args=list(args))


@pytest.fixture
def page(browser_type: Any, server: str) -> Iterator[Any]:
    browser = launch(browser_type)
    view = browser.new_page(viewport={"width": 1280, "height": 900})
    view.goto(server)
    yield view
    browser.close()


@pytest.mark.real_data
def test_upload_shows_each_face_in_a_sortable_table_and_on_the_annotated_image(
        shared_data: Path, page: Any, tmp_path: Path) -> None:
    page.set_input_files("#file-input", str(shared_data / TWO_PEOPLE))
    card = page.locator("article.result")
    card.and_(page.locator("[data-state=done]")).wait_for(timeout=30_000)
    page.screenshot(path=tmp_path / "upload.png", full_page=True)
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: one column, nothing wider than the screen
    page.screenshot(path=tmp_path / "upload-phone.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= 390

    faces = card.locator("section.face")
    assert card.get_attribute("data-faces") == "2" and faces.count() == 2
    for index in range(2):
        face = faces.nth(index)
        rows = face.locator("tbody tr")
        assert rows.count() == 40
        present = face.locator("tbody tr.present td:first-child").all_inner_texts()
        assert set(present) == set(face.locator(".present-list").inner_text().split(", ")) - {"No attribute present"}
        assert 1.0 <= float(face.get_attribute("data-beauty")) <= 5.0
        probabilities = [float(p) for p in rows.evaluate_all("rows => rows.map(r => r.dataset.probability)")]
        assert probabilities == sorted(probabilities, reverse=True)  # most probable first

    table = faces.first.locator("table")
    table.locator("[data-sort=name]").click()
    names = table.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.name)")
    assert names == sorted(names, key=str.lower) and len(names) == 40
    table.locator("[data-sort=name]").click()
    assert table.locator("tbody tr").first.get_attribute("data-name") == names[-1]

    # The annotated image is the photo at full size with a box in the face's colour on each face.
    canvas = card.locator("canvas.annotated")
    width, height = Image.open(shared_data / TWO_PEOPLE).size
    assert canvas.evaluate("c => [c.width, c.height]") == [width, height]
    assert canvas.bounding_box()["width"] > 100
    boxes = json.loads(canvas.get_attribute("data-boxes"))
    assert len(boxes) == 2
    colours = [faces.nth(i).locator(".face-name").evaluate("e => getComputedStyle(e).backgroundColor")
               for i in range(2)]
    for (x1, y1, x2, y2), colour in zip(boxes, colours):
        pixel = canvas.evaluate(f"c => [...c.getContext('2d').getImageData({round((x1 + x2) / 2)}, {round(y1)}, 1, 1).data]")
        assert colour == "rgb({}, {}, {})".format(*pixel[:3])


DROP = """([photo, name]) => {
    const transfer = new DataTransfer();
    const bytes = Uint8Array.from(atob(photo), (c) => c.charCodeAt(0));
    transfer.items.add(new File([bytes], name, {type: "image/jpeg"}));
    transfer.items.add(new File(["not a photo"], "notes.txt", {type: "text/plain"}));
    document.getElementById("drop-zone").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer}));
}"""


@pytest.mark.real_data
def test_dropped_files_get_a_card_each_and_a_new_policy_runs_them_again(shared_data: Path, page: Any) -> None:
    photo = base64.b64encode((shared_data / TWO_PEOPLE).read_bytes()).decode()
    page.evaluate(DROP, [photo, "two people.jpg"])
    done, failed = page.locator("article.result[data-state=done]"), page.locator("article.result[data-state=error]")
    done.wait_for(timeout=30_000)
    failed.wait_for(timeout=30_000)
    assert page.locator("article.result").count() == 2
    assert done.locator(".file-name").inner_text() == "two people.jpg"
    assert failed.locator(".file-name").inner_text() == "notes.txt"

    default = page.locator("#decision").input_value()
    other = next(policy for policy in ("balanced", "probability") if policy != default)
    page.select_option("#decision", other)
    page.wait_for_function(f"[...document.querySelectorAll('article.result[data-state=done] .summary')]"
                           f".some(e => e.textContent.endsWith('· {other}'))", timeout=30_000)
    assert done.locator(".summary").inner_text().endswith(other)
    for face in done.locator("section.face").all():
        listed = set(face.locator(".present-list").inner_text().split(", ")) - {"No attribute present"}
        assert set(face.locator("tbody tr.present td:first-child").all_inner_texts()) == listed


def test_a_text_file_gets_the_services_message(page: Any, tmp_path: Path) -> None:
    page.set_input_files("#file-input", files=[{"name": "notes.txt", "mimeType": "text/plain", "buffer": b"not a photo"}])
    card = page.locator("article.result")
    card.and_(page.locator("[data-state=error]")).wait_for(timeout=15_000)
    page.screenshot(path=tmp_path / "text-file.png", full_page=True)
    message = card.locator(".message")
    assert message.is_visible()
    assert "not an image" in message.inner_text()
    assert card.locator("canvas.annotated").is_hidden()


ASTRONAUT = Path(__file__).resolve().parents[1] / "examples" / "astronaut.jpg"

#: Counts the heatmap canvas's non-transparent pixels inside a box and outside the box grown by its own size.
MAP_PIXELS = """(canvas, [x1, y1, x2, y2]) => {
    const alpha = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    const [w, h] = [x2 - x1, y2 - y1];
    let inside = 0, far = 0;
    for (let y = 0; y < canvas.height; y++) for (let x = 0; x < canvas.width; x++) {
        if (!alpha[4 * (y * canvas.width + x) + 3]) continue;
        if (x >= x1 && x < x2 && y >= y1 && y < y2) inside++;
        if (x < x1 - w || x >= x2 + w || y < y1 - h || y >= y2 + h) far++;
    }
    return [inside, far];
}"""


def test_a_clicked_attribute_shows_its_map_over_the_face_and_a_second_click_hides_it(
        page: Any, tmp_path: Path) -> None:
    page.set_input_files("#file-input", str(ASTRONAUT))
    card = page.locator("article.result[data-state=done]")
    card.wait_for(timeout=30_000)
    (box,) = json.loads(card.locator("canvas.annotated").get_attribute("data-boxes"))
    heatmap, bar = card.locator("canvas.heatmap"), card.locator(".map-bar")
    smiling = card.locator('section.face button.explain[data-target="Smiling"]')
    assert heatmap.is_hidden() and smiling.get_attribute("aria-pressed") == "false"

    smiling.focus()
    page.keyboard.press("Enter")  # a button: the keyboard works as a click does
    page.wait_for_function("document.querySelector('canvas.heatmap').dataset.target === 'Smiling'", timeout=30_000)
    page.screenshot(path=tmp_path / "smiling-map.png", full_page=True)
    assert heatmap.is_visible() and bar.is_visible() and smiling.get_attribute("aria-pressed") == "true"
    assert "Smiling" in bar.locator(".map-caption").inner_text()
    assert heatmap.evaluate("c => [c.width, c.height]") == card.locator("canvas.annotated").evaluate(
        "c => [c.width, c.height]")
    inside, far = heatmap.evaluate(MAP_PIXELS, box)
    assert inside > 0.2 * (box[2] - box[0]) * (box[3] - box[1]) and far == 0  # on the face, nowhere else
    bar.locator(".map-opacity").fill("1")
    assert heatmap.evaluate("c => getComputedStyle(c).opacity") == "1"

    beauty = card.locator("section.face button.explain.beauty")
    beauty.click()  # another item replaces the map, and only it is highlighted
    page.wait_for_function("document.querySelector('canvas.heatmap').dataset.target === 'beauty'", timeout=30_000)
    assert smiling.get_attribute("aria-pressed") == "false" and beauty.get_attribute("aria-pressed") == "true"
    beauty.click()
    assert heatmap.is_hidden() and bar.is_hidden() and beauty.get_attribute("aria-pressed") == "false"
    assert heatmap.evaluate(MAP_PIXELS, box) == [0, 0]


def test_an_explain_error_shows_in_the_cards_message(page: Any) -> None:
    refusal = {"error": {"code": "explain_unavailable", "message": "this service runs the model with the onnx "
                                                                   "backend, which has no gradients"}}
    page.route("**/v1/explain*", lambda route: route.fulfill(status=501, content_type="application/json",
                                                              body=json.dumps(refusal)))
    page.set_input_files("#file-input", str(ASTRONAUT))
    card = page.locator("article.result[data-state=done]")
    card.wait_for(timeout=30_000)
    smiling = card.locator('section.face button.explain[data-target="Smiling"]')
    smiling.click()
    message = card.locator(".message")
    message.wait_for(state="visible", timeout=15_000)
    assert "no gradients" in message.inner_text()
    assert card.locator("canvas.heatmap").is_hidden() and smiling.get_attribute("aria-pressed") == "false"


def test_the_decision_policy_defaults_to_the_models(page: Any, server: str) -> None:
    import httpx

    model = httpx.get(f"{server}/v1/model").json()
    select = page.locator("#decision")
    page.wait_for_function("document.getElementById('decision').options.length > 0")
    assert select.input_value() == model["default_decision"]
    assert select.locator("option").all_inner_texts() == model["decision_policies"]


def test_the_api_key_field_appears_when_the_server_asks_and_the_key_is_kept(browser_type: Any) -> None:
    key = "page-test-key"
    browser = launch(browser_type)
    try:
        with app_in_thread(create_app(ServeSettings(api_key=key))) as url:
            page = browser.new_page()
            page.goto(url)
            field = page.locator("#api-key")
            field.wait_for(state="visible", timeout=15_000)
            assert "API key" in page.locator("#message").inner_text()
            field.fill(key)
            field.press("Enter")
            page.wait_for_function("document.getElementById('decision').options.length > 0")
            assert page.locator("#message").is_hidden()
            page.reload()  # the key is remembered: the page works without asking again
            page.wait_for_function("document.getElementById('decision').options.length > 0")
            assert field.is_hidden()
            page.set_input_files("#file-input", files=[{"name": "a.txt", "mimeType": "text/plain", "buffer": b"text"}])
            page.locator("article.result[data-state=error] .message").wait_for(timeout=15_000)
            assert "not an image" in page.locator("article.result .message").inner_text()  # past the key check
    finally:
        browser.close()


def panning_video(shared_data: Path, folder: Path) -> Path:
    photo = np.asarray(Image.open(shared_data / PANNED).convert("RGB"))
    frames = pan_frames(photo, VIDEO_SIZE, PAN_X, VIDEO_FRAMES, crop_width=PAN_CROP_WIDTH)
    return write_y4m(folder / "pan.y4m", frames, VIDEO_FPS)


@pytest.mark.real_data
def test_webcam_overlays_follow_the_panning_face_and_show_the_fps(
        shared_data: Path, browser_type: Any, server: str, tmp_path: Path) -> None:
    video = panning_video(shared_data, tmp_path)
    browser = launch(browser_type, "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
                     f"--use-file-for-fake-video-capture={video}")
    try:
        page = browser.new_page(viewport={"width": 900, "height": 800})
        page.goto(server)
        page.click("#tab-webcam")
        page.click("#camera-toggle")
        overlay = page.locator("#overlay")
        seen: list[tuple[int, list[dict[str, Any]]]] = []
        started = time.monotonic()
        while time.monotonic() - started < WATCH_S:
            frames = int(overlay.get_attribute("data-frames"))
            if not seen or frames != seen[-1][0]:
                seen.append((frames, json.loads(overlay.get_attribute("data-boxes"))))
            page.wait_for_timeout(50)
        fps = float(page.locator("#fps").get_attribute("data-fps"))
        latency = float(page.locator("#latency").get_attribute("data-ms"))
        page.screenshot(path=tmp_path / "webcam.png")
        webcam_error = page.locator("#webcam-message").inner_text()
    finally:
        browser.close()

    answered = seen[-1][0]
    print(f"\nwebcam page: {fps:.1f} FPS in the browser, {answered} frames answered in {WATCH_S:.0f} s, "
          f"last frame {latency:.0f} ms at the server")
    save_table(tmp_path, "webcam_fps",
               "| video | frames answered | seconds | FPS shown | last server latency (ms) |\n|---|---|---|---|---|\n"
               f"| {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]} at {VIDEO_FPS} fps | {answered} | {WATCH_S:.0f} | {fps:.1f} | "
               f"{latency:.0f} |\n",
               {"video_size": list(VIDEO_SIZE), "video_fps": VIDEO_FPS, "frames_answered": answered,
                "seconds": WATCH_S, "fps_shown": fps, "last_latency_ms": latency})
    assert webcam_error == ""
    assert fps > 0
    with_face = [boxes for _, boxes in seen if len(boxes) == 1]
    assert len(with_face) >= 0.8 * len(seen) >= 4, seen
    # Between consecutive answers the face keeps its id and moves right, but where the looping video
    # starts over (a jump left by most of the pan), which gives it a new track.
    steps = []
    for before, after in zip(with_face, with_face[1:]):
        (x1, _, x2, _), (u1, _, u2, _) = before[0]["box"], after[0]["box"]
        step = (u1 + u2 - x1 - x2) / 2
        if step > -50:
            assert after[0]["id"] == before[0]["id"]
            steps.append(step)
    assert sum(steps) > 30 and sum(s > 0 for s in steps) > 2 * sum(s < 0 for s in steps), steps
