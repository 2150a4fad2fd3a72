"""Posed recordings of other tools (capture/recordings.py): round trips of a synthetic capture
through each format, one hand-made sample per format, and bad input."""

import json
import zipfile

import av
import cv2
import numpy as np
import pytest

from neuralworld.capture import open_capture
from neuralworld.capture.synth import synthesize
from neuralworld.cli import main
from neuralworld.geometry import roll_pitch

from recording_writers import (ARKIT_WORLD, write_colmap, write_nerfstudio, write_polycam, write_record3d,
                               write_stray)


@pytest.fixture(scope="module")
def walk(tmp_path_factory):
    """A 12-frame synthetic walk at 64x48 and 30 fps: known poses, times and intrinsics."""
    return open_capture(synthesize(tmp_path_factory.mktemp("synth") / "walk", seed=3, frames=12, width=64,
                                   height=48, fps=30.0, progress=False))


def run_import(args, capsys):
    rc = main(["import"] + [str(a) for a in args])
    return rc, capsys.readouterr()


def forward(cap):
    return cap.poses[:, :3, 2]  # the camera's z axis in world coordinates


ROUND_TRIPS = {  # name -> (write the walk under tmp_path, extra import arguments)
    "nerfstudio": (lambda cap, d: write_nerfstudio(cap, d / "scene") / "transforms.json", []),
    "nerfstudio-folder": (lambda cap, d: write_nerfstudio(cap, d / "scene"), []),
    "colmap-text": (lambda cap, d: write_colmap(cap, d / "project", binary=False), ["--fps", 30]),
    "colmap-binary": (lambda cap, d: write_colmap(cap, d / "project", binary=True) / "sparse" / "0",
                      ["--fps", 30]),
    "stray": (lambda cap, d: write_stray(cap, d / "stray"), []),
    "record3d-r3d": (lambda cap, d: write_record3d(cap, d / "walk.r3d"), []),
    "record3d-folder": (lambda cap, d: write_record3d(cap, d / "export"), []),
    "polycam": (lambda cap, d: write_polycam(cap, d / "polycam"), []),
}


@pytest.mark.parametrize("name", ROUND_TRIPS)
def test_round_trip_gives_back_poses_times_and_frames(walk, tmp_path, capsys, name):
    write, extra = ROUND_TRIPS[name]
    rc, out = run_import([write(walk, tmp_path), "-o", tmp_path / "cap"] + extra, capsys)
    assert rc == 0, out.err
    cap = open_capture(tmp_path / "cap")
    assert cap.meta["motion"] == {"kind": "pose", "source": name.split("-")[0]}
    assert len(cap) == len(walk) and np.array_equal(cap.frames, walk.frames)
    assert np.abs(cap.poses - walk.poses).max() < 1e-5
    assert np.allclose(cap.times, walk.times, atol=1e-6)
    assert cap.meta["intrinsics"] == pytest.approx(walk.meta["intrinsics"], abs=1e-6)
    assert np.allclose(cap.controls(), walk.controls(), atol=1e-4)


def test_colmap_model_given_with_motion_beside_an_images_folder(walk, tmp_path, capsys):
    project = write_colmap(walk, tmp_path / "project", binary=True)
    (project / "images").rename(tmp_path / "frames")
    rc, out = run_import([tmp_path / "frames", "--motion", project / "sparse" / "0", "-o", tmp_path / "cap",
                          "--fps", 30], capsys)
    assert rc == 0, out.err
    cap = open_capture(tmp_path / "cap")
    assert cap.meta["import"]["pose_axes"] == "kitti"  # COLMAP's world: the first camera's, y down
    assert np.abs(cap.poses - walk.poses).max() < 1e-5 and np.array_equal(cap.frames, walk.frames)


# ---------------------------------------------------------------- samples made by hand from each format's documentation

def pattern(i, w=64, h=48):
    """A smooth frame (it survives JPEG) that differs from frame to frame: a bright block at 4*i."""
    y, x = np.mgrid[0:h, 0:w]
    img = np.stack([4 * x, 5 * y, np.full_like(x, 60)], axis=-1).astype(np.uint8)
    img[8:24, (4 * i) % (w - 16):(4 * i) % (w - 16) + 16] = (250, 250, 40)
    return img


def save(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))


