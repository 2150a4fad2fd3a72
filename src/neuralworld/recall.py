"""A long-term memory of real frames, recalled by the player's pose.

After WorldMem (Xiao et al., "WorldMem: Long-term Consistent World Simulation with Memory",
2025), which keeps past frames with their poses and draws each new frame from the ones whose views
overlap it. Here the memory holds real frames of the capture the world was trained on (its
"bank"), and they are shown to the network through the move warp (model/network.MoveWarp): a
warped world's view keeps what it saw, but what comes into view (turning: a strip at the edge at
every step) has to be painted, and a network trained on a per-pixel loss paints the blurred mean,
soup within half a second of turning. So:

  bank      capture frames kept every BANK_STEP metres or BANK_TURN radians of heading, at most
            BANK_BYTES of them (choose_bank), with their camera-to-world poses
  recall    play: the bank frame nearest the camera (metres plus HEADING_METRES per radian of
            heading); where no frame faced the camera's way, one shown as if turned to face a
            heading sector (Bank.recall)
  fill      the recalled frame is turned to the camera's view (rotation only) and fills the
            pixels the warped view did not hold; NetConfig.recall_refresh of it is mixed into
            every warped frame, which walking would otherwise enlarge into radial streaks
  told      the network also sees the turned frame, and the rotation and clipped translation
            between the two cameras (relative_pose, 12 numbers)

Training recalls, for each target frame, one of the RECALL_CHOICES nearest bank frames of its
capture that are at least RECALL_GAP seconds away from it (a neighbour in time would be the
answer itself, which play never has), and a random bank frame RECALL_RANDOM of the time (the
player walks where the capture did not). Play follows the pose the controls integrate from the
start frame's (World.step).
"""

from __future__ import annotations

import numpy as np
import torch

BANK_STEP = 0.25  # metres between kept frames
BANK_TURN = 0.2  # radians of heading between kept frames
BANK_BYTES = 32 << 20  # a capture's bank holds at most this much (its frames, uint8): what the page downloads and holds
HEADING_METRES = 20.0  # pose distance: metres per radian between forward axes
RECALL_REACH = 4.0  # metres: translations beyond it are told as this far
RECALL_CHOICES = 4
RECALL_GAP = 0.5  # seconds
RECALL_RANDOM = 0.15
SECTOR = 0.8  # radians: a frame per heading sector this wide where none faces the camera (under the view's width)
FACING = 0.3  # radians: a bank frame heading at most this far from the camera's is shown as it was taken
TURNING = 1e-4  # radians per move: less is not turning
FEATURES = 12


def forward_axes(poses: np.ndarray) -> np.ndarray:
    """(..., 4, 4) camera-to-world -> (..., 3) unit forward (camera z) axes in world coordinates."""
    return np.asarray(poses)[..., :3, 2]


def pose_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance of camera poses a (..., 4, 4) and b (..., 4, 4), broadcast: metres between the
    positions plus HEADING_METRES per radian between the forward axes."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    metres = np.linalg.norm(a[..., :3, 3] - b[..., :3, 3], axis=-1)
    cos = np.clip((forward_axes(a) * forward_axes(b)).sum(-1), -1.0, 1.0)
    return metres + HEADING_METRES * np.arccos(cos)


def pose_heading(poses: np.ndarray) -> np.ndarray:
    """(..., 4, 4) camera-to-world poses (world z up) -> (...,) the heading of the forward axis
    about the vertical, radians."""
    f = forward_axes(poses)
    return np.arctan2(f[..., 1], f[..., 0])


def wrap_angle(a):
    """Angles in radians -> the same angles in (-pi, pi] (atan2 of their sine and cosine, as the page's)."""
    return np.arctan2(np.sin(a), np.cos(a))


def yawed(pose: np.ndarray, angle: float) -> np.ndarray:
    """A camera-to-world pose (4, 4) turned by `angle` radians about the vertical (world z) at its
    position."""
    c, s = np.cos(angle), np.sin(angle)
    out = np.array(pose, np.float64)
    out[:3, :3] = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]) @ out[:3, :3]
    return out


