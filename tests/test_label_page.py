"""The voting and leaderboard pages in a real browser: Debian's ``chromium`` driven by Playwright, against the
labelling app under uvicorn on a SQLite store.

Images are colour swatches (``image-00`` red, ``image-01`` green, ...); a rater who always prefers the lower
index makes the leaderboard's order known. Screenshots go to each test's tmp dir. Without ``chromium`` these
tests skip, except in CI (``CI=true``), where ``.ci/run`` installs it and its absence is a failure.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import app_in_thread, chromium
from label_web import LabelProject, bearer, make_project

pytest.importorskip("fastapi")
playwright = pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

from faceattr.label.app import LabelServeSettings, create_label_app  # noqa: E402  (after the skips)
from faceattr.label.store import LabelStore  # noqa: E402

PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
#: Votes each of the leaderboard test's two raters casts: 10 per image, every pair of 6 images about 4 times.
VOTES_EACH = 30


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    path = chromium()
    with playwright.sync_playwright() as driver:
        launched = driver.chromium.launch(executable_path=path)
        yield launched
        launched.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, LabelProject]]:
    """The app on a fresh store with a project of 6 colour swatches and 2 raters: its URL and the project."""
    store = LabelStore(str(tmp_path / "labels.db"))
    project = make_project(store, images=6, raters=2)
    with app_in_thread(create_label_app(store, LabelServeSettings(align=False))) as url:
        yield url, project


def index_of(project: LabelProject, image_id: str | int) -> int:
    return project.image_ids.index(int(image_id))


def shown_pair(page: Any) -> tuple[int, int, int]:
    """(pair id, left image id, right image id) of the pair on screen, once the page is ready for a choice."""
    page.locator("body[data-state=ready]").wait_for(timeout=15_000)
    view = page.locator("#pair")
    return tuple(int(view.get_attribute(f"data-{key}")) for key in ("pair-id", "left-id", "right-id"))


def wait_past(page: Any, pair_id: int) -> None:
    """Waits for another pair ready on screen, or the project done.

    CSS waits only: the page's Content-Security-Policy forbids the string evaluation that
    ``wait_for_function`` needs."""
    page.locator(f"body[data-state=ready] #pair:not([data-pair-id='{pair_id}'])").or_(
        page.locator("body[data-state=done]")).wait_for(timeout=15_000)


def test_a_rater_votes_ten_pairs_by_keyboard_undoes_one_and_the_votes_are_stored(
        browser: Any, served: tuple[str, LabelProject], tmp_path: Path) -> None:
    url, project = served
    page = browser.new_page(viewport=DESKTOP)
    page.goto(f"{url}/vote#token={project.raters[0]}")
    shown_pair(page)
    assert page.locator("h1").inner_text() == "Which colour do you prefer?"
    chosen = []
    for number in range(10):
        pair_id, left, right = shown_pair(page)
        if number == 0:
            page.screenshot(path=tmp_path / "vote.png")
            assert page.locator("#left-image").evaluate("image => image.naturalWidth") == 178
        key = "ArrowLeft" if index_of(project, left) < index_of(project, right) else "ArrowRight"
        page.keyboard.press(key)
        chosen.append(pair_id)
        wait_past(page, pair_id)
    assert "You: 10 votes" in page.locator("#progress-text").inner_text()
    assert project.store.progress(project.raters[0]).rater_votes == 10

    page.keyboard.press("Backspace")  # the last vote back: its pair on screen again
    page.locator(f"body[data-state=ready] #pair[data-pair-id='{chosen[-1]}']").wait_for(timeout=15_000)
    assert project.store.progress(project.raters[0]).rater_votes == 9
    assert "You: 9 votes" in page.locator("#progress-text").inner_text()
    page.keyboard.press("t")  # a tie this time
    wait_past(page, chosen[-1])
    assert project.store.progress(project.raters[0]).rater_votes == 10
    page.close()


def test_a_double_tap_or_a_held_key_sends_one_vote(browser: Any, served: tuple[str, LabelProject]) -> None:
    url, project = served
    page = browser.new_page(viewport=PHONE, has_touch=True)
    page.goto(f"{url}/vote#token={project.raters[0]}")
    pair_id, _, _ = shown_pair(page)
    page.locator("#left").dblclick()
    wait_past(page, pair_id)
    assert project.store.progress(project.raters[0]).rater_votes == 1
    pair_id, _, _ = shown_pair(page)
    page.keyboard.down("ArrowRight")
    page.keyboard.down("ArrowRight")  # auto-repeat: the event says repeat, and the page ignores it
    page.keyboard.up("ArrowRight")
    wait_past(page, pair_id)
    shown_pair(page)
    assert project.store.progress(project.raters[0]).rater_votes == 2
    page.close()


def test_the_vote_page_fits_a_phone_with_both_faces_visible(browser: Any, served: tuple[str, LabelProject],
                                                            tmp_path: Path) -> None:
    url, project = served
    page = browser.new_page(viewport=PHONE, has_touch=True, is_mobile=True, device_scale_factor=2)
    page.goto(f"{url}/vote#token={project.raters[0]}")
    pair_id, _, _ = shown_pair(page)
    page.screenshot(path=tmp_path / "vote-phone.png")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    for side in ("#left", "#right"):
        box = page.locator(side).bounding_box()
        assert box["x"] >= 0 and box["x"] + box["width"] <= PHONE["width"] and box["width"] >= 150, (side, box)
        assert box["y"] + box["height"] <= PHONE["height"], (side, box)  # no scrolling to see a face
    for button in ("#tie", "#skip", "#undo"):
        box = page.locator(button).bounding_box()
        assert box["height"] >= 44 and box["y"] + box["height"] <= PHONE["height"], (button, box)  # a thumb's size
    page.locator("#right").tap()
    wait_past(page, pair_id)
    assert project.store.progress(project.raters[0]).rater_votes == 1
    page.close()


def test_a_bad_link_or_a_finished_project_says_so(browser: Any, served: tuple[str, LabelProject],
                                                  tmp_path: Path) -> None:
    url, project = served
    page = browser.new_page(viewport=DESKTOP)
    page.goto(f"{url}/vote#token=not-a-real-token")
    page.locator("body[data-state=error]").wait_for(timeout=15_000)
    assert "not valid" in page.locator("#message").inner_text()
    page.goto(f"{url}/vote")
    page.reload()
    page.locator("body[data-state=error]").wait_for(timeout=15_000)
    assert "personal link" in page.locator("#message").inner_text()

    small = make_project(project.store, name="small", images=2, raters=1, admin=project.admin, cap_per_image=1)
    with httpx.Client(base_url=url, headers=bearer(small.raters[0])) as client:  # one vote finishes it
        pair = client.post("/api/next").json()["pair"]
        client.post("/api/votes", json={"pair_id": pair["pair_id"], "choice": "left", "response_ms": 700})
    page.goto(f"{url}/vote#token={small.raters[0]}")
    page.locator("body[data-state=done]").wait_for(timeout=15_000)
    assert "no more votes" in page.locator("#done").inner_text()
    assert page.locator("#pair").is_hidden() and page.locator("#undo").is_enabled()
    page.screenshot(path=tmp_path / "done.png")
    page.close()


def test_the_leaderboard_shows_the_order_the_votes_favour(browser: Any, served: tuple[str, LabelProject],
                                                          tmp_path: Path) -> None:
    url, project = served
    # Both raters always prefer the lower index; the second clicks through quickly, as a careless rater would.
    with httpx.Client(base_url=url) as client:
        for token, response_ms in zip(project.raters, (900, 150)):
            for _ in range(VOTES_EACH):
                pair = client.post("/api/next", headers=bearer(token)).json()["pair"]
                if pair is None:
                    break
                better = min(pair["left_id"], pair["right_id"], key=lambda image: index_of(project, image))
                choice = "left" if better == pair["left_id"] else "right"
                client.post("/api/votes", headers=bearer(token),
                            json={"pair_id": pair["pair_id"], "choice": choice, "response_ms": response_ms})
    page = browser.new_page(viewport=DESKTOP)
    page.goto(f"{url}/leaderboard#token={project.admin}&project={project.name}")
    page.locator("body[data-state=ready]").wait_for(timeout=15_000)
    page.screenshot(path=tmp_path / "leaderboard.png", full_page=True)
    names = page.locator("#images tbody tr").evaluate_all("rows => rows.map(r => r.dataset.name)")
    assert names == [f"image-{index:02d}" for index in range(6)]
    assert page.locator("#images tbody tr td:first-child").all_inner_texts() == [str(rank) for rank in range(1, 7)]
    assert page.locator("#images img.thumbnail").evaluate_all("images => images.map(i => i.naturalWidth)") == [48] * 6
    assert float(page.locator("#summary").get_attribute("data-reliability")) > 0.5
    raters = page.locator("#raters tbody tr")
    assert raters.evaluate_all("rows => rows.map(r => [r.dataset.rater, r.dataset.careless])") == [
        ["rater-0", "false"], ["rater-1", "true"]]
    page.set_viewport_size(PHONE)
    page.screenshot(path=tmp_path / "leaderboard-phone.png", full_page=True)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    page.close()
