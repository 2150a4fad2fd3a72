import av
import numpy as np
import pytest
import torch

from neuralworld.capture.format import CaptureWriter
from neuralworld.cli import main
from neuralworld.controls import ACTION_KIND, POSE_KIND, ControlSchema
from neuralworld.controls_file import read_control_file
from neuralworld.errors import UserError
from neuralworld.geometry import invert_pose, roll_pitch
from neuralworld.model.config import NetConfig
from neuralworld.model.network import WorldNet
from neuralworld.player import RULES, integrate_sticks, world_time_step
from neuralworld.world import World

MICRO = NetConfig(height=16, width=16, memory_frames=(2, 4), channels=(8, 16), encoder_blocks=(0, 0),
                    decoder_blocks=(1, 1), control_embed=16)
ACTION_SCHEMA = ControlSchema(ACTION_KIND, ("steering", "throttle"), ((-1, 1), (0, 1)), (0.0, 0.5), (0.5, 0.2))


def make_world(path, kind=ACTION_KIND, seed=0):
    """A micro world with random weights, saved and loaded back."""
    torch.manual_seed(seed)
    schema = ACTION_SCHEMA if kind == ACTION_KIND else ControlSchema.identity(POSE_KIND)
    net = WorldNet(MICRO, schema)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    start = np.random.default_rng(seed).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    World(net, schema, start, preset="micro").save(path)
    return path


def write_action_capture(path, n=20, size=16, rng=None):
    rng = rng or np.random.default_rng(0)
    ramp = np.linspace(0, 120, size)
    with CaptureWriter(path, size, size) as w:
        for i in range(n):  # smooth frames (H.264 keeps them well), each a little brighter
            w.add(np.stack([ramp[:, None] + 0 * ramp, 0 * ramp[:, None] + ramp, np.full((size, size), 60.0)],
                           -1).astype(np.uint8) + 5 * i)
        w.finish(np.arange(n) / 10.0, source="test", fps=10.0, actions=rng.random((n, 2)),
                 action_names=["steering", "throttle"])
    return path


def decode(path):
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]


def test_rollout_from_capture_side_by_side_writes_a_decodable_mp4(tmp_path):
    world = make_world(tmp_path / "w")
    cap = write_action_capture(tmp_path / "cap")
    out = tmp_path / "out.mp4"
    assert main(["rollout", str(world), "--from", str(cap), "--start", "0.5", "--frames", "6",
                 "--side-by-side", "-o", str(out)]) == 0
    frames = decode(out)
    assert len(frames) == 6 and frames[0].shape == (16, 32, 3)
    # the left half is the real capture from frame 5 on (H.264 at CRF 18 is close, not exact)
    real = np.load(cap / "frames.npy")[5]
    assert np.abs(frames[0][:, :16].astype(int) - real).mean() < 4
    # an existing output is refused without --force
    assert main(["rollout", str(world), "--from", str(cap), "-o", str(out)]) == 2
    assert main(["rollout", str(world), "--from", str(cap), "--frames", "30", "--scale", "2", "-o", str(out),
                 "--force"]) == 0
    frames = decode(out)  # the default start is one memory window in (4), so 16 frames are left
    assert len(frames) == 16 and frames[0].shape == (32, 32, 3)


def test_rollout_with_a_control_vector_file(tmp_path, capsys):
    world = make_world(tmp_path / "w")
    controls = tmp_path / "c.csv"
    controls.write_text("throttle,steering\n0.5,0\n0.6,-0.2\n0.7,0.1\n")
    out = tmp_path / "c.mp4"
    assert main(["rollout", str(world), "--controls", str(controls), "-o", str(out)]) == 0
    assert len(decode(out)) == 3
    # stick columns drive pose worlds only
    sticks = tmp_path / "s.csv"
    sticks.write_text("t,forward\n0,1\n1,0\n")
    assert main(["rollout", str(world), "--controls", str(sticks), "-o", str(tmp_path / "s.mp4")]) == 2
    assert "drive pose worlds only" in capsys.readouterr().err
    assert main(["rollout", str(world), "--controls", str(sticks), "--side-by-side", "-o",
                 str(tmp_path / "x.mp4")]) == 2


def test_rollout_pose_world_with_sticks(tmp_path):
    world = make_world(tmp_path / "p", kind=POSE_KIND)
    sticks = tmp_path / "s.csv"
    sticks.write_text("t,forward,turn\n0,1,0\n0.5,0,-1\n1,0,0\n")
    out = tmp_path / "p.mp4"
    assert main(["rollout", str(world), "--controls", str(sticks), "--fps", "20", "-o", str(out)]) == 0
    assert len(decode(out)) == 20  # 1 s at a 1/20 s step


