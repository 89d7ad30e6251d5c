"""Admission by expected wait (lipsync_server/backend/admission.py), on a simulated clock."""

import os
from pathlib import Path

import pytest

from lipsync_server.backend import ticket
from lipsync_server.backend.admission import Admission, Board, ServiceRate, bound_ms


def test_service_rate_is_frames_per_second_of_busy_time():
    rate = ServiceRate(smoothing_s=5.0)
    rate.busy(0.0)
    rate.made(20, 1.0, still_busy=False)
    assert rate.frames_per_s == pytest.approx(20.0)
    # Idle time between requests does not count: busy again at t=100, 20 frames by t=101.
    rate.busy(100.0)
    rate.made(20, 101.0, still_busy=False)
    assert rate.frames_per_s == pytest.approx(20.0)


def test_service_rate_follows_a_slowdown_within_a_few_smoothing_times():
    rate = ServiceRate(smoothing_s=5.0)
    rate.busy(0.0)
    now = 0.0
    for _ in range(10):
        now += 1.0
        rate.made(20, now, still_busy=True)
    for _ in range(20):  # the server halves its speed
        now += 1.0
        rate.made(10, now, still_busy=True)
    assert rate.frames_per_s == pytest.approx(10.0, rel=0.05)


def test_requests_finishing_together_count_at_the_rate_they_were_made():
    rate = ServiceRate(smoothing_s=5.0)
    rate.busy(0.0)
    for second in range(1, 60):  # two requests of 10 frames finish together every second: 20 frames/s
        rate.made(10, float(second), still_busy=True)
        rate.made(10, float(second), still_busy=True)
    assert rate.frames_per_s == pytest.approx(20.0, rel=0.1)


def measured(frames_per_s: float, max_frames: int = 400) -> Admission:
    admission = Admission(max_frames)
    admission.start(int(frames_per_s), 0.0)
    admission.finish(int(frames_per_s), 1.0, made=True)
    return admission


def test_a_request_is_refused_when_the_work_ahead_and_its_own_would_end_past_its_bound():
    admission = measured(20.0)
    assert admission.refusal(25, max_wait_s=0.5) is None  # nothing in the works: taken, however long
    admission.start(25, 2.0)
    assert admission.expected_wait_s() == pytest.approx(1.25)
    assert admission.refusal(25, max_wait_s=2.5) is None  # done in 2.5 s
    why = admission.refusal(25, max_wait_s=2.0)  # it could start in time, but not be done
    assert why is not None and why.startswith("server busy: this request's 25 frames would be done in 2.50 s")
    assert "(25 frames ahead at 20.0 frames/s), past what is left of its bound (2.00 s, MAX_WAIT_MS)" in why


@pytest.mark.parametrize("frames_per_s", [30.0, 40.0, 100.0])
@pytest.mark.parametrize("segment_frames", [5, 10, 25])
def test_a_lone_sessions_pipelined_segments_each_due_when_the_one_before_has_played_are_never_refused(
    frames_per_s, segment_frames
):
    """A session renders a reply as segments sent at once, segment k due (its first frame shown)
    when segment k - 1 has played: k segments later, plus the first one's own time. At a rate of
    at least 25 frames/s each is done in time, so none is refused, however many are in flight."""
    admission = measured(frames_per_s, max_frames=10_000)
    own_s = segment_frames / frames_per_s
    for k in range(40):
        due_s = own_s + k * segment_frames / 25
        assert admission.refusal(segment_frames, max_wait_s=due_s) is None, k
        admission.start(segment_frames, 2.0)


def test_a_segment_that_cannot_be_done_before_it_is_due_is_refused():
    admission = measured(20.0, max_frames=10_000)
    admission.start(25, 2.0)  # 1.25 s of work ahead
    assert admission.refusal(5, max_wait_s=1.0) is not None  # due before the work ahead is done
    assert admission.refusal(5, max_wait_s=1.5) is None


def test_the_frame_limit_holds_whatever_the_bound():
    admission = measured(1000.0, max_frames=50)
    admission.start(40, 2.0)
    why = admission.refusal(20, max_wait_s=3600.0)
    assert why is not None and "40 frames in flight, 20 more would pass the limit of 50" in why


def test_before_any_measurement_only_the_frame_limit_applies():
    admission = Admission(400)
    admission.start(300, 0.0)
    assert admission.expected_wait_s() == 0.0
    assert admission.refusal(50, max_wait_s=0.001) is None


def test_failed_requests_leave_the_rate_alone():
    admission = measured(20.0)
    admission.start(25, 5.0)
    admission.finish(25, 30.0, made=False)  # 25 s of a broken request
    assert admission.rate.frames_per_s == pytest.approx(20.0)
    assert admission.frames == 0


@pytest.fixture
def board_folder(tmp_path, monkeypatch) -> Path:
    monkeypatch.setattr("lipsync_server.backend.admission.BOARD_DIRECTORY", tmp_path)
    monkeypatch.setenv(ticket.SECRET_ENV, "s" * 64)
    return tmp_path


def test_the_board_carries_the_wait_to_other_processes_of_the_server(board_folder):
    reader = Board(writer=False)
    assert reader.read() == (0.0, None)  # face_generator not started yet
    writer = Board(writer=True)
    writer.publish(50, 20.0)
    assert reader.read() == (50.0, 20.0)
    writer.close()  # face_generator unloaded: no work
    assert reader.read() == (0.0, None)
    again = Board(writer=True)  # and loaded again: the same file, which the reader still maps
    again.publish(30, None)
    assert reader.read() == (30.0, None)


def test_a_bound_not_given_is_the_default_queueing_then_the_requests_own_time():
    assert bound_ms(250, 1000, 25, 20.0) == 250  # MAX_WAIT_MS as given
    assert bound_ms(None, 1000, 25, 20.0) == 2250
    assert bound_ms(None, 1000, 25, None) == 1000  # nothing measured yet


def test_the_boards_name_is_the_servers_secret(board_folder, monkeypatch):
    ours = Board(writer=True).path
    monkeypatch.setenv(ticket.SECRET_ENV, "t" * 64)
    assert Board(writer=True).path != ours
    assert str(os.getppid()) not in ours.name


@pytest.mark.parametrize("taken", ["symlink", "other user's file", "file others can write"])
def test_a_board_name_taken_first_is_refused(board_folder, taken, tmp_path_factory):
    path = Board(writer=False).path
    elsewhere = tmp_path_factory.mktemp("elsewhere") / "target"
    elsewhere.write_bytes(b"\0" * 8)
    if taken == "symlink":
        path.symlink_to(elsewhere)
    else:
        path.write_bytes(b"\0" * 8)
        path.chmod(0o666 if taken == "file others can write" else 0o600)
        if taken == "other user's file":
            os.chown(path, 65534, 65534)
    with pytest.raises(OSError):
        Board(writer=True)
    assert elsewhere.read_bytes() == b"\0" * 8
