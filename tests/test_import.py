"""Importing SyncTalk_2D datasets, videos with crop_rects.json and checkpoints (offline)."""

import json

import cv2
import numpy as np
import pytest
import torch

from lipsync_server import cli as server_cli
from lipsync_server.avatars import compositing, repository
from lipsync_server.avatars.importer import AvatarImportError, import_avatar, import_unet
from lipsync_server.avatars.media import AvatarMedia, media_dir
from lipsync_server.networks.unet import LipSyncUNet

import synthetic_data


def test_dataset_import_keeps_frames_and_uses_the_landmark_crop(tmp_path):
    rects = synthetic_data.write_dataset(tmp_path / "May", count=6)
    import_avatar(tmp_path / "repo", "may", dataset=tmp_path / "May")
    media = AvatarMedia(media_dir(tmp_path / "repo", "may"))
    assert media.rects.tolist() == rects
    for n in range(6):
        original = cv2.imread(str(tmp_path / "May" / "full_body_img" / f"{n}.jpg"))
        assert np.array_equal(media.background(n), original[..., ::-1])  # the file is kept as is
        assert np.array_equal(media.faces[n], compositing.face_input(original, rects[n]))
    assert (tmp_path / "repo" / "avatar_may" / "configs" / "cpu.pbtxt").is_file()


def test_video_import_with_crop_rects(tmp_path):
    video, rects_json, rects = synthetic_data.write_video(tmp_path / "src", count=5)
    import_avatar(tmp_path / "repo", "obama", video=video, rects=rects_json)
    media = AvatarMedia(media_dir(tmp_path / "repo", "obama"))
    assert len(media) == 5 and media.rects.tolist() == rects
    assert media.background(0).shape == (240, 320, 3)


def test_broken_material_gives_clear_errors(tmp_path):
    synthetic_data.write_dataset(tmp_path / "d", count=3)
    (tmp_path / "d" / "landmarks" / "2.lms").unlink()
    with pytest.raises(AvatarImportError, match=r"landmarks/2.lms is missing"):
        import_avatar(tmp_path / "repo", "x", dataset=tmp_path / "d")
    video, rects_json, rects = synthetic_data.write_video(tmp_path / "v", count=3)
    rects_json.write_text(json.dumps(rects[:2]))
    with pytest.raises(AvatarImportError, match="has 3 frames but .* has 2 rectangles"):
        import_avatar(tmp_path / "repo", "x", video=video, rects=rects_json)
    rects_json.write_text(json.dumps([[250, 10, 400, 160]] * 3))
    with pytest.raises(
        AvatarImportError, match=r"frame 0: crop rectangle \[250, 10, 400, 160\] is not inside the 320x240 frame"
    ):
        import_avatar(tmp_path / "repo", "x", video=video, rects=rects_json)
    assert not media_dir(tmp_path / "repo", "x").exists()  # nothing half-written is left
    with pytest.raises(ValueError, match="invalid avatar name"):
        import_avatar(tmp_path / "repo", "../x", dataset=tmp_path / "d")


def test_checkpoints_become_numbered_versions(tmp_path):
    synthetic_data.write_dataset(tmp_path / "d", count=2)
    repo = tmp_path / "repo"
    with pytest.raises(AvatarImportError, match="import its frames first"):
        import_unet(repo, "may", tmp_path / "none.pth")
    import_avatar(repo, "may", dataset=tmp_path / "d")
    torch.save({f"module.{k}": v for k, v in LipSyncUNet().state_dict().items()}, tmp_path / "10.pth")
    assert import_unet(repo, "may", tmp_path / "10.pth") == 1
    assert import_unet(repo, "may", tmp_path / "10.pth") == 2
    assert repository.versions(repo, "may") == [1, 2]
    assert (repo / "avatar_may" / "2" / "model.onnx").is_file() and (repo / "avatar_may" / "2" / "model.py").is_file()