def test_nerf_synthetic_style_transforms(tmp_path, capsys):
    # the original NeRF's Blender scenes: camera_angle_x only, file paths without extension,
    # frames not in name order; Blender's world is z up, its cameras OpenGL's
    for i in range(3):
        save(tmp_path / "lego" / "train" / f"r_{i}.png", pattern(i))
    level = [[1, 0, 0, 0], [0, 0, -1, -4], [0, 1, 0, 0], [0, 0, 0, 1]]  # rotated 90 deg about x: looks along +y
    down = [[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 3], [0, 0, 0, 1]]  # identity: looks along -z, down
    frames = [{"file_path": "./train/r_2", "transform_matrix": level},
              {"file_path": "./train/r_0", "transform_matrix": down},
              {"file_path": "./train/r_1", "transform_matrix": level}]
    (tmp_path / "lego" / "transforms_train.json").write_text(json.dumps({"camera_angle_x": 0.6911, "frames": frames}))
    rc, out = run_import([tmp_path / "lego" / "transforms_train.json", "-o", tmp_path / "cap"], capsys)
    assert rc == 0, out.err
    cap = open_capture(tmp_path / "cap")
    assert cap.meta["import"]["pose_axes"] == "opengl"
    assert np.array_equal(cap.frames[0], pattern(0)) and np.array_equal(cap.frames[2], pattern(2))  # name order
    assert np.allclose(forward(cap)[0], [0, 0, -1], atol=1e-9) and np.allclose(cap.poses[0, :3, 3], [0, 0, 3])
    assert np.allclose(forward(cap)[1:], [0, 1, 0], atol=1e-9) and np.allclose(cap.poses[1, :3, 3], [0, -4, 0])
    assert np.allclose(roll_pitch(cap.poses[1:, :3, :3]), 0, atol=1e-9)
    assert np.allclose(cap.times, [0, 0.1, 0.2])  # no timestamps: the image-folder rate
    fx = 0.5 * 64 / np.tan(0.5 * 0.6911)
    assert cap.meta["intrinsics"] == pytest.approx({"fx": fx, "fy": fx, "cx": 31.5, "cy": 23.5})


def test_colmap_text_with_an_odd_camera_an_unregistered_image_and_unordered_names(tmp_path, capsys):
    for n in (1, 2, 3, 10):
        save(tmp_path / "images" / f"frame_{n}.jpg", pattern(n))
    (tmp_path / "sparse").mkdir()
    (tmp_path / "sparse" / "cameras.txt").write_text(
        "# Camera list with one line of data per camera:\n#   CAMERA_ID, MODEL, WIDTH, HEIGHT, PARAMS[]\n"
        "# Number of cameras: 1\n3 SIMPLE_RADIAL 64 48 100 32 24 -0.02\n")
    s = np.sqrt(0.5)
    (tmp_path / "sparse" / "images.txt").write_text(
        "# Image list with two lines of data per image:\n#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME\n"
        "#   POINTS2D[] as (X, Y, POINT3D_ID)\n"
        f"7 {s} 0 {s} 0 0 0 0 3 frame_10.jpg\n10.5 20.25 -1\n"  # turned 90 deg about COLMAP's y (down)
        "2 1 0 0 0 0 0 -1 3 frame_2.jpg\n\n"  # one metre along COLMAP's z (forward)
        "5 1 0 0 0 0 0 0 3 frame_1.jpg\n\n")  # world = this camera's frame
    (tmp_path / "sparse" / "points3D.txt").write_text("# 3D point list\n")
    rc, out = run_import([tmp_path, "-o", tmp_path / "cap", "--fps", 10], capsys)
    assert rc == 0, out.err
    assert "1 of 4 frames have no row in images.txt: dropped" in out.err and "SIMPLE_RADIAL" in out.err
    cap = open_capture(tmp_path / "cap")
    assert len(cap) == 3 and np.allclose(cap.times, [0, 0.1, 0.3])  # frame_3 was not registered
    assert np.abs(cap.frames[2].astype(int) - pattern(10)).mean() < 8  # JPEG
    # COLMAP's y-down world becomes ours: its forward (z) is our +y, its down (y) our -z
    assert np.allclose(cap.poses[:, :3, 3], [[0, 0, 0], [0, 1, 0], [0, 0, 0]], atol=1e-9)
    assert np.allclose(forward(cap), [[0, 1, 0], [0, 1, 0], [-1, 0, 0]], atol=1e-6)
    assert np.allclose(roll_pitch(cap.poses[:, :3, :3]), 0, atol=1e-6)
    assert cap.meta["intrinsics"] == pytest.approx({"fx": 100, "fy": 100, "cx": 31.5, "cy": 23.5})


