"""`neuralworld rollout WORLD (--from CAPTURE | --controls FILE) -o OUT.mp4|DIR`: drive a world, keep the video.

With --from, the world starts from the capture's real frames before --start and follows the
capture's recorded controls; --side-by-side puts the real frames (left) beside the generated
ones (right). With --controls, it starts from the world's own start frames and follows a
control file (format: neuralworld/controls_file.py, and `--help`). The frames go through
World.rollout: the same world, start, controls and --seed give the same frames as in every
other command (evaluation, training previews). OUT.mp4 is H.264; any other OUT is a folder of
PNG frames with the exact pixels.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from neuralworld.errors import UserError

CONTROLS_HELP = (
    "control file (CSV with a header). Either one row per frame with the world's control names as "
    "columns (e.g. steering,throttle), or, for pose worlds, stick values with timing: t (seconds) and any of "
    "forward, strafe (-1..1, + right), turn (-1..1, + right), look (-1..1, + up), run, jump (0/1); each row "
    "holds until the next row's t, the last row's t ends the file. Sticks follow the browser player's rules "
    "(walk 1.5 m/s, run 3 m/s, turn 2.5 rad/s, time step min(1/15 s, 1/--fps) rounded to 1/60 s)"
)


def add_arguments(p) -> None:
    p.add_argument("world", help="world folder (from `neuralworld train`)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--from", dest="capture", metavar="CAPTURE",
                     help="capture whose real frames start the world and whose recorded controls drive it")
    src.add_argument("--controls", metavar="FILE", help=CONTROLS_HELP)
    p.add_argument("--start", type=float, default=None, metavar="T",
                   help="with --from: seconds into the capture where generation begins; the frames before "
                        "fill the memory (default: just after one memory window)")
    p.add_argument("--frames", type=int, default=None, metavar="N",
                   help="frames to generate (default: to the end of the capture or of the control file)")
    p.add_argument("--side-by-side", action="store_true",
                   help="with --from: real frames on the left, generated on the right")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate of the video, and with stick controls the rate of world steps "
                        "(default: the capture's, else 15)")
    p.add_argument("--scale", type=int, default=1, help="enlarge each pixel to SCALE x SCALE in the video")
    p.add_argument("--sampler-steps", type=int, default=None, metavar="K",
                   help="flow worlds: Euler steps of the sampler per frame (default: the world's own, "
                        "NetConfig.sampler_steps); more steps, more detail, slower")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise the world draws each frame")
    p.add_argument("-o", "--output", required=True, metavar="OUT",
                   help="MP4 file to write (OUT.mp4), or a folder of lossless PNG frames (any other name)")
    p.add_argument("--force", action="store_true", help="replace OUT if it exists")


def start_index(times: np.ndarray, start: float | None, window: int) -> int:
    """First generated frame: the first frame at or after `start` seconds (at least 1, so
    that one real frame is in memory), by default the frame after one full memory window."""
    n = len(times)
    if start is None:
        return min(window, n - 1)
    if not times[0] <= times[0] + start <= times[-1]:
        raise UserError(f"--start {start}: outside the capture (0 .. {times[-1] - times[0]:.3f} s)")
    return int(np.clip(np.searchsorted(times, times[0] + start - 1e-9), 1, n - 1))


def run(args) -> int:
    from tqdm import tqdm

    from neuralworld.capture.format import open_capture
    from neuralworld.controls_file import read_control_file
    from neuralworld.fileio import check_new_output
    from neuralworld.heldout import held_out
    from neuralworld.player import PlayerState, trained_time_step
    from neuralworld.report import side_by_side, write_mp4
    from neuralworld.world import World

    out = Path(args.output)
    check_new_output(out, args.force)
    if args.side_by_side and not args.capture:
        raise UserError("--side-by-side: needs --from CAPTURE (the real frames to show beside)")
    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames {args.frames}: give 1 or more")
    world = World.load(args.world, sampler_steps=args.sampler_steps)

    if args.capture:
        data = held_out(world, open_capture(args.capture))
        s = start_index(data.capture.times, args.start, world.layout.window)
        n = len(data) - s if args.frames is None else args.frames
        if s + n > len(data):
            print(f"neuralworld rollout: note: the capture has {len(data) - s} frames after the start; "
                  f"generating {len(data) - s} instead of {n}", file=sys.stderr)
            n = len(data) - s
        start = data.frames(max(0, s - world.layout.window), s)
        controls = data.controls[s:s + n]
        fps = args.fps or (data.capture.fps if data.capture.fps > 0 else 15.0)
    else:
        fps = args.fps or 15.0
        roll, pitch = world.start_attitude  # sticks start where the start frames' camera looked
        controls = read_control_file(Path(args.controls), world.schema, trained_time_step(world.schema, 1.0 / fps),
                                     args.frames, PlayerState.start(pitch=pitch, roll=roll))
        start, data, s = None, None, 0

    frames = world.rollout(start, tqdm(controls, desc="rollout", unit="frame"), seed=args.seed)
    if args.side_by_side:
        real = data.frames(s, s + len(frames))
        frames = [side_by_side(r, g) for r, g in zip(real, frames)]
    scale = max(1, args.scale)
    if out.suffix.lower() == ".mp4":
        count = write_mp4(out, frames, fps, scale=scale)
    else:
        count = write_png_frames(out, frames, scale, args.force)
    print(f"wrote {out}: {count} frames of {frames[0].shape[1] * scale}x{frames[0].shape[0] * scale}"
          + (f" at {fps:g} fps" if out.suffix.lower() == ".mp4" else " as PNG"))
    return 0


def write_png_frames(folder: Path, frames, scale: int, force: bool) -> int:
    """frame-000000.png, frame-000001.png, ... in `folder`, written atomically (lossless: the
    exact pixels the world drew)."""
    import cv2

    from neuralworld.fileio import atomic_dir

    with atomic_dir(folder, force) as tmp:
        for i, frame in enumerate(frames):
            frame = np.asarray(frame, np.uint8).repeat(scale, axis=0).repeat(scale, axis=1)
            cv2.imwrite(str(tmp / f"frame-{i:06d}.png"), frame[:, :, ::-1])
    return len(frames)
