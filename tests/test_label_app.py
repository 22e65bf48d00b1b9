"""The labelling app's API refuses what it must: votes for pairs never issued or issued to someone else, replays,
unknown tokens, rater tokens on admin routes, bad choices, images by anything but their id, oversized and
non-image uploads. Each refusal is a JSON error with a stable code, and records nothing."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

import pytest
from label_web import LabelProject, bearer, make_project, swatch_jpeg
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402  (after the skips: fastapi is an extra)

from faceattr.label.app import LabelServeSettings, create_label_app  # noqa: E402
from faceattr.label.store import LabelStore  # noqa: E402


@pytest.fixture
def store(tmp_path: Path) -> LabelStore:
    return LabelStore(str(tmp_path / "labels.db"))


@pytest.fixture
def project(store: LabelStore) -> LabelProject:
    return make_project(store, images=6, raters=2)


@pytest.fixture
def client(store: LabelStore) -> Iterator[TestClient]:
    settings = LabelServeSettings(max_upload_mb=0.05, max_upload_files=3, max_json_kb=2, max_pixels=600 * 600,
                                  align=False)
    with TestClient(create_label_app(store, settings)) as test_client:
        yield test_client


def error_code(response) -> str:
    return response.json()["error"]["code"]


def next_pair(client: TestClient, token: str) -> dict:
    response = client.post("/api/next", headers=bearer(token))
    assert response.status_code == 200, response.text
    return response.json()["pair"]


def vote(client: TestClient, token: str, pair_id: int, choice: str = "left", response_ms: float = 900):
    return client.post("/api/votes", headers=bearer(token),
                       json={"pair_id": pair_id, "choice": choice, "response_ms": response_ms})


def project_votes(project: LabelProject) -> int:
    return project.store.progress(project.raters[0]).project_votes


def test_a_rater_sees_its_question_and_the_same_open_pair_until_it_votes(client: TestClient,
                                                                          project: LabelProject) -> None:
    me = client.get("/api/me", headers=bearer(project.raters[0])).json()
    assert (me["name"], me["project"], me["question"]) == ("rater-0", "colours", "Which colour do you prefer?")
    assert me["progress"]["rater_votes"] == 0 and me["progress"]["planned_votes"] > 0
    pair = next_pair(client, project.raters[0])
    assert {pair["left_id"], pair["right_id"]} <= set(project.image_ids) and pair["left_id"] != pair["right_id"]
    assert next_pair(client, project.raters[0]) == pair  # issued again, not a new one, until voted
    answer = vote(client, project.raters[0], pair["pair_id"])
    assert answer.status_code == 200, answer.text
    assert answer.json()["progress"]["rater_votes"] == 1
    assert next_pair(client, project.raters[0])["pair_id"] != pair["pair_id"]


def test_a_replayed_vote_is_refused_and_counted_once(client: TestClient, project: LabelProject) -> None:
    pair = next_pair(client, project.raters[0])
    assert vote(client, project.raters[0], pair["pair_id"]).status_code == 200
    replay = vote(client, project.raters[0], pair["pair_id"], "right")
    assert replay.status_code == 409 and error_code(replay) == "already_voted"
    assert project_votes(project) == 1


def test_a_vote_for_a_pair_never_issued_is_refused(client: TestClient, project: LabelProject) -> None:
    next_pair(client, project.raters[0])
    for pair_id in (0, 987654, -1):
        answer = vote(client, project.raters[0], pair_id)
        assert answer.status_code == 404 and error_code(answer) == "pair_not_issued", answer.text
    assert project_votes(project) == 0


def test_a_pair_voted_with_another_raters_token_is_refused_and_records_nothing(
        client: TestClient, store: LabelStore, project: LabelProject) -> None:
    other_project = make_project(store, name="other", images=4, raters=1, admin=project.admin)
    pair = next_pair(client, project.raters[0])
    for intruder in (other_project.raters[0], project.raters[1]):  # another project's rater, then a colleague
        answer = vote(client, intruder, pair["pair_id"])
        assert answer.status_code == 404 and error_code(answer) == "pair_not_issued", answer.text
    assert project_votes(project) == 0 and other_project.store.progress(other_project.raters[0]).project_votes == 0
    assert vote(client, project.raters[0], pair["pair_id"]).status_code == 200  # still open for its rater


@pytest.mark.parametrize("headers", [{}, bearer("not-a-token"), {"Authorization": "Basic abc"},
                                     {"Authorization": "Bearer "}])
def test_a_missing_or_unknown_token_is_401_on_every_route(client: TestClient, project: LabelProject,
                                                          headers: dict[str, str]) -> None:
    for method, path in (("GET", "/api/me"), ("POST", "/api/next"), ("POST", "/api/undo"),
                         ("GET", f"/api/images/{project.image_ids[0]}"), ("GET", "/api/projects"),
                         ("GET", "/api/projects/colours/ratings")):
        answer = client.request(method, path, headers=headers)
        assert answer.status_code == 401 and error_code(answer) == "unauthorized", (method, path, answer.text)
    answer = client.post("/api/votes", headers=headers, json={"pair_id": 1, "choice": "left", "response_ms": 1})
    assert answer.status_code == 401


def test_an_admin_action_with_a_rater_token_is_403(client: TestClient, project: LabelProject) -> None:
    rater = bearer(project.raters[0])
    png = {"files": ("a.png", swatch_jpeg(0), "image/jpeg")}
    for method, path, options in (
            ("GET", "/api/projects", {}), ("POST", "/api/projects", {"json": {"name": "x", "question": "q?"}}),
            ("GET", "/api/projects/colours", {}), ("POST", "/api/projects/colours/images", {"files": png}),
            ("POST", "/api/projects/colours/raters", {"json": {"name": "sneaky"}}),
            ("GET", "/api/projects/colours/ratings", {}), ("GET", "/api/projects/colours/labels.csv", {}),
            ("GET", "/api/projects/colours/export.zip", {})):
        answer = client.request(method, path, headers=rater, **options)
        assert answer.status_code == 403 and error_code(answer) == "forbidden", (method, path, answer.text)
    assert [p.name for p in project.store.projects()] == ["colours"]
    assert project.store.project("colours").images == 6


@pytest.mark.parametrize("body", [{"choice": "up"}, {"choice": "LEFT"}, {"choice": ""}, {"response_ms": -5},
                                  {"response_ms": "fast"}, {"pair_id": "one"}])
def test_an_invalid_vote_is_422_and_records_nothing(client: TestClient, project: LabelProject,
                                                    body: dict) -> None:
    pair = next_pair(client, project.raters[0])
    answer = client.post("/api/votes", headers=bearer(project.raters[0]),
                         json={"pair_id": pair["pair_id"], "choice": "left", "response_ms": 800, **body})
    assert answer.status_code == 422 and error_code(answer) == "invalid_parameter", answer.text
    assert project_votes(project) == 0


def test_undo_reopens_the_last_pair_and_takes_its_vote_back(client: TestClient, project: LabelProject) -> None:
    token = project.raters[0]
    nothing = client.post("/api/undo", headers=bearer(token))
    assert nothing.status_code == 409 and error_code(nothing) == "nothing_to_undo"
    first = next_pair(client, token)
    vote(client, token, first["pair_id"])
    second = next_pair(client, token)
    vote(client, token, second["pair_id"], "right")
    undone = client.post("/api/undo", headers=bearer(token)).json()
    assert undone["pair"] == second and undone["progress"]["rater_votes"] == 1
    assert next_pair(client, token) == second  # open again, and votable once more
    assert vote(client, token, second["pair_id"], "tie").status_code == 200
    assert project_votes(project) == 2


def test_images_are_served_by_id_only_and_only_to_their_project(client: TestClient, store: LabelStore,
                                                                project: LabelProject) -> None:
    rater = bearer(project.raters[0])
    face = client.get(f"/api/images/{project.image_ids[0]}", headers=rater)
    assert face.status_code == 200 and face.headers["content-type"] == "image/jpeg"
    assert Image.open(io.BytesIO(face.content)).size == (178, 218)
    thumbnail = client.get(f"/api/images/{project.image_ids[0]}?kind=thumbnail", headers=rater)
    assert Image.open(io.BytesIO(thumbnail.content)).size == (48, 59)

    other = make_project(store, name="other", images=2, raters=0, admin=project.admin)
    refused = client.get(f"/api/images/{other.image_ids[0]}", headers=rater)
    assert refused.status_code == 404 and error_code(refused) == "not_found"
    assert client.get(f"/api/images/{other.image_ids[0]}", headers=bearer(project.admin)).status_code == 200
    for path in ("/api/images/..%2F..%2Fetc%2Fpasswd", "/api/images/../../etc/passwd", "/api/images/%2Fetc%2Fpasswd",
                 "/api/images/image-00", "/api/images/-1", "/api/images/999999"):
        answer = client.get(path, headers=rater)
        assert answer.status_code in (404, 422) and "error" in answer.json(), (path, answer.text)
    kind = client.get(f"/api/images/{project.image_ids[0]}?kind=../face", headers=rater)
    assert kind.status_code == 422 and error_code(kind) == "invalid_parameter"


def png_bytes(size: tuple[int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (200, 120, 90)).save(out, "PNG")
    return out.getvalue()


def upload(client: TestClient, admin: str, *files: tuple[str, bytes]):
    return client.post("/api/projects/colours/images", headers=bearer(admin),
                       files=[("files", (name, data, "application/octet-stream")) for name, data in files])


def test_an_upload_adds_every_image_or_none(client: TestClient, project: LabelProject) -> None:
    added = upload(client, project.admin, ("a.jpg", swatch_jpeg(1)), ("b.png", png_bytes((120, 150))))
    assert added.status_code == 201, added.text
    assert [item["name"] for item in added.json()["added"]] == ["a.jpg", "b.png"]
    assert project.store.project("colours").images == 8

    # A text file named like a photo: 415, named in the message; the good file beside it is not added.
    refused = upload(client, project.admin, ("c.jpg", swatch_jpeg(2)), ("notes.jpg", b"not a photo at all"))
    assert refused.status_code == 415 and error_code(refused) == "unsupported_media_type"
    assert "notes.jpg" in refused.json()["error"]["message"]
    # A name already in the project: 409, named; nothing added either.
    clash = upload(client, project.admin, ("d.jpg", swatch_jpeg(3)), ("a.jpg", swatch_jpeg(4)))
    assert (clash.status_code, error_code(clash)) == (409, "image_exists")
    assert "a.jpg" in clash.json()["error"]["message"]
    assert project.store.project("colours").images == 8


def test_uploads_over_the_size_pixel_or_file_limits_are_refused(client: TestClient, project: LabelProject) -> None:
    big_file = upload(client, project.admin, ("noise.png", Image.effect_noise((200, 200), 80).tobytes() * 2))
    assert big_file.status_code == 413 and error_code(big_file) == "payload_too_large"  # one file over 0.05 MiB
    too_many_pixels = upload(client, project.admin, ("wide.png", png_bytes((1000, 400))))
    assert too_many_pixels.status_code == 413 and "1000x400" in too_many_pixels.json()["error"]["message"]
    declared = client.post("/api/projects/colours/images", headers={**bearer(project.admin),
                                                                    "Content-Length": str(10**9)}, content=b"x")
    assert declared.status_code == 413
    assert project.store.project("colours").images == 6


def test_a_json_body_over_its_limit_is_413(client: TestClient, project: LabelProject) -> None:
    answer = client.post("/api/projects", headers=bearer(project.admin),
                         json={"name": "big", "question": "?" * 5000})
    assert answer.status_code == 413 and error_code(answer) == "payload_too_large"
    assert [p.name for p in project.store.projects()] == ["colours"]


def test_the_admin_creates_a_project_and_a_rater_whose_link_keeps_the_token_in_the_fragment(
        client: TestClient, project: LabelProject) -> None:
    admin = bearer(project.admin)
    created = client.post("/api/projects", headers=admin,
                          json={"name": "age", "question": "Who looks younger?", "settings": {"votes_per_image": 4}})
    assert created.status_code == 201 and created.json()["name"] == "age", created.text
    again = client.post("/api/projects", headers=admin, json={"name": "age", "question": "Who looks older?"})
    assert again.status_code == 409 and error_code(again) == "project_exists"
    unknown = client.post("/api/projects", headers=admin, json={"name": "x", "question": "?", "settings": {"k": 1}})
    assert unknown.status_code == 422 and "k" in unknown.json()["error"]["message"]

    rater = client.post("/api/projects/age/raters", headers=admin, json={"name": "Ana"}).json()
    assert rater["link"] == f"http://testserver/vote#token={rater['token']}"
    assert client.get("/api/me", headers=bearer(rater["token"])).json()["question"] == "Who looks younger?"
    missing = client.post("/api/projects/nope/raters", headers=admin, json={"name": "Bo"})
    assert missing.status_code == 404 and error_code(missing) == "not_found"


def test_a_finished_project_issues_no_pair(client: TestClient, store: LabelStore) -> None:
    small = make_project(store, name="small", images=2, raters=1, cap_per_image=1)  # done after one vote
    token = small.raters[0]
    pair = next_pair(client, token)
    assert vote(client, token, pair["pair_id"]).status_code == 200
    answer = client.post("/api/next", headers=bearer(token)).json()
    assert answer["pair"] is None and answer["progress"]["project_votes"] == 1


def test_pages_and_errors(client: TestClient) -> None:
    page = client.get("/vote")
    assert page.status_code == 200 and "vote.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert page.headers["referrer-policy"] == "no-referrer"
    assert client.get("/leaderboard").status_code == 200
    assert client.get("/static/vote.js").headers["content-type"].startswith("text/javascript")
    missing = client.get("/api/nothing-here")
    assert missing.status_code == 404 and error_code(missing) == "not_found"
    wrong_method = client.get("/api/votes")
    assert wrong_method.status_code == 405 and error_code(wrong_method) == "method_not_allowed"
    assert client.get("/healthz").json() == {"status": "ok"}


def test_the_export_downloads_are_the_labels_table_and_the_whole_export(client: TestClient,
                                                                       project: LabelProject) -> None:
    import csv
    import zipfile

    from faceattr.label.project import EXPORT_COLUMNS

    token = project.raters[0]
    while (pair := next_pair(client, token)) is not None and project_votes(project) < 30:
        better = min(pair["left_id"], pair["right_id"])  # the image added first wins
        vote(client, token, pair["pair_id"], "left" if better == pair["left_id"] else "right")
    admin = bearer(project.admin)
    table = client.get("/api/projects/colours/labels.csv?min_votes=1", headers=admin)
    assert table.status_code == 200 and table.headers["content-type"].startswith("text/csv")
    assert 'filename="colours.csv"' in table.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(table.text)))
    assert tuple(rows[0]) == EXPORT_COLUMNS and len(rows) == 6
    assert rows[0]["source"] == "image-00" and all(1 <= float(row["beauty"]) <= 5 for row in rows)
    archive = client.get("/api/projects/colours/export.zip", headers=admin)
    assert archive.status_code == 200 and archive.headers["content-type"] == "application/zip"
    names = zipfile.ZipFile(io.BytesIO(archive.content)).namelist()
    assert {"colours/labels.csv", "colours/votes.csv"} <= set(names)
    assert sum(name.startswith("colours/images/") for name in names) == 6
    bad = client.get("/api/projects/colours/labels.csv?high_share=2", headers=admin)
    assert bad.status_code == 422 and error_code(bad) == "invalid_parameter"