def test_cli_import_reports_wrong_checkpoint_keys(tmp_path, capsys):
    synthetic_data.write_dataset(tmp_path / "d", count=2)
    state = LipSyncUNet().state_dict()
    state.pop("up5.conv.double_conv.0.conv.0.weight")
    torch.save(state, tmp_path / "bad.pth")
    code = server_cli.main(
        [
            "import",
            "may",
            "--dataset",
            str(tmp_path / "d"),
            "--checkpoint",
            str(tmp_path / "bad.pth"),
            "--repository",
            str(tmp_path / "repo"),
        ]
    )
    assert code == 2
    assert "missing keys: up5.conv.double_conv.0.conv.0.weight" in capsys.readouterr().err


def test_new_media_replaces_the_old_in_one_step(tmp_path, monkeypatch):
    """Media is swapped in whole: interrupted right after the swap (a crash before the old
    media is removed), the folder holds the new media complete; the next write cleans up."""
    repo = tmp_path / "repo"
    frames = [np.full((64, 64, 3), shade, np.uint8) for shade in (10, 200)]
    rect = [[8, 8, 56, 56]]
    repository.write_media(repo, "x", frames[:1], rect)

    remove = repository.shutil.rmtree

    def crash_after_the_swap(path, ignore_errors=False):
        if not ignore_errors:  # removing the swapped-out old media, not clearing leftovers
            raise KeyboardInterrupt("killed")
        remove(path, ignore_errors=ignore_errors)

    monkeypatch.setattr(repository.shutil, "rmtree", crash_after_the_swap)
    with pytest.raises(KeyboardInterrupt):
        repository.write_media(repo, "x", frames[1:], rect)
    assert AvatarMedia(media_dir(repo, "x")).background(0).mean() > 150  # the new media, whole
    monkeypatch.undo()
    repository.write_media(repo, "x", frames[:1], rect)
    assert AvatarMedia(media_dir(repo, "x")).background(0).mean() < 50
    assert sorted(p.name for p in (repo / "avatar_x").iterdir()) == ["config.pbtxt", "configs", "media"]


def test_the_paste_is_chosen_per_avatar_and_a_broken_choice_is_named(tmp_path):
    repo = tmp_path / "repo"
    frame, rect = [np.full((64, 64, 3), 90, np.uint8)], [[8, 8, 56, 56]]
    repository.write_media(repo, "plain", frame, rect)
    repository.write_media(repo, "exact", frame, rect, paste="hard")
    assert AvatarMedia(media_dir(repo, "plain")).paste == "feathered"
    assert AvatarMedia(media_dir(repo, "exact")).paste == "hard"
    (media_dir(repo, "exact") / "paste.json").write_text('{"paste": "blurry"}')
    with pytest.raises(ValueError, match="paste.json: paste 'blurry' is not one of feathered, hard"):
        AvatarMedia(media_dir(repo, "exact"))
    with pytest.raises(ValueError, match="paste 'soft' is not one of"):
        repository.write_media(repo, "other", frame, rect, paste="soft")


def test_a_created_versions_figures_go_into_both_configs_as_triton_reads_them(tmp_path):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    repo = tmp_path / "repo"
    repository.write_media(repo, "x", [np.full((64, 64, 3), 90, np.uint8)], [[8, 8, 56, 56]])
    (repo / "avatar_x" / "1").mkdir()
    report = {"psnr_db": 29.25, "sync_r": 0.74, "real_sync_r": 0.8, "failed": ['lip sync: "r" 0.6 – low']}
    repository.record_creation(repo, "x", 1, {**report, "frames": 200})
    for config in ("config.pbtxt", "configs/cpu.pbtxt"):
        parsed = text_format.Parse((repo / "avatar_x" / config).read_text(), model_config_pb2.ModelConfig())
        assert json.loads(parsed.parameters["creation"].string_value) == {"1": report}