def frames_in(budget: int, height: int, width: int) -> int:
    """How many RGB uint8 frames of this size fit in `budget` bytes (one at least)."""
    return max(1, budget // (3 * height * width))


def bank_capacity(height: int, width: int) -> int:
    """How many frames of this size fit in BANK_BYTES (227 at 256x192, 2,730 at 64x64)."""
    return frames_in(BANK_BYTES, height, width)


def choose_bank(poses: np.ndarray, valid: np.ndarray, most: int) -> np.ndarray:
    """(N, 4, 4) poses, (N,) valid -> indices of the frames kept in the bank: the first valid frame,
    then each valid frame BANK_STEP metres or BANK_TURN radians of heading from the last kept; of
    more than `most`, `most` evenly spaced among them (a long walk's bank then thins out along it
    instead of ending part way)."""
    kept = []
    for i in np.flatnonzero(np.asarray(valid, bool)):
        if not kept:
            kept.append(i)
            continue
        last = poses[kept[-1]]
        moved = np.linalg.norm(poses[i][:3, 3] - last[:3, 3])
        turned = np.arccos(np.clip(forward_axes(poses[i]) @ forward_axes(last), -1.0, 1.0))
        if moved >= BANK_STEP or turned >= BANK_TURN:
            kept.append(i)
    kept = np.array(kept, np.int64)
    if len(kept) > most:
        kept = kept[np.linspace(0, len(kept) - 1, most).round().astype(np.int64)]
    return kept


def recall_choices(poses: np.ndarray, times: np.ndarray, bank: np.ndarray) -> np.ndarray:
    """(N, RECALL_CHOICES) for each frame of one capture, the bank entries (indices into `bank`)
    nearest it in pose among those at least RECALL_GAP seconds from it, nearest first."""
    bank_poses = poses[bank]  # (M, 4, 4)
    out = np.zeros((len(poses), RECALL_CHOICES), np.int64)
    for i in range(len(poses)):
        d = pose_distance(poses[i], bank_poses)  # (M,)
        d[np.abs(times[bank] - times[i]) < RECALL_GAP] = np.inf
        order = np.argsort(d)[:RECALL_CHOICES]
        out[i] = np.resize(order, RECALL_CHOICES)  # a bank smaller than the choices repeats them
    return out


def relative_pose(recalled: torch.Tensor, camera: torch.Tensor) -> torch.Tensor:
    """Poses (..., 4, 4) of the recalled frames and of the cameras to draw -> (..., 12): the
    camera in the recalled frame's camera axes, inv(T_recall) @ T_camera, rows of [R | t] (the
    layout of a pose control's move, controls.py)."""
    rel = torch.linalg.inv(recalled.double()) @ camera.double()  # (..., 4, 4)
    return rel[..., :3, :].flatten(-2).float()


class Bank:
    """The recalled frames of a world: frames (M, H, W, 3) uint8 and their poses (M, 4, 4)."""

    def __init__(self, frames: np.ndarray, poses: np.ndarray):
        self.frames = np.asarray(frames, np.uint8)
        self.poses = np.asarray(poses, np.float64)
        self.headings = pose_heading(self.poses)  # (M,), for Bank.recall at every step

    def __len__(self) -> int:
        return len(self.frames)

    def recall(self, pose: np.ndarray, turning: float = 0.0) -> tuple[int, np.ndarray]:
        """The bank frame to show the camera at `pose` (4, 4), whose heading changed by `turning`
        radians in its last move -> (index, the pose to warp it from).

        The bank frame nearest in position plus HEADING_METRES per radian off the camera's
        heading, if it heads within FACING of it. But the capture looked only some ways, and a
        player turns where it never looked. Then the frame is recalled for a heading sector,
        SECTOR radians wide, on the side the view is turning to (its centre the next sector
        boundary that way: the view's edge coming into view then lies inside the frame): the bank
        frame nearest in position plus HEADING_METRES per radian off that heading, shown as if
        turned about the vertical to face it: a real view of the place, looking another way, for
        what comes into view (model/network.MoveWarp)."""
        pose = np.asarray(pose, np.float64)
        heading = pose_heading(pose)
        metres = np.linalg.norm(self.poses[:, :3, 3] - pose[:3, 3], axis=-1)  # (M,)
        off = wrap_angle(self.headings - heading)  # (M,)
        i = int(np.argmin(metres + HEADING_METRES * np.abs(off)))
        if abs(off[i]) <= FACING:  # a real view this way: shown as it was taken
            return i, self.poses[i]
        step = heading / SECTOR
        sector = SECTOR * (np.ceil(step) if turning > TURNING else np.floor(step) if turning < -TURNING
                           else np.round(step))
        off = wrap_angle(self.headings - sector)
        i = int(np.argmin(metres + HEADING_METRES * np.abs(off)))
        return i, yawed(self.poses[i], -off[i])

    def locate(self, frame: np.ndarray) -> np.ndarray:
        """The pose (4, 4) of the bank frame that looks most like `frame` (H, W, 3) uint8 (mean
        squared difference): where a rollout from other real frames starts."""
        diff = self.frames.astype(np.float32) - np.asarray(frame, np.float32)[None]
        return self.poses[int(np.argmin((diff ** 2).mean(axis=(1, 2, 3))))]


def recall_rule() -> dict:
    """The numbers of Bank.recall, for the page's copy of it (web/world.js)."""
    return {"heading_metres": HEADING_METRES, "facing": FACING, "sector": SECTOR, "turning": TURNING}


class Follower:
    """The camera's pose over a rollout, from the moves of the controls, and what it recalls at
    every step: the one rule of World.step, the int8 calibration (quantize.played_inputs) and
    the page (web/world.js, Follower)."""

    def __init__(self, bank: Bank, start_pose: np.ndarray):
        self.bank, self.start_pose = bank, np.array(start_pose, np.float64)
        self.pose = self.start_pose.copy()

    def reset(self, pose: np.ndarray | None = None) -> None:
        self.pose = (self.start_pose if pose is None else np.asarray(pose, np.float64)).copy()

    def step(self, controls) -> tuple[torch.Tensor, torch.Tensor]:
        """One move, the pose controls (C,) as the network gets them (clipped) -> the recalled
        frame (1, 3, H, W) float32 in [0, 1] and the camera in its camera's axes (1, 12)."""
        move = np.vstack([np.asarray(controls, np.float32).reshape(-1)[:12].astype(np.float64).reshape(3, 4),
                          [0.0, 0.0, 0.0, 1.0]])
        before, self.pose = self.pose, self.pose @ move
        turning = float(wrap_angle(pose_heading(self.pose) - pose_heading(before)))
        i, seen_from = self.bank.recall(self.pose, turning)
        frame = torch.from_numpy(self.bank.frames[i]).permute(2, 0, 1)[None].float() / 255.0
        return frame, relative_pose(torch.from_numpy(seen_from), torch.from_numpy(self.pose))[None]

