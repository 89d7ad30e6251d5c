"""`lipsync-server avatar create` on a made-up talking head (conftest's person_video, with a
second face and a turned head in it): the dataset in both layouts (the SyncTalk_2D one crops as
this project does, frames left out), training that resumes to the same weights, the quality
gates refusing a network that is not good enough, and a version that the real server loads and
serves."""

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from PIL import Image

from lipsync import cli as client_cli
from lipsync.client import LipsyncClient
from lipsync_protocol import framing
from lipsync_server import cli
from lipsync_server.avatars import importer, quality_record, repository
from lipsync_server.creation import create as creation
from lipsync_server.creation import crop_track, dataset, quality_gates, showing, sync_network, training

SECONDS = 6.0  # person_video's
SYNC_STEPS = 120  # the sync network's: enough to learn this video's training frames


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
            "3",
            "--steps",
            "4",
            "--batch",
            "2",
            "--sync-steps",
            str(SYNC_STEPS),
            *options,
        ]
    )


@pytest.fixture(scope="module")
def refused(person_video, tmp_path_factory) -> tuple[str, Path, Path]:
    """A run whose 4 training steps cannot pass the gates: (its error, repository, work folder)."""
    repo = tmp_path_factory.mktemp("repo")
    shutil.copytree(Path(__file__).resolve().parents[1] / "model_repository" / "audio_encoder", repo / "audio_encoder")
    work = tmp_path_factory.mktemp("work") / "person"
    plan = training.Plan(steps=4, batch=2, sync_steps=SYNC_STEPS)
    request = creation.Request("person", person_video, repo, work, plan, min_seconds=3.0)
    with pytest.raises(creation.CreationError) as refusal:
        creation.create(request)
    return str(refusal.value), repo, work


def test_the_dataset_has_both_layouts_and_synctalks_crops_are_ours(refused):
    _, _, work = refused
    info = dataset.read(work)
    assert info.frame_count == framing.frame_count(round(SECONDS * framing.SAMPLE_RATE))
    # The second face and the turned head are left out, and said why; nothing else is.
    left_out = info.left_out()
    assert set(left_out) <= {crop_track.MORE_FACES, crop_track.NO_FACE, crop_track.TURNED_AWAY}
    assert 25 <= left_out.get(crop_track.NO_FACE, 0) + left_out.get(crop_track.TURNED_AWAY, 0) <= 30
    assert 5 <= left_out.get(crop_track.MORE_FACES, 0) <= 25
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
    assert 0 < report["sync_score"] < 1 and 0 < report["real_sync_score"] < 1


def test_the_sync_network_tells_a_mouth_in_sync_from_one_that_is_not(refused):
    """The person's sync network, as the refused run trained it (a few seconds of frames: too
    few to judge held-out ones, which `make bench-create` does on 60 s): its real mouths score
    higher with their own audio than with audio 0.4 s away, and a run trains it again to the
    same weights."""
    _, repo, work = refused
    features = torch.from_numpy(training.encoder_features(work, repo))
    plan = training.Plan(sync_steps=SYNC_STEPS)
    network = training.train_sync(work, plan, features.numpy())  # the saved one
    info = dataset.read(work)
    frames = [n for n in info.training_frames() if n >= 10]
    mouths = sync_network.mouths(training.read_faces(work, frames), sync_network.mouth_box(info))
    with torch.no_grad():
        in_sync = network(mouths, features[frames]).mean()
        shifted = network(mouths, features[[n - 10 for n in frames]]).mean()
    assert in_sync > shifted + 0.2, (float(in_sync), float(shifted))
    (work / "train" / "sync.pth").rename(work / "train" / "first-sync.pth")
    again = training.train_sync(work, plan, features.numpy())
    for key, value in network.state_dict().items():
        assert torch.equal(value, again.state_dict()[key]), key


def dataset_copy(work: Path, to: Path, *extra: str) -> Path:
    """The video's dataset (and `extra` files) out of a work folder, made once, in a new one."""
    for made in ("source.json", "dataset.json", "aud.wav", "faces", "frames", *extra):
        (to / made).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copytree if (work / made).is_dir() else shutil.copyfile)(work / made, to / made)
    return to


def test_training_resumed_after_an_interruption_ends_with_the_same_weights(refused, monkeypatch, tmp_path):
    _, repo, made = refused
    work = dataset_copy(made, tmp_path / "work")
    monkeypatch.setattr(training, "CHECKPOINT_EVERY", 2)
    features = training.encoder_features(work, repo)
    plan = training.Plan(steps=4, width=8, batch=2, seed=3, sync_steps=8)
    straight = training.train(work, plan, features, sync=training.train_sync(work, plan, features))
    assert straight is not None
    shutil.rmtree(work / "train")
    sync = training.train_sync(work, plan, features)  # the interrupted run's, trained again
    assert training.train(work, plan, features, stop_after=3, sync=sync) is None  # stopped after step 3
    resumed = training.train(work, plan, features, sync=training.train_sync(work, plan, features))  # from step 2
    assert resumed is not None
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    steps = [int(line.split(",")[0]) for line in (work / "train" / "log.csv").read_text().splitlines()[1:]]
    assert steps == list(range(1, 5))


