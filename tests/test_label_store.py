"""The labelling database: tokens, issued pairs, one vote per pair, undo, live Elo equal to a replay,
images by project, on SQLite and on a real PostgreSQL server (`.ci/postgres`)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from faceattr.label.errors import LabelError
from faceattr.label.ratings import elo_ratings
from faceattr.label.schedule import ScheduleSettings
from faceattr.label.store import LabelStore


@pytest.fixture
def store(label_database: str) -> LabelStore:
    store = LabelStore(label_database)
    yield store
    store.close()


def make_project(store: LabelStore, name: str = "selfies", images: int = 6, **settings) -> list[int]:
    store.create_project(name, "Which face is more attractive?", ScheduleSettings(**settings))
    return [store.add_image(name, f"{name}/{i}.jpg", f"face {name} {i}".encode(), f"thumb {i}".encode())
            for i in range(images)]


def refusal(call, *args, **kwargs) -> LabelError:
    with pytest.raises(LabelError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_tokens_open_only_their_own_doors(store: LabelStore) -> None:
    make_project(store)
    admin, rater = store.create_admin_token(), store.add_rater("selfies", "ann")
    store.check_admin(admin)
    assert store.rater(rater).name == "ann" and store.rater(rater).project == "selfies"
    assert (refusal(store.check_admin, rater).status, refusal(store.check_admin, rater).code) == (403, "forbidden")
    assert refusal(store.next_pair, admin).code == "forbidden"
    for unknown in (None, "", "fa_rater_guessed", admin + "x"):
        assert refusal(store.next_pair, unknown).code == "unauthorized"
        assert refusal(store.check_admin, unknown).status == 401


def test_a_pair_is_issued_once_and_reissued_until_voted(store: LabelStore) -> None:
    ids = make_project(store)
    token = store.add_rater("selfies", "ann")
    pair = store.next_pair(token)
    assert {pair.left_id, pair.right_id} <= set(ids) and pair.left_id != pair.right_id
    assert store.next_pair(token).pair_id == pair.pair_id  # a reloaded page gets the same pair
    receipt = store.vote(token, pair.pair_id, "left", response_ms=700)
    assert (receipt.pair_id, receipt.choice, receipt.progress.rater_votes) == (pair.pair_id, "left", 1)
    assert receipt.progress.planned_votes == 20 * len(ids)
    assert store.next_pair(token).pair_id != pair.pair_id


def test_a_vote_counts_once_and_only_for_a_pair_issued_to_that_rater(store: LabelStore) -> None:
    make_project(store)
    make_project(store, "other")
    ann, bob = store.add_rater("selfies", "ann"), store.add_rater("selfies", "bob")
    eve = store.add_rater("other", "eve")
    pair = store.next_pair(ann)
    assert refusal(store.vote, ann, pair.pair_id + 1000, "left").code == "pair_not_issued"
    assert refusal(store.vote, bob, pair.pair_id, "left").code == "pair_not_issued"  # another rater's pair
    assert refusal(store.vote, eve, pair.pair_id, "left").code == "pair_not_issued"  # another project's rater
    assert refusal(store.vote, ann, pair.pair_id, "maybe").code == "invalid_parameter"
    assert refusal(store.vote, ann, pair.pair_id, "left", response_ms=-5).code == "invalid_parameter"
    store.vote(ann, pair.pair_id, "right")
    replay = refusal(store.vote, ann, pair.pair_id, "left")
    assert (replay.status, replay.code) == (409, "already_voted")
    assert [vote["choice"] for vote in store.raw_votes("selfies")] == ["right"]
    assert store.raw_votes("other") == []


def test_two_copies_of_one_vote_sent_at_once_count_once(store: LabelStore) -> None:
    make_project(store)
    token = store.add_rater("selfies", "ann")
    pair = store.next_pair(token)
    start, outcomes = threading.Barrier(4), []

    def send() -> None:
        start.wait()
        try:
            outcomes.append(store.vote(token, pair.pair_id, "left").vote_id)
        except LabelError as error:
            outcomes.append(error.code)

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(map(str, outcomes)).count("already_voted") == 3
    assert len(store.raw_votes("selfies")) == 1


def live_elo(store: LabelStore, project: str) -> np.ndarray:
    return np.array([row.elo for row in sorted(store.ratings(project).images, key=lambda row: row.image_id)])


def replayed_elo(store: LabelStore, project: str) -> np.ndarray:
    ids = sorted(store.image_names(project))
    index = {image_id: i for i, image_id in enumerate(ids)}
    standing = [vote for vote in store.raw_votes(project) if not vote["undone_at"] and vote["choice"] != "skip"]
    outcome = {"left": 1.0, "right": 0.0, "tie": 0.5}
    return elo_ratings(len(ids), np.array([index[v["left_id"]] for v in standing], dtype=int),
                       np.array([index[v["right_id"]] for v in standing], dtype=int),
                       np.array([outcome[v["choice"]] for v in standing]))


def test_live_elo_follows_the_seeds_rule_and_equals_a_replay_of_the_raw_votes(store: LabelStore) -> None:
    make_project(store)
    ann, bob = store.add_rater("selfies", "ann"), store.add_rater("selfies", "bob")
    first = store.next_pair(ann)
    store.vote(ann, first.pair_id, "left")
    # Both at 0: expected 0.5, so the winner gains K * 0.5 = 5 and the loser loses 5.
    elo = dict(zip(sorted(store.image_names("selfies")), live_elo(store, "selfies")))
    assert (elo[first.left_id], elo[first.right_id]) == pytest.approx((5.0, -5.0))
    for turn in range(30):
        token = (ann, bob)[turn % 2]
        pair = store.next_pair(token)
        store.vote(token, pair.pair_id, ("left", "right", "tie", "skip")[turn % 4])
    np.testing.assert_allclose(live_elo(store, "selfies"), replayed_elo(store, "selfies"), atol=1e-9)


def test_undo_withdraws_the_last_vote_keeps_it_on_record_and_reissues_its_pair(store: LabelStore) -> None:
    make_project(store)
    ann, bob = store.add_rater("selfies", "ann"), store.add_rater("selfies", "bob")
    assert refusal(store.undo, ann).code == "nothing_to_undo"
    for _ in range(3):
        store.vote(ann, store.next_pair(ann).pair_id, "left")
    last = store.next_pair(ann)
    store.vote(ann, last.pair_id, "right")
    store.vote(bob, store.next_pair(bob).pair_id, "left")  # another rater's vote after it
    again = store.undo(ann)
    assert (again.pair_id, again.left_id, again.right_id) == (last.pair_id, last.left_id, last.right_id)
    assert again.progress.rater_votes == 3
    assert store.next_pair(ann).pair_id == last.pair_id
    votes = store.raw_votes("selfies")
    assert len(votes) == 5 and [bool(v["undone_at"]) for v in votes] == [False, False, False, True, False]
    np.testing.assert_allclose(live_elo(store, "selfies"), replayed_elo(store, "selfies"), atol=1e-9)
    store.vote(ann, last.pair_id, "left")  # the pair can be voted again, once
    assert refusal(store.vote, ann, last.pair_id, "left").code == "already_voted"


def test_a_rater_sees_only_the_images_of_their_project(store: LabelStore) -> None:
    mine, theirs = make_project(store), make_project(store, "other")
    admin, ann = store.create_admin_token(), store.add_rater("selfies", "ann")
    assert store.image_bytes(ann, mine[0]) == b"face selfies 0"
    assert store.image_bytes(ann, mine[0], "thumbnail") == b"thumb 0"
    assert refusal(store.image_bytes, ann, theirs[0]).code == "not_found"
    assert refusal(store.image_bytes, ann, 10**6).code == "not_found"
    assert refusal(store.image_bytes, "nobody", mine[0]).code == "unauthorized"
    assert refusal(store.image_bytes, ann, mine[0], "original").code == "invalid_parameter"
    assert store.image_bytes(admin, theirs[1]) == b"face other 1"


def test_names_and_faces_are_unique_within_a_project(store: LabelStore) -> None:
    make_project(store)
    assert refusal(store.create_project, "selfies", "Again?").code == "project_exists"
    assert refusal(store.add_image, "selfies", "selfies/0.jpg", b"new face", b"t").code == "image_exists"
    assert refusal(store.add_image, "selfies", "copy.jpg", b"face selfies 0", b"t").code == "image_exists"
    assert refusal(store.add_image, "nothing", "a.jpg", b"a", b"t").code == "not_found"
    assert refusal(store.create_project, "a/b", "Which?").code == "invalid_parameter"
    assert refusal(store.create_project, "blank", "  ").code == "invalid_parameter"
    assert store.project("selfies").images == 6


def test_the_project_is_done_when_every_image_is_at_its_cap(store: LabelStore) -> None:
    make_project(store, images=4, cap_per_image=1)
    token = store.add_rater("selfies", "ann")
    issued = []
    while (pair := store.next_pair(token)) is not None:
        issued.append({pair.left_id, pair.right_id})
        store.vote(token, pair.pair_id, "left")
        assert len(issued) <= 2
    assert len(issued) == 2 and issued[0].isdisjoint(issued[1])


def test_ratings_rank_the_image_that_always_wins_first(store: LabelStore) -> None:
    ids = make_project(store, images=5)
    token = store.add_rater("selfies", "ann")
    for _ in range(60):
        pair = store.next_pair(token)
        store.vote(token, pair.pair_id, "left" if pair.left_id < pair.right_id else "right")
    ratings = store.ratings("selfies")
    assert [row.image_id for row in ratings.images] == ids
    assert ratings.votes == 60 and sum(row.votes for row in ratings.images) == 120
    assert all(row.bt_low < row.bt_score < row.bt_high for row in ratings.images)
    assert [rater.rater for rater in ratings.raters] == ["ann"]


def test_a_sqlite_database_is_in_wal_mode_and_syncs_every_commit(tmp_path) -> None:
    store = LabelStore(tmp_path / "labels.db")
    with store.engine.connect() as connection:
        assert connection.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert connection.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    assert refusal(LabelStore, tmp_path / "missing" / "labels.db").code == "not_found"