def stray_folder(folder, rows, n=8):
    folder.mkdir()
    with av.open(str(folder / "rgb.mp4"), "w") as c:
        s = c.add_stream("libx264", rate=60)
        s.width, s.height, s.pix_fmt = 64, 48, "yuv420p"
        for i in range(n):
            c.mux(s.encode(av.VideoFrame.from_ndarray(pattern(i), format="rgb24")))
        c.mux(s.encode())
    (folder / "odometry.csv").write_text("timestamp, frame, x, y, z, qx, qy, qz, qw\n" + "\n".join(rows) + "\n")
    (folder / "camera_matrix.csv").write_text("53.5, 0.0, 31.8\n0.0, 53.5, 24.1\n0.0, 0.0, 1.0\n")
    return folder


def test_stray_scanner_sample(tmp_path, capsys):
    # the app writes q = q_WA * q_AC with q_AC a half turn about x: an upright phone facing ARKit's
    # -z at the start has qx = 1; turned 90 degrees left about ARKit's y (up): (c, 0, -c, 0)
    c = np.sqrt(0.5)
    rows = [f"{4024.5 + i / 60:.6f}, {i:06d}, {0.1 * i}, 1.2, {-0.5 * i}, " + (
        "1.0, 0.0, 0.0, 0.0" if i < 4 else f"{c}, 0.0, {-c}, 0.0") for i in range(8)]
    rc, out = run_import([stray_folder(tmp_path / "6a3f2b1c0d", rows), "-o", tmp_path / "cap"], capsys)
    assert rc == 0, out.err
    cap = open_capture(tmp_path / "cap")
    assert cap.meta["motion"]["source"] == "stray" and cap.meta["import"]["pose_axes"] == "opencv-yup"
    assert np.allclose(cap.times, np.arange(8) / 60, atol=1e-6)
    assert np.allclose(forward(cap)[:4], [0, 1, 0], atol=1e-6) and np.allclose(forward(cap)[4:], [-1, 0, 0], atol=1e-6)
    assert np.allclose(roll_pitch(cap.poses[:, :3, :3]), 0, atol=1e-6)
    assert np.allclose(cap.poses[:, :3, 3], np.c_[0.1 * np.arange(8), 0.5 * np.arange(8), np.full(8, 1.2)])
    assert cap.meta["intrinsics"] == pytest.approx({"fx": 53.5, "fy": 53.5, "cx": 31.8, "cy": 24.1})


def test_record3d_archive_sample(tmp_path, capsys):
    # metadata as the app writes it: K column-major for w x h (twice the images here), poses
    # [qx, qy, qz, qw, px, py, pz] in ARKit axes, JPEG frames in rgbd/
    s = np.sqrt(0.5)
    meta = {"w": 128, "h": 96, "dw": 32, "dh": 24, "fps": 30, "K": [110, 0, 0, 0, 110, 0, 63.5, 47.5, 1],
            "initPose": [0, 0, 0, 1, 0, 0, 0],
            "poses": [[0, 0, 0, 1, 0, 1.5, 0], [-s, 0, 0, s, 0, 1.5, -1], [0, 0, 0, 1, 0, 1.5, -2]],
            "frameTimestamps": [51.0, 51.0334, 51.0667]}
    with zipfile.ZipFile(tmp_path / "room.r3d", "w") as z:
        z.writestr("metadata", json.dumps(meta))
        for i in range(3):
            z.writestr(f"rgbd/{i}.jpg", cv2.imencode(".jpg", pattern(i))[1].tobytes())
            z.writestr(f"rgbd/{i}.depth", b"\0" * 16)
        z.writestr("icon", b"")
    rc, out = run_import([tmp_path / "room.r3d", "-o", tmp_path / "cap"], capsys)
    assert rc == 0, out.err
    cap = open_capture(tmp_path / "cap")
    assert np.allclose(cap.times, [0, 0.0334, 0.0667])
    assert np.allclose(forward(cap)[[0, 2]], [0, 1, 0], atol=1e-9)  # ARKit's -z: our +y
    assert np.isclose(roll_pitch(cap.poses[1, :3, :3])[1], -np.pi / 2, atol=1e-6)  # turned down about x
    assert np.allclose(cap.poses[:, :3, 3], [[0, 0, 1.5], [0, 1, 1.5], [0, 2, 1.5]])
    assert cap.meta["intrinsics"] == pytest.approx({"fx": 55, "fy": 55, "cx": 31.5, "cy": 23.5})


