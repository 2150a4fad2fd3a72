"""Does a world hold when it is played in the browser? A minute in headless Chromium.

    python benchmarks/play_hold.py WORLD CAPTURE [--out DIR] [--seconds 60] [--threads 2]

Exports WORLD when needed, serves its page, and plays it as a person would: standing still for
the first half (no key), then walking (W held, with J or L held now and then to turn). At 0, 20,
40 and 60 s (or the same fractions of --seconds) it gathers the frames the page drew over about
a second and checks them against the bands of CAPTURE's real frames (tour.Bands: detail,
structure, contrast, colour), and saves a screenshot of the page. Prints one line per mark and exits 1 when
a mark leaves its bands.

    python benchmarks/play_hold.py WORLD CAPTURE --python

plays the same minute in Python instead (World.rollout from the world's start frames and start
attitude, the same sticks at the world's smallest trained time step, no browser): seconds of
CPU instead of a minute, for comparing recipes; it saves a strip of the start frame and the
last frame at each mark.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from neuralworld.bench import served_page
from neuralworld.capture.format import open_capture
from neuralworld.errors import run_script
from neuralworld.export import export_world, is_current
from neuralworld.tour import Bands
from neuralworld.world import World, resize_frames

MARKS = (0.0, 1 / 3, 2 / 3, 1.0)  # where the minute is checked, as fractions of --seconds


def gather(page, height: int, width: int, count: int = 10, every: float = 0.1) -> np.ndarray:
    """`count` frames the page drew, `every` seconds apart: (count, H, W, 3) uint8."""
    frames = []
    for _ in range(count):
        frames.append(np.array(page.evaluate("window.nw.lastFrame()"), np.uint8).reshape(height, width, 3))
        time.sleep(every)
    return np.stack(frames)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("world", type=Path)
    p.add_argument("capture", type=Path, help="a capture of the place: its real frames give the bands")
    p.add_argument("--out", type=Path, default=Path("play-hold"), help="folder for the screenshots")
    p.add_argument("--seconds", type=float, default=60.0)
    p.add_argument("--threads", type=int, default=2, help="WebAssembly threads in the page")
    p.add_argument("--python", action="store_true", help="play the minute in Python, not in the browser")
    args = p.parse_args()

    world = World.load(args.world)
    real = open_capture(args.capture)
    bands = Bands.from_real(resize_frames(np.asarray(real.frames[:3000]), world.height, world.width))
    args.out.mkdir(parents=True, exist_ok=True)
    if args.python:
        return play_in_python(world, bands, args)

    web = args.world / "web"
    if not is_current(args.world, web):
        export_world(args.world, web)
    failed = False
    with served_page(web, ["--disable-gpu"]) as (page, url):
        page.set_viewport_size({"width": 800, "height": 600})
        page.goto(f"{url}?backend=wasm&threads={args.threads}")
        page.evaluate("window.nw.ready")
        page.evaluate("window.nw.reset()")
        page.wait_for_function("window.nw.frames > 3", timeout=30000)
        t0, walking, turn_key = time.time(), False, None
        for i, mark in enumerate(MARKS):
            while time.time() - t0 < mark * args.seconds:
                elapsed = time.time() - t0
                if not walking and elapsed >= args.seconds / 2:
                    page.keyboard.down("KeyW")
                    walking = True
                if walking:
                    turn = turn_stick(elapsed)
                    want = {-1.0: "KeyJ", 1.0: "KeyL"}.get(turn)
                    if want != turn_key:
                        if turn_key:
                            page.keyboard.up(turn_key)
                        if want:
                            page.keyboard.down(want)
                        turn_key = want
                time.sleep(0.05)
            frames = gather(page, world.height, world.width)
            page.screenshot(path=str(args.out / f"play-{i}.png"))
            failed |= not report(bands, frames, time.time() - t0, walking,
                                 f"{page.evaluate('window.nw.fps'):.1f} frames/s, "
                                 f"{page.evaluate('window.nw.frames')} frames; {args.out}/play-{i}.png")
    return 1 if failed else 0


def turn_stick(elapsed: float) -> float | None:
    """While walking, turn for a second every four, alternating sides: -1 (J, left), 1 (L, right)."""
    return (-1.0 if int(elapsed // 4) % 2 else 1.0) if elapsed % 4 < 1 else None


def report(bands: Bands, frames: np.ndarray, elapsed: float, walking: bool, tail: str) -> bool:
    """Print one mark's line; whether its frames stayed in band."""
    check = bands.check(frames)
    print(f"{elapsed:5.1f} s ({'walking' if walking else 'standing'}): detail "
          f"{check['detail'][0]:.2f} (band {bands.detail[0]:.2f}..{bands.detail[1]:.2f}), structure "
          f"{check['structure'][0]:.2f} ({bands.structure[0]:.2f}..{bands.structure[1]:.2f}), contrast "
          f"{check['contrast'][0]:.2f} ({bands.contrast[0]:.2f}..{bands.contrast[1]:.2f}), colour "
          f"{check['colour'][0]:.3f} (<= {bands.colour:.3f}): {'in band' if check['held'] else 'OUT OF BAND'}; "
          f"{tail}", flush=True)
    return bool(check["held"])


def play_in_python(world: World, bands: Bands, args) -> int:
    """The same minute through World.rollout at the world's smallest trained step; the frames of
    the second after each mark are checked, as the browser's are."""
    import cv2

    from neuralworld.player import PlayerState, integrate_sticks

    dt = min(world.schema.time_steps or (1 / 60,))
    n = int(round(args.seconds / dt))
    times = np.arange(n) * dt
    sticks = np.zeros((n, 2))  # forward, turn
    for k, t in enumerate(times):
        if t >= args.seconds / 2:
            sticks[k] = 1.0, turn_stick(t) or 0.0
    roll, pitch = world.start_attitude
    controls, _ = integrate_sticks(times, sticks, ["forward", "turn"], dt, frames=n,
                                   start=PlayerState.start(0.0, pitch, roll))
    frames = world.rollout(None, controls, seed=0)
    second = int(round(1 / dt))
    failed, shown = False, [world.start_frames[-1]]
    for mark in MARKS:
        end = min(n, int(round(mark * n)) + second)
        seen = frames[end - second:end:max(1, second // 10)]  # 10 frames over the second
        shown.append(frames[end - 1])
        failed |= not report(bands, seen, end * dt, end * dt > args.seconds / 2, "python")
    strip = args.out / "play-python.png"
    cv2.imwrite(str(strip), np.concatenate(shown, 1)[:, :, ::-1])
    print(f"start frame, then the last frame at each mark: {strip}")
    return 1 if failed else 0


if __name__ == "__main__":
    run_script(main)