@pytest.mark.integration
def test_a_created_version_is_served(person_video, refused, server, grpc_url, tmp_path, capsys):
    work = dataset_copy(refused[2], tmp_path / "work", "train/sync.pth")  # the same sync network's settings
    client = LipsyncClient(grpc_url)
    try:
        assert create(person_video, server.repository, work, "--ignore-gates") == 0
        folder = repository.version_folder(server.repository, "person", 1)
        assert quality_record.read(folder)["creation"]["failed"]  # the gates' report is kept with the version
        # Run again on the same work folder (a retried Kubernetes Job): no second copy.
        assert create(person_video, server.repository, work, "--ignore-gates") == 0
        assert repository.versions(server.repository, "person") == [1]
        client.load_avatar("person")
        # `lipsync avatars` shows the version's gates as they were measured.
        figures = json.loads((work / "report.json").read_text())
        assert client_cli.main(["--url", grpc_url, "avatars"]) == 0
        (line,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith("person\t")]
        assert line == (
            f"person\t1: READY (created: PSNR {figures['psnr_db']:.1f} dB, lip sync r {figures['sync_r']:.2f} "
            f"(the video's own {figures['real_sync_r']:.2f}), gates failed: {len(figures['failed'])}, added anyway)"
        )
        audio = np.zeros(framing.SAMPLE_RATE, np.float32)
        frames, loop = client.render_in_loop(audio, framing.SAMPLE_RATE, "person")
        assert len(frames) == framing.frame_count(len(audio))
        # Its loop is the video's frames: the longest run of usable training frames, here those
        # before the second face came into view.
        info = dataset.read(work)
        usable, longest, run = set(info.training_frames()), 0, 0
        for n in range(info.frame_count):
            run = run + 1 if n in usable else 0
            longest = max(longest, run)
        assert loop == longest
        assert 2.0 * framing.FPS <= loop < 3.0 * framing.FPS
    finally:  # the other tests' server serves the avatars they expect
        client.unload_avatar("person")
        shutil.rmtree(server.repository / "avatar_person", ignore_errors=True)


def gate_report(**figures) -> quality_gates.Report:
    passing = {"frames": 60, "psnr_db": 30.0, "sync_r": 0.6, "pause_opening": 0.01, "real_pause_opening": 0.01}
    return quality_gates.Report(**(passing | {"real_sync_r": 0.63, "failed": []} | figures))


def test_the_lip_sync_gate_is_relative_to_the_persons_own_mouth():
    """A mouth that follows the speech as closely as the person's own passes, whatever the
    person's r; one well below it fails, with both figures; a video whose own mouth hardly
    follows its speech is refused as the video's fault."""
    assert quality_gates.failures(gate_report(sync_r=0.60, real_sync_r=0.63)) == []  # the video
    assert quality_gates.failures(gate_report(sync_r=0.80, real_sync_r=0.85)) == []
    (low,) = quality_gates.failures(gate_report(sync_r=0.45, real_sync_r=0.63))
    assert low == "lip sync: r 0.45 against the speech level, the bar is 0.57 (0.9 x the real frames' 0.63)"
    (video,) = quality_gates.failures(gate_report(sync_r=0.30, real_sync_r=0.32))
    assert video.startswith("the video: its own mouth follows its speech at r 0.32, under 0.4")
    assert quality_gates.failures(gate_report(real_sync_r=float("nan")))[0].startswith("the video:")


def test_every_run_shows_its_work_in_the_work_folder(refused):
    """A refused run too: the contact sheet of the frames (left-out ones framed in red), the
    held-out speech generated beside real, with its sound, and report.md with both figures."""
    _, _, work = refused
    info = dataset.read(work)
    sheet = np.asarray(Image.open(work / "contact-sheet.png"))
    assert sheet.shape == (showing.SHEET_ROWS * showing.TILE, showing.SHEET_COLUMNS * showing.TILE, 3)
    red = np.all(sheet == showing.RED[::-1], axis=-1)  # the PNG is RGB, the colour BGR
    assert red.any()  # this video has left-out frames: they are marked
    with av.open(str(work / "held-out.mp4")) as video:
        pictures = list(video.decode(video.streams.video[0]))
        assert len(pictures) == info.frame_count - info.held_out_from
        half = round(info.width * showing.SIDE_HEIGHT / info.height) // 2 * 2
        assert (pictures[0].width, pictures[0].height) == (2 * half, showing.SIDE_HEIGHT)  # made | real
        assert video.streams.audio and video.streams.audio[0].duration
    report = json.loads((work / "report.json").read_text())
    markdown = (work / "report.md").read_text()
    assert f"| {report['sync_r']:.2f} | {report['real_sync_r']:.2f} |" in markdown
    assert "contact-sheet.png" in markdown and "held-out.mp4" in markdown