def test_polycam_raw_export_sample(tmp_path, capsys):
    # corrected (optimised) cameras win over the raw ARKit ones; names are microseconds
    keyframes = tmp_path / "capture" / "keyframes"
    for k, stamp in enumerate([638443502, 638610169, 638943502]):
        for sub, t in (("corrected", 0.0), ("", 5.0)):
            d = f"{sub}_" if sub else ""
            save(keyframes / f"{d}images" / f"{stamp}.jpg", pattern(k))
            camera = {"blur_score": 115.28, "cx": 320.5, "cy": 240.5, "fx": 500.0, "fy": 500.0, "height": 480,
                      "width": 640, "manual_keyframe": False, "neighbors": [], "timestamp": stamp}
            camera.update({f"t_{r}{c}": float(r == c) for r in range(3) for c in range(4)})
            camera["t_03"], camera["t_13"] = 0.25 * k + t, 1.4
            (keyframes / f"{d}cameras").mkdir(exist_ok=True)
            (keyframes / f"{d}cameras" / f"{stamp}.json").write_text(json.dumps(camera))
    rc, out = run_import([tmp_path / "capture", "-o", tmp_path / "cap"], capsys)
    assert rc == 0, out.err
    cap = open_capture(tmp_path / "cap")
    assert np.allclose(cap.times, [0, 0.166667, 0.5], atol=1e-6)
    assert np.allclose(cap.poses[:, :3, 3], np.c_[0.25 * np.arange(3), np.zeros(3), np.full(3, 1.4)])
    assert np.allclose(forward(cap), [0, 1, 0]) and np.allclose(roll_pitch(cap.poses[:, :3, :3]), 0)
    assert cap.meta["intrinsics"] == pytest.approx({"fx": 50, "fy": 50, "cx": 31.6, "cy": 23.6})  # 640x480 -> 64x48


# ---------------------------------------------------------------- bad input: one line, exit 2, nothing written