def test_rollout_refuses_missing_world_and_other_control_kind(tmp_path, capsys):
    cap = write_action_capture(tmp_path / "cap")
    assert main(["rollout", str(tmp_path / "none"), "--from", str(cap), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "world.json is missing" in capsys.readouterr().err
    pose_world = make_world(tmp_path / "p", kind=POSE_KIND)
    assert main(["rollout", str(pose_world), "--from", str(cap), "-o", str(tmp_path / "o.mp4")]) == 2
    assert "takes pose6dof controls" in capsys.readouterr().err
    assert not (tmp_path / "o.mp4").exists()


# --- the control file's stick integration (mirrored by the browser player) ---

def test_walking_forward_one_second_moves_about_1_5_m_along_camera_z():
    dt = world_time_step(1 / 30)
    assert dt == pytest.approx(2 / 60)
    controls, poses = integrate_sticks(np.array([0.0, 1.0]), np.array([[1.0], [0.0]]), ["forward"], dt)
    assert len(controls) == 30 and controls.shape[1] == 16
    rel = invert_pose(poses[0]) @ poses[-1]  # end pose in the start camera's axes
    # 1.5 m/s after accelerating at 20 m/s^2 (0.075 s), so a little under 1.5 m:
    # velocities 2/3, 4/3, then 1.5 m/s for 28 steps of 1/30 s -> 44/30 m
    assert rel[2, 3] == pytest.approx(44 / 30) and 1.44 < rel[2, 3] < 1.5
    assert abs(rel[0, 3]) < 1e-9 and abs(rel[1, 3]) < 1e-9
    assert np.allclose(controls[:, 14], dt) and np.all(controls[:, 15] == 1)
    assert controls[:, 11].sum() == pytest.approx(rel[2, 3])  # per-frame forward steps add up


def test_turning_left_raises_yaw_and_looking_up_clamps_pitch():
    dt = world_time_step(1 / 20)  # 0.05 s: 10 steps in 0.5 s
    _, poses = integrate_sticks(np.array([0.0, 0.5]), np.array([[-1.0, 1.0], [0, 0]]), ["turn", "look"], dt)
    forward = poses[-1][:3, 2]
    yaw = np.arctan2(forward[1], forward[0])
    assert yaw == pytest.approx(RULES.turn_rate * 0.5, abs=1e-6)  # left turn: counter-clockwise from above
    assert roll_pitch(poses[-1][:3, :3])[1] == pytest.approx(RULES.pitch_max)  # 1.25 rad asked, 0.75 allowed
    assert np.allclose(poses[:, :3, 3], 0)  # turning on the spot


def test_time_step_rule():
    assert world_time_step(1 / 60) == pytest.approx(1 / 60)
    assert world_time_step(1 / 5) == pytest.approx(1 / 15)  # slow frames: at most 1/15 s
    assert world_time_step(1 / 24) == pytest.approx(3 / 60)  # 0.0417 s rounds to 0.05
    assert world_time_step(1 / 1000) == pytest.approx(1 / 60)  # never 0


def test_jump_goes_up_and_lands(tmp_path):
    dt = 1 / 60
    _, poses = integrate_sticks(np.array([0.0, 0.05, 1.0]), np.array([[1.0], [0.0], [0.0]]), ["jump"], dt)
    z = poses[:, 2, 3]
    assert z.max() == pytest.approx(2.2 ** 2 / (2 * 9.81), abs=0.03) and z[-1] == 0.0


def test_control_file_errors(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("t,fly\n0,1\n")
    with pytest.raises(UserError, match="neither this world's controls"):
        read_control_file(bad, ACTION_SCHEMA, 1 / 15)
    bad.write_text("t,forward\n0,1\n0,0\n")
    with pytest.raises(UserError, match="must increase"):
        read_control_file(bad, ControlSchema.identity(POSE_KIND), 1 / 15)
    with pytest.raises(UserError, match="no such control file"):
        read_control_file(tmp_path / "none.csv", ControlSchema.identity(POSE_KIND), 1 / 15)
    ok = tmp_path / "ok.csv"
    ok.write_text("t,steering,throttle\n0,0.1,0.5\n")
    out = read_control_file(ok, ACTION_SCHEMA, 1 / 15, frames=3)
    assert out.shape == (3, 2) and np.allclose(out[-1], [0.1, 0.5])  # the last row is held


def test_players_ask_for_the_trained_time_step_nearest_to_the_lag():
    from neuralworld.player import trained_time_step

    schema = ControlSchema(POSE_KIND, tuple(ControlSchema.identity().names), ((-1.0, 1.0),) * 16, (0.0,) * 16,
                           (1.0,) * 16, (1 / 60, 2 / 60, 3 / 60, 4 / 60))
    assert trained_time_step(schema, 1 / 60) == pytest.approx(1 / 60)
    assert trained_time_step(schema, 0.030) == pytest.approx(2 / 60)
    assert trained_time_step(schema, 0.025) == pytest.approx(2 / 60)  # a tie: the larger step
    assert trained_time_step(schema, 0.5) == pytest.approx(4 / 60)  # never beyond the largest
    old = ControlSchema.identity()  # a world that lists no steps: the player's own rule
    assert trained_time_step(old, 1 / 24) == pytest.approx(world_time_step(1 / 24))
