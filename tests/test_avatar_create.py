"""`lipsync-server avatar create` on a made-up talking head: the dataset in both layouts (the
SyncTalk_2D one crops as this project does), training that resumes to the same weights, the
quality gates refusing a network that is not good enough, and a version that the real server
loads and serves."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from lipsync import framing
from lipsync.client import LipsyncClient
from lipsync_server import cli
from lipsync_server.avatars import importer, quality, repository
from lipsync_server.creation import create as creation
from lipsync_server.creation import crop_track, dataset, face_models, training
from lipsync_server.demo import talking_head

SECONDS = 6.0


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    face_models.fetch()
    return talking_head.write(tmp_path_factory.mktemp("video") / "person.mp4", talking_head.Clip(seconds=SECONDS))


def create(video: Path, repo: Path, work: Path, *options: str) -> int:
    return cli.main(
        [
            "avatar",
            "create",
            "person",
            "--video",
            str(video),
            "--repository",
            str(repo),
            "--work",
            str(work),
            "--min-seconds",
            "5",
            "--steps",
            "4",
            "--batch",
            "2",
            *options,
        ]
    )


@pytest.fixture(scope="module")
def refused(video, tmp_path_factory) -> tuple[str, Path, Path]:
    """A run whose 4 training steps cannot pass the gates: (its error, repository, work folder)."""
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(Path(__file__).resolve().parents[1] / "model_repository" / "audio_encoder", repo / "audio_encoder")
    work = tmp_path_factory.mktemp("work") / "person"
    request = creation.Request("person", video, repo, work, training.Plan(steps=4, batch=2), min_seconds=5.0)
    with pytest.raises(creation.CreationError) as refusal:
        creation.create(request)
    return str(refusal.value), repo, work


def test_the_dataset_has_both_layouts_and_synctalks_crops_are_ours(refused):
    _, _, work = refused
    info = dataset.read(work)
    assert info.frame_count == framing.frame_count(round(SECONDS * framing.SAMPLE_RATE))
    assert set(info.status) == {crop_track.OK}  # one face throughout
    assert info.held_out_from == dataset.held_out_from(info.frame_count)
    assert all((work / "faces" / f"{n}.png").is_file() for n in info.usable)
    # SyncTalk_2D's layout: the training part, its crops (from landmarks 1, 31, 52) ours.
    images, rects = importer.read_dataset(work / "synctalk")
    assert len(images) == len(info.training_frames())
    assert rects == [info.rects[n] for n in info.training_frames()]
    assert (work / "synctalk" / "aud.wav").is_file()


def test_the_gates_refuse_a_network_that_is_not_good_enough(refused):
    error, repo, work = refused
    assert error.startswith("no version added: reconstruction:") and "--ignore-gates" in error, error
    assert not (repo / "avatar_person").exists()  # nothing served
    report = json.loads((work / "report.json").read_text())
    assert report["failed"] and report["real_sync_r"] > 0.7  # the made-up mouth follows its speech


def test_training_resumed_after_an_interruption_ends_with_the_same_weights(refused, monkeypatch):
    _, repo, work = refused
    monkeypatch.setattr(training, "CHECKPOINT_EVERY", 2)
    features = training.encoder_features(work, repo)
    plan = training.Plan(steps=4, width=8, batch=2, seed=3)
    shutil.rmtree(work / "train")
    straight = training.train(work, plan, features)
    assert straight is not None
    shutil.rmtree(work / "train")
    assert training.train(work, plan, features, stop_after=3) is None  # stopped after step 3
    resumed = training.train(work, plan, features)  # goes on from step 2's state
    assert resumed is not None
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    steps = [int(line.split(",")[0]) for line in (work / "train" / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 5))


@pytest.mark.integration
def test_a_created_version_is_served(video, server, grpc_url, tmp_path):
    work = tmp_path / "work"
    client = LipsyncClient(grpc_url)
    try:
        assert create(video, server.repository, work, "--ignore-gates") == 0
        folder = repository.version_folder(server.repository, "person", 1)
        assert quality.read(folder)["creation"]["failed"]  # the gates' report is kept with the version
        client.load_avatar("person")
        audio = np.zeros(framing.SAMPLE_RATE, np.float32)
        frames, loop = client.render_in_loop(audio, framing.SAMPLE_RATE, "person")
        assert len(frames) == framing.frame_count(len(audio))
        # Its loop is the video's frames: the longest run of usable training frames.
        assert loop == len(dataset.read(work).training_frames())
    finally:  # the other tests' server serves the avatars they expect
        client.unload_avatar("person")
        shutil.rmtree(server.repository / "avatar_person", ignore_errors=True)