def _edit_json(path, change):
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _bad_recordings(walk, d):
    """name -> (import arguments, the file the error names, what it says)."""
    cases = {}
    ns = write_nerfstudio(walk, d / "ns-missing")
    (ns / "images" / "frame_00003.png").unlink()
    cases["missing image"] = ([ns], "transforms.json", "frame_00003.png, which does not exist")
    ns = write_nerfstudio(walk, d / "ns-scaled")
    _edit_json(ns / "transforms.json", lambda t: t["frames"][2]["transform_matrix"][0].__setitem__(0, 1.7))
    cases["non-rigid matrix"] = ([ns], "transforms.json",
                                 "frame_00010.png)'s transform_matrix is not a rigid transform")
    ns = write_nerfstudio(walk, d / "ns-nan")
    _edit_json(ns / "transforms.json", lambda t: t["frames"][4].__setitem__("timestamp", float("nan")))
    cases["non-finite time"] = ([ns], "transforms.json", "frame_00008.png)'s timestamp has NaN or infinite values")
    project = write_colmap(walk, d / "colmap-missing", binary=False)
    (project / "images" / "frame_0004.png").unlink()
    cases["COLMAP image missing"] = ([project, "--fps", 30], "images.txt", "frame_0004.png, which does not exist")
    project = write_colmap(walk, d / "colmap-quat", binary=False)
    text = (project / "sparse" / "0" / "images.txt").read_text().splitlines()
    first = text[2].split()
    text[2] = " ".join(first[:1] + [str(2 * float(v)) for v in first[1:5]] + first[5:])
    (project / "sparse" / "0" / "images.txt").write_text("\n".join(text) + "\n")
    cases["COLMAP rotation not unit"] = ([project, "--fps", 30], "images.txt", "quaternion of length")
    stray = write_stray(walk, d / "stray-extra")
    with open(stray / "odometry.csv", "a") as f:
        f.write("8013.0, 000012, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 1.0\n")
    cases["Stray pose without frame"] = ([stray], "odometry.csv", "names frame 12 but the source has only 12 frames")
    stray = write_stray(walk, d / "stray-inf")
    text = (stray / "odometry.csv").read_text().splitlines()
    fields = text[3].split(", ")
    text[3] = ", ".join(fields[:3] + ["inf"] + fields[4:])
    (stray / "odometry.csv").write_text("\n".join(text) + "\n")
    cases["Stray non-finite"] = ([stray], "odometry.csv", "NaN or infinite value on line 4")
    r3d = write_record3d(walk, d / "r3d-more")
    _edit_json(r3d / "metadata.json", lambda m: m["poses"].append(m["poses"][-1]))
    cases["Record3D poses and images"] = ([r3d], "metadata.json", "13 poses for 12 images numbered 0..11")
    r3d = write_record3d(walk, d / "r3d-nan")
    _edit_json(r3d / "metadata.json", lambda m: m["poses"][5].__setitem__(4, float("nan")))
    cases["Record3D non-finite"] = ([r3d], "metadata.json", "poses has NaN or infinite values")
    poly = write_polycam(walk, d / "poly-image")
    next((poly / "keyframes" / "corrected_images").iterdir()).unlink()
    cases["Polycam missing image"] = ([poly], ".json", "(a missing image: restore it")
    poly = write_polycam(walk, d / "poly-camera")
    sorted((poly / "keyframes" / "corrected_cameras").iterdir())[-1].unlink()
    cases["Polycam image without camera"] = ([poly], ".png", "(images and cameras do not match")
    poly = write_polycam(walk, d / "poly-shear")
    camera = sorted((poly / "keyframes" / "corrected_cameras").iterdir())[4]
    _edit_json(camera, lambda c: c.__setitem__("t_01", c["t_01"] + 0.2))
    cases["Polycam non-rigid"] = ([poly], camera.name, "is not a rigid transform")
    return cases


def test_bad_recordings_give_one_line_exit_2_and_write_nothing(walk, tmp_path, capsys, monkeypatch):
    cases = _bad_recordings(walk, tmp_path / "in")
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in tmp_path.iterdir())
    for name, (args, culprit, problem) in cases.items():
        rc, out = run_import(args + ["-o", tmp_path / "cap"], capsys)
        lines = out.err.strip().splitlines()
        assert rc == 2 and len(lines) == 1, (name, out.err)
        assert culprit in lines[0] and problem in lines[0], (name, lines[0])
        assert sorted(p.name for p in tmp_path.iterdir()) == before, name


def test_transforms_json_given_with_motion_beside_an_images_folder(walk, tmp_path, capsys):
    scene = write_nerfstudio(walk, tmp_path / "scene", timestamps=False)
    (scene / "images").rename(tmp_path / "frames")
    rc, out = run_import([tmp_path / "frames", "--motion", scene / "transforms.json", "-o", tmp_path / "cap",
                          "--fps", 30], capsys)
    assert rc == 0, out.err
    cap = open_capture(tmp_path / "cap")
    assert np.abs(cap.poses - walk.poses).max() < 1e-5 and np.array_equal(cap.frames, walk.frames)
    assert np.allclose(cap.times, walk.times)  # no timestamps: --fps, in file-name order


def test_transforms_json_with_a_y_up_world_is_recognised_by_the_cameras_up(walk, tmp_path, capsys):
    # Polycam's and Record3D's converters write ARKit's y-up world into transforms.json
    scene = write_nerfstudio(walk, tmp_path / "scene")
    _edit_json(scene / "transforms.json", lambda t: [f.__setitem__("transform_matrix", (
        ARKIT_WORLD @ np.array(f["transform_matrix"])).tolist()) for f in t["frames"]])
    rc, out = run_import([scene, "-o", tmp_path / "cap"], capsys)
    assert rc == 0, out.err
    cap = open_capture(tmp_path / "cap")
    assert cap.meta["import"]["pose_axes"] == "arkit"
    assert np.abs(cap.poses - walk.poses).max() < 1e-5
