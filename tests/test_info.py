import json

import numpy as np
import pytest

from neuralworld.capture import CaptureWriter, open_capture
from neuralworld.capture.info import describe
from neuralworld.cli import main
from neuralworld.controls import walk_pose

PNG = b"\x89PNG\r\n\x1a\n"


def write_capture(path, kind="pose", n=31, fps=10.0):
    """A 64x48 capture: walking at 1.5 m/s while turning left at 0.4 rad/s, or driving with actions."""
    t = np.arange(n) / fps
    with CaptureWriter(path, width=64, height=48) as w:
        for i in range(n):
            w.add(np.full((48, 64, 3), (i * 8) % 256, np.uint8))
        if kind == "pose":
            yaw = 0.4 * t
            # constant speed along a circle of radius r = v / omega: chord lengths ~ arc lengths
            r = 1.5 / 0.4
            pos = np.stack([r * np.sin(yaw), r * (1 - np.cos(yaw)), np.full(n, 1.6)], 1)
            poses = np.stack([walk_pose(p, y, 0.0) for p, y in zip(pos, yaw)])
            w.finish(t, source="test", fps=fps, poses=poses, motion_source="test")
        elif kind == "actions":
            steering = np.where(np.arange(n) < n // 2, -0.5, 0.5)
            w.finish(t, source="test", fps=fps, actions=np.stack([steering, np.full(n, 0.8)], 1),
                     action_names=["steering", "throttle"], motion_source="test")
        else:
            w.finish(t, source="test", fps=fps)
    return open_capture(path)


def test_pose_statistics(tmp_path):
    d = describe(write_capture(tmp_path / "walk"))
    assert d["frames"] == 31 and d["duration_s"] == pytest.approx(3.0) and (d["width"], d["height"]) == (64, 48)
    assert d["speed_mps"]["median"] == pytest.approx(1.5, rel=1e-3)
    assert d["speed_mps"]["p95"] == pytest.approx(1.5, rel=1e-3)
    assert d["turn_rate_radps"]["median"] == pytest.approx(0.4, rel=1e-6)
    assert d["path_length_m"] == pytest.approx(4.5, rel=1e-3)
    assert d["motion"]["kind"] == "pose" and d["valid_frames"] == 31


def test_info_json_and_contact_sheet(tmp_path, capsys):
    write_capture(tmp_path / "walk")
    assert main(["info", str(tmp_path / "walk"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["speed_mps"]["median"] == pytest.approx(1.5, rel=1e-3)
    sheet = tmp_path / "walk" / "contact_sheet.png"
    assert d["contact_sheet"] == str(sheet) and sheet.read_bytes()[:8] == PNG and sheet.stat().st_size > 5000


def test_info_actions_text_and_output_option(tmp_path, capsys):
    write_capture(tmp_path / "car", kind="actions")
    out = tmp_path / "sheets" / "car.png"
    assert main(["info", str(tmp_path / "car"), "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "steering     min -0.5, mean 0.0161, max 0.5" in text and "throttle     min 0.8" in text
    assert out.read_bytes()[:8] == PNG and not (tmp_path / "car" / "contact_sheet.png").exists()
    assert main(["info", str(tmp_path / "car"), "-o", str(out)]) == 2  # never over a user's file
    assert "already exists" in capsys.readouterr().err
    assert main(["info", str(tmp_path / "car"), "-o", str(out), "--force", "--no-sheet"]) == 0


def test_info_without_motion_and_bad_capture(tmp_path, capsys):
    write_capture(tmp_path / "still", kind="none")
    assert main(["info", str(tmp_path / "still"), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["motion"]["kind"] == "none" and "speed_mps" not in d
    assert (tmp_path / "still" / "contact_sheet.png").is_file()
    assert main(["info", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nothing" in err[0]
