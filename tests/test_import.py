import fractions

import av
import cv2
import numpy as np
import pytest

from neuralworld.capture import open_capture
from neuralworld.capture.importer import import_capture
from neuralworld.capture.video import crop_box, transform_intrinsics, working_size
from neuralworld.cli import main
from neuralworld.geometry import camera_rotation, make_pose, matrix_to_quat, roll_pitch

CODECS = {"mp4": "libx264", "mkv": "libx264", "webm": "libvpx"}


def pattern(i: int, w: int = 64, h: int = 48) -> np.ndarray:
    """A frame whose left half is red and right half blue, with a white bar moving right."""
    img = np.zeros((h, w, 3), np.uint8)
    img[:, : w // 2, 0] = 220
    img[:, w // 2:, 2] = 220
    x = (2 * i) % (w - 6)
    img[h // 3: 2 * h // 3, x:x + 6] = 255
    return img


def make_video(path, n=30, w=64, h=48, times=None, rotation=0):
    """Encode n frames at the given presentation times (seconds; default 30 fps), to be shown
    rotated `rotation` degrees counter-clockwise (as phones store upright videos)."""
    times = np.arange(n) / 30 if times is None else np.asarray(times)
    codec = CODECS[path.suffix[1:]]
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=1000)  # a millisecond clock, so frames can come at any time
        s.width, s.height, s.pix_fmt = w, h, "yuv420p"
        if rotation:
            s.set_display_rotation(rotation)
        for i in range(n):
            f = av.VideoFrame.from_ndarray(pattern(i, w, h), format="rgb24")
            f.pts, f.time_base = int(round(times[i] * 1000)), fractions.Fraction(1, 1000)
            c.mux(s.encode(f))
        c.mux(s.encode())
    return path


def make_images(folder, n=12, w=80, h=40):
    folder.mkdir()
    for i in range(n):
        cv2.imwrite(str(folder / f"{i:06d}.png"), cv2.cvtColor(pattern(i, w, h), cv2.COLOR_RGB2BGR))
    return folder


def kitti_lines(n, speed=1.0, dt=0.1):
    """KITTI camera-to-world rows of a car moving along the camera's +z (forward) at `speed` m/s."""
    return "".join(" ".join(f"{v:.6e}" for v in np.hstack([np.eye(3), [[0], [0], [speed * dt * i]]]).ravel()) + "\n"
                   for i in range(n))


def run_cli(args, capsys):
    rc = main(["import"] + [str(a) for a in args])
    return rc, capsys.readouterr()


@pytest.mark.parametrize("ext", ["mp4", "mkv", "webm"])
def test_video_with_variable_frame_rate_keeps_presentation_times(tmp_path, ext):
    times = np.cumsum(np.r_[0, np.where(np.arange(29) % 3 == 0, 0.05, 1 / 30)])
    video = make_video(tmp_path / f"clip.{ext}", times=times)
    cap = open_capture(import_capture(video, tmp_path / "cap"))
    assert len(cap) == 30 and (cap.width, cap.height) == (64, 48)
    assert np.allclose(cap.times, times - times[0], atol=1.5e-3)
    assert cap.motion_kind == "none" and cap.meta["import"]["time_source"] == "video presentation times"
    frame = np.asarray(cap.frames[0]).astype(int)  # RGB order: red on the left, blue on the right
    assert frame[2, 2, 0] > 150 and frame[2, 2, 2] < 60 and frame[2, -3, 2] > 150 and frame[2, -3, 0] < 60


def test_rotation_stored_in_the_video_is_applied(tmp_path):
    video = make_video(tmp_path / "phone.mp4", n=5, rotation=-90)  # shown turned clockwise: portrait
    cap = open_capture(import_capture(video, tmp_path / "cap"))
    assert (cap.width, cap.height) == (48, 64) and cap.meta["import"]["rotation"] == 90
    frame = np.asarray(cap.frames[0]).astype(int)  # the red left half is now on top
    assert frame[1, 1, 0] > 150 and frame[-2, 1, 2] > 150 and frame[-2, 1, 0] < 60


def test_pose_csv_is_interpolated_by_time_and_turned_into_our_axes(tmp_path):
    video = make_video(tmp_path / "walk.mp4", n=30)
    # an ARKit-style log at 60 Hz: camera walks along world -z (ARKit forward) at 1.2 m/s, yawing left
    t = np.arange(0, 1.1, 1 / 60)
    rows = ["timestamp,pos.x,pos.y,pos.z,rot_x,rot_y,rot_z,rot_w"]
    for ti in t:
        yaw = 0.5 * ti  # rotation about ARKit's y (up) axis
        q = [0, np.sin(yaw / 2), 0, np.cos(yaw / 2)]
        rows.append(",".join(f"{v:.9f}" for v in [ti, 0, 1.5, -1.2 * ti, *q]))
    (tmp_path / "poses.csv").write_text("\n".join(rows) + "\n")
    cap = open_capture(import_capture(video, tmp_path / "cap", motion=tmp_path / "poses.csv"))
    assert cap.meta["motion"] == {"kind": "pose", "source": "pose-csv"}
    assert cap.meta["import"]["pose_axes"] == "arkit"
    P = cap.poses
    # ARKit -z is our +y, ARKit y up is our z: position (0, 1.2 t, 1.5)
    assert np.allclose(P[:, :3, 3], np.stack([0 * cap.times, 1.2 * cap.times, 1.5 + 0 * cap.times], 1), atol=1e-4)
    assert np.allclose(roll_pitch(P[:, :3, :3]), 0, atol=1e-6)
    # yawing left about up: forward turns from +y toward -x
    expected = camera_rotation(np.pi / 2 + 0.5 * cap.times, 0.0)
    assert np.allclose(P[:, :3, :3], expected, atol=1e-4)
    c = cap.controls()
    assert c.shape == (30, 16) and np.allclose(c[1:, 14], 1 / 30, atol=2e-3) and (c[1:, 15] == 1).all()


def test_kitti_image_folder_with_times_and_calibration(tmp_path):
    folder = make_images(tmp_path / "seq", n=12, w=80, h=40)
    (folder / "poses.txt").write_text(kitti_lines(12, speed=5.0))
    times = 0.1036 * np.arange(12) + 0.002 * np.sin(np.arange(12))
    (folder / "times.txt").write_text("".join(f"{v:.6e}\n" for v in times))
    (folder / "calib.txt").write_text("P0: 50 0 39.5 0 0 50 19.5 0 0 0 1 0\n")
    cap = open_capture(import_capture(folder, tmp_path / "cap", motion=folder / "poses.txt"))
    assert len(cap) == 12 and (cap.width, cap.height) == (80, 40)
    assert np.allclose(cap.times, times - times[0], atol=1e-9)
    # KITTI's forward (+z, y down) is our +y, height stays constant
    pos = cap.poses[:, :3, 3]
    assert np.allclose(pos[:, 1], 5.0 * 0.1 * np.arange(12), atol=1e-5) and np.allclose(pos[:, [0, 2]], 0, atol=1e-6)
    assert np.allclose(roll_pitch(cap.poses[:, :3, :3]), 0, atol=1e-6)
    assert cap.meta["intrinsics"] == pytest.approx({"fx": 50, "fy": 50, "cx": 39.5, "cy": 19.5})
    frame = np.asarray(cap.frames[0]).astype(int)
    assert frame[1, 1, 0] > 150 and frame[1, -2, 2] > 150  # RGB order kept from the PNGs


def test_per_frame_action_log_gives_the_frame_times(tmp_path):
    video = make_video(tmp_path / "car.mp4", n=20)  # constant 30 fps container
    real = np.cumsum(np.r_[0, 0.04 + 0.03 * (np.arange(19) % 2)])  # irregular capture times
    lines = ["frame,t,steering,throttle"] + [f"{i},{real[i]:.3f},{(i % 5) / 10:.1f},0.5" for i in range(20)]
    (tmp_path / "car.csv").write_text("\n".join(lines) + "\n")
    cap = open_capture(import_capture(video, tmp_path / "cap", motion=tmp_path / "car.csv"))
    assert cap.meta["motion"]["names"] == ["steering", "throttle"] and cap.control_kind == "actions"
    assert np.allclose(cap.times, real, atol=1e-9)
    assert np.allclose(cap.actions[:, 0], (np.arange(20) % 5) / 10)
    assert cap.meta["controls"]["ranges"] == [[0.0, 0.4], [0.5, 0.5]]
    assert cap.controls().shape == (20, 2)
    # a log that names only some frames keeps only those
    (tmp_path / "part.csv").write_text("\n".join(lines[:1] + lines[4:15]) + "\n")
    cap = open_capture(import_capture(video, tmp_path / "part", motion=tmp_path / "part.csv"))
    assert len(cap) == 11 and np.allclose(cap.times, real[3:14] - real[3])
    assert np.array_equal(cap.frames[0], open_capture(tmp_path / "cap").frames[3])


def test_action_log_at_its_own_rate_holds_the_last_command(tmp_path):
    video = make_video(tmp_path / "car.mp4", n=30)  # frames at i/30 s
    (tmp_path / "keys.csv").write_text("time,forward,turn\n0.0,1,0\n0.5,0,1\n0.8,1,-1\n")
    cap = open_capture(import_capture(video, tmp_path / "cap", motion=tmp_path / "keys.csv"))
    t, a = cap.times, cap.actions
    assert len(cap) == 30  # the last command holds for half a median step past 0.8 s: all frames kept
    assert (a[t < 0.5 - 1e-6] == [1, 0]).all() and (a[(t >= 0.5) & (t < 0.8 - 1e-6)] == [0, 1]).all()
    assert (a[t >= 0.8] == [1, -1]).all()


def test_partially_overlapping_tum_log_drops_uncovered_frames(tmp_path, capsys):
    video = make_video(tmp_path / "clip.mp4", n=30)  # 0 .. 0.967 s
    t = np.arange(0.3, 2.0, 0.01)
    (tmp_path / "traj.txt").write_text("# timestamp tx ty tz qx qy qz qw\n" + "".join(
        f"{ti:.4f} {ti:.4f} 0 1.6 0 0 0 1\n" for ti in t))
    rc, out = run_cli([video, "-o", tmp_path / "cap", "--motion", tmp_path / "traj.txt"], capsys)
    assert rc == 0 and "dropped 9 frames at the start and 0 at the end" in out.err
    cap = open_capture(tmp_path / "cap")
    assert len(cap) == 21 and cap.meta["import"]["time_origin_s"] == pytest.approx(0.3, abs=1e-3)
    assert np.allclose(cap.poses[:, 0, 3], 0.3 + cap.times, atol=1e-3)
    assert cap.meta["motion"]["source"] == "tum"


def test_time_offset_and_image_folder_rate(tmp_path, capsys):
    video = make_video(tmp_path / "clip.mp4", n=20)
    (tmp_path / "later.csv").write_text("t,steering\n5,0\n6,0.1\n7,0.2\n")
    rc, out = run_cli([video, "-o", tmp_path / "cap", "--motion", tmp_path / "later.csv", "--time-offset", "-5"],
                      capsys)
    assert rc == 0 and len(open_capture(tmp_path / "cap")) == 20
    folder = make_images(tmp_path / "imgs", n=5)
    assert np.allclose(open_capture(import_capture(folder, tmp_path / "a")).times, np.arange(5) / 10)
    assert np.allclose(open_capture(import_capture(folder, tmp_path / "b", fps=25)).times, np.arange(5) / 25)


def test_working_size_rule_and_intrinsics_through_crop():
    assert working_size(848, 480) == (256, 192)
    assert working_size(1080, 1920) == (192, 256)
    assert working_size(128, 128) == (128, 128)
    assert working_size(620, 188) == (256, 128)
    assert working_size(200, 150) == (192, 128)
    assert working_size(64, 48) == (64, 48)
    assert working_size(848, 480, (320, 240)) == (320, 240)
    assert crop_box(848, 480, 256, 192) == (104, 0, 640, 480)
    K = transform_intrinsics({"fx": 400, "fy": 400, "cx": 423.5, "cy": 239.5}, (104, 0, 640, 480), 256, 192)
    assert K == pytest.approx({"fx": 160, "fy": 160, "cx": 127.5, "cy": 95.5})  # centre stays the centre


def test_size_option_and_force(tmp_path, capsys):
    video = make_video(tmp_path / "clip.webm", n=8)
    assert run_cli([video, "-o", tmp_path / "cap", "--size", "32x32"], capsys)[0] == 0
    assert open_capture(tmp_path / "cap").frames.shape == (8, 32, 32, 3)
    rc, out = run_cli([video, "-o", tmp_path / "cap", "--size", "48x36", "--force"], capsys)
    assert rc == 0 and open_capture(tmp_path / "cap").frames.shape == (8, 36, 48, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cap", "clip.webm"]


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing left

def _bad_inputs(tmp_path):
    video = make_video(tmp_path / "clip.mp4", n=20)
    mkv = make_video(tmp_path / "long.mkv", n=60)
    (tmp_path / "cut.mkv").write_bytes(mkv.read_bytes()[: mkv.stat().st_size * 6 // 10])
    (tmp_path / "empty.mp4").write_bytes(b"")
    (tmp_path / "notes.mp4").write_text("these are not the frames you are looking for\n" * 20)
    images = make_images(tmp_path / "imgs", n=6)
    (tmp_path / "few.txt").write_text(kitti_lines(4))
    (tmp_path / "one.txt").write_text("0.1 0 0 0 0 0 0 1\n")
    (tmp_path / "nan.csv").write_text("t,x,y,z,qx,qy,qz,qw\n0,0,0,0,0,0,0,1\n0.5,nan,0,0,0,0,0,1\n1,0,0,0,0,0,0,1\n")
    (tmp_path / "back.csv").write_text("t,steering\n0,0\n0.4,0.1\n0.3,0.2\n0.6,0\n")
    (tmp_path / "later.csv").write_text("t,steering\n5,0\n6,0.1\n7,0.2\n")
    (tmp_path / "odd.csv").write_text("alpha,beta\n1,2\n3,4\n")
    (tmp_path / "five.txt").write_text("1 2 3 4 5\n6 7 8 9 10\n")
    (tmp_path / "exists").mkdir()
    rows = [f"{i / 10:.1f},{i},{i % 3}" for i in range(7)]  # 0..0.6 s: the clip's span
    for name, header in {"twice": "t,steer,steer", "valid": "t,valid,throttle", "comma": 't,"steer,left",throttle',
                         "case": "t,Steer,steer", "unnamed": "t,,throttle"}.items():
        (tmp_path / f"{name}.csv").write_text("\n".join([header] + rows) + "\n")
    (tmp_path / "two_times.csv").write_text("time,t\n" + "".join(f"{i / 10},{i / 10}\n" for i in range(7)))
    (tmp_path / "huge.csv").write_text("t,steer\n0,0\n0.1,1\n0.2,1e308\n0.3,0\n")
    (tmp_path / "late.csv").write_text("t,steer\n0,0\n0.1,1\n0.2,1\n1e308,0\n")
    (tmp_path / "minus_huge.csv").write_text("t,steer,throttle\n0,0,0\n0.1,0,-1e308\n0.2,0,0\n")
    pose_rows = ["t,x,y,z,qx,qy,qz,qw"] + [f"{i / 10},{i},0,0,0,0,0,1" for i in range(7)]
    (tmp_path / "far.csv").write_text("\n".join(pose_rows).replace("0.2,2,0,0", "0.2,1e308,0,0") + "\n")
    (tmp_path / "quat.csv").write_text("\n".join(pose_rows).replace("0.3,3,0,0,0,0,0,1", "0.3,3,0,0,0,0,0,1e300") + "\n")
    (tmp_path / "quat.txt").write_text("".join(f"{i / 10} 0 0 0 0 0 0 {1e300 if i == 4 else 1}\n" for i in range(7)))
    (tmp_path / "far.txt").write_text(kitti_lines(6).replace("0.000000e+00", "1e308", 1))
    return {
        "missing file": (["nothing.mp4", "-o", "cap"], "nothing.mp4", "no such file"),
        "empty file": (["empty.mp4", "-o", "cap"], "empty.mp4", "empty"),
        "not a video": (["notes.mp4", "-o", "cap"], "notes.mp4", "cannot be read as a video"),
        "truncated video": (["cut.mkv", "-o", "cap"], "cut.mkv", "cut short"),
        "too few KITTI rows": ([images, "-o", "cap", "--motion", "few.txt"], "few.txt", "4 rows for 6 frames"),
        "too few TUM rows": (["clip.mp4", "-o", "cap", "--motion", "one.txt"], "one.txt", "only 1 pose row"),
        "NaN": (["clip.mp4", "-o", "cap", "--motion", "nan.csv"], "nan.csv", "NaN or infinite value on line 3"),
        "non-monotonic times": (["clip.mp4", "-o", "cap", "--motion", "back.csv"], "back.csv", "not increasing"),
        "no overlap": (["clip.mp4", "-o", "cap", "--motion", "later.csv"], "later.csv",
                       "covers 5.000..7.000 s but the video's frames span 0.000..0.633 s"),
        "unknown columns": (["clip.mp4", "-o", "cap", "--motion", "odd.csv"], "odd.csv", "unknown column layout"),
        "unknown numeric layout": (["clip.mp4", "-o", "cap", "--motion", "five.txt"], "five.txt",
                                   "unknown column layout"),
        "output exists": (["clip.mp4", "-o", "exists"], "exists", "already exists (pass --force"),
        "empty motion file": (["clip.mp4", "-o", "cap", "--motion", "empty.mp4"], "empty.mp4", "empty"),
        # headers that would corrupt or break the capture's table
        "repeated name": (["clip.mp4", "-o", "cap", "--motion", "twice.csv"], "twice.csv",
                          "two columns named 'steer' and 'steer'"),
        "names differing in case": (["clip.mp4", "-o", "cap", "--motion", "case.csv"], "case.csv",
                                    "two columns named 'Steer' and 'steer'"),
        "reserved name": (["clip.mp4", "-o", "cap", "--motion", "valid.csv"], "valid.csv",
                          "clash with the capture's own 'valid' column"),
        "comma in a name": (["clip.mp4", "-o", "cap", "--motion", "comma.csv"], "comma.csv",
                            "'steer,left' cannot be stored"),
        "empty name": (["clip.mp4", "-o", "cap", "--motion", "unnamed.csv"], "unnamed.csv", "'' cannot be stored"),
        "two time columns": (["clip.mp4", "-o", "cap", "--motion", "two_times.csv"], "two_times.csv",
                             "2 time columns (time, t)"),
        # values no recording holds, refused here rather than in `train`
        "action 1e308": (["clip.mp4", "-o", "cap", "--motion", "huge.csv"], "huge.csv",
                         "line 4, column 'steer': 1e+308 is not a number within"),
        "action -1e308": (["clip.mp4", "-o", "cap", "--motion", "minus_huge.csv"], "minus_huge.csv",
                          "line 3, column 'throttle': -1e+308 is not a number within"),
        "time 1e308": (["clip.mp4", "-o", "cap", "--motion", "late.csv"], "late.csv",
                       "timestamp 1e+308 (row 3) is not within"),
        "position 1e308": (["clip.mp4", "-o", "cap", "--motion", "far.csv"], "far.csv",
                           "line 4, column 'x': 1e+308 is not a number within"),
        "quaternion 1e300 (pose CSV)": (["clip.mp4", "-o", "cap", "--motion", "quat.csv"], "quat.csv",
                                        "line 5, column 'qw': 1e+300 is not a number within"),
        "quaternion 1e300 (TUM)": (["clip.mp4", "-o", "cap", "--motion", "quat.txt"], "quat.txt",
                                   "line 5, column 'qw': 1e+300"),
        "KITTI entry 1e308": ([images, "-o", "cap", "--motion", "far.txt"], "far.txt", "line 1: 1e+308"),
    }


def test_bad_input_gives_one_line_exit_2_and_leaves_nothing(tmp_path, capsys, monkeypatch):
    cases = _bad_inputs(tmp_path)
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, (args, culprit, problem) in cases.items():
        rc, out = run_cli(args, capsys)
        assert rc == 2, name
        lines = out.err.strip().splitlines()
        assert len(lines) == 1 and culprit in lines[0] and problem in lines[0], (name, out.err)
        assert sorted(p.name for p in tmp_path.iterdir()) == before, name  # no capture, no temporary folder


def test_action_names_a_capture_can_hold_are_kept_as_they_are(tmp_path):
    video = make_video(tmp_path / "clip.mp4", n=10)
    (tmp_path / "log.csv").write_text("t,Lenkung (°),throttle %,brake.pedal\n" +
                                      "".join(f"{i / 30:.4f},{i},-{i},{i % 2}\n" for i in range(10)))
    cap = open_capture(import_capture(video, tmp_path / "cap", motion=tmp_path / "log.csv"))
    assert cap.control_names == ["Lenkung (°)", "throttle %", "brake.pedal"]
    assert np.array_equal(cap.actions, np.stack([np.arange(10), -np.arange(10), np.arange(10) % 2], 1))


def test_truncated_mp4_with_index_first_is_refused(tmp_path, capsys):
    # an mp4 whose index comes first decodes a cut file without error: caught by the frame count
    src = make_video(tmp_path / "a.mp4", n=60)
    whole = tmp_path / "fast.mp4"
    with av.open(str(src)) as i, av.open(str(whole), "w", options={"movflags": "faststart"}) as o:
        s = o.add_stream_from_template(i.streams.video[0])
        for p in i.demux(i.streams.video[0]):
            if p.dts is not None:
                p.stream = s
                o.mux(p)
    data = whole.read_bytes()
    (tmp_path / "cut.mp4").write_bytes(data[: len(data) * 6 // 10])
    rc, out = run_cli([tmp_path / "cut.mp4", "-o", tmp_path / "cap"], capsys)
    assert rc == 2 and "cut.mp4" in out.err and "cut short" in out.err
    assert not (tmp_path / "cap").exists()
