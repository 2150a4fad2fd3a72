"""A world's configuration in two parts, and the named presets that give both.

  NetConfig    what rebuilds the network: frame size, memory layout, controls it sees, widths,
               blocks. world.json stores it; a world is loaded from it alone.
  TrainRecipe  how the network is trained: batch, optimiser, averaging, unroll, memory
               corruptions, loss weights. The checkpoint and the training summary store it.

Every recipe step of the reference system (Ollin Boer Bohan, "World Emulation via Neural
Network", 2025) is a field of its own, so that the ablation ladder (earlier recipe -> 6DoF
controls -> 32-frame multi-scale memory -> multi-scale network -> adversarial loss -> bigger
network) is built by changing fields alone.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from neuralworld.errors import UserError
from neuralworld.model.memory import MemoryLayout


def _known_fields(cls, d: dict) -> dict:
    """The entries of `d` that are fields of the dataclass `cls` (a world.json written before the
    config was split holds both parts in one dict)."""
    known = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in d.items() if k in known}


def _to_json(obj) -> dict:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(obj).items()}


def _check_types(obj) -> None:
    """Each field holds a value of its default's type (ints pass as floats; tuples hold ints), so
    that `--set lr=abc` or a world.json with a string where a number belongs fails at once, in one line."""
    for f in dataclasses.fields(obj):
        value, want = getattr(obj, f.name), type(f.default)
        if want is tuple:
            ok = isinstance(value, (tuple, list)) and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
        elif want is float:
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if ok:
                object.__setattr__(obj, f.name, float(value))
        elif want is int:
            ok = isinstance(value, int) and not isinstance(value, bool)
        else:
            ok = isinstance(value, want)
        if not ok:
            raise UserError(f"{f.name}={value!r}: expected {'a list of whole numbers' if want is tuple else want.__name__}")


@dataclass(frozen=True)
class NetConfig:
    # --- frames and memory ---
    height: int = 192  # frame height in pixels (captures are resized to it once, at load)
    width: int = 256  # frame width in pixels
    memory_frames: tuple[int, ...] = (4, 8, 16, 32)  # past frames per memory level, level 0 = full size
    memory_factor: int = 4  # each memory level (and network scale) is this many times smaller per side
    # --- controls ---
    control_mode: str = "6dof"  # "6dof": the whole control vector; "2d": forward motion + yaw change only (pose worlds)
    control_embed: int = 128  # width of the control MLP whose output conditions every block (FiLM)
    # --- network ---
    network: str = "unet"  # "unet": multi-scale UNet, one scale per memory level; "flat8": one flat body at 1/8 size
    channels: tuple[int, ...] = (8, 32, 128, 256)  # channels per scale (unet) or of the body (flat8: first entry)
    encoder_blocks: tuple[int, ...] = (0, 0, 1, 0)  # residual blocks per scale on the way down
    decoder_blocks: tuple[int, ...] = (1, 1, 2, 2)  # residual blocks per scale on the way up (decoder-heavy; flat8: their sum)
    channel_mult: float = 1.0  # multiplies every channel count (the "bigger network" rung of the ladder)
    residual: bool = True  # predict a change to the newest memory frame instead of a whole frame
    # pose worlds: the newest frame warped by the move (network.MoveWarp) joins the inputs ("input"),
    # or is also what the network's change is added to ("base"); "off": neither
    warp: str = "off"
    focal: float = 0.7  # warp: the camera's focal length over the frame width (the capture's, set at training)
    focal_y: float = 0.0  # warp: its vertical focal length over the frame height, where frames were resized to another shape (0: square pixels)
    noise_level_input: bool = False  # the network is told how noisy its memory is (training's memory_noise; GameNGen)
    play_noise_level: float = 0.0  # the level it is told at play, where memory is not noised
    objective: str = "regression"  # "regression": one prediction per frame; "flow": sampled by flow matching
    sampler_steps: int = 2  # flow: Euler steps per frame at play (1..4; `--sampler-steps` changes it at play)
    recall: bool = False  # pose worlds with warp: what comes into view is taken from the capture's frames (recall.py)
    recall_refresh: float = 0.1  # worlds that recall: share of the recalled view's fine detail mixed into each moving step at play
    recall_refresh_coarse: float = 0.06  # ... and of the rest of it (WorldNet.refresh; equal shares mix the whole view)
    look_refresh: float = 0.0  # action worlds: at play, this times the share of fine detail the drawn frame lacks is taken from the training frame that looks most like it (LookRecall)
    look_frames: int = 0  # action worlds with look_refresh: how many training frames they keep to recall (set by training)
    hold_still: bool = False  # pose worlds with warp: at play, a step that does not move returns the newest frame as it is

    def __post_init__(self):
        _check_types(self)
        for name in ("memory_frames", "channels", "encoder_blocks", "decoder_blocks"):
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if self.memory_factor < 2 or min(self.memory_frames, default=0) < 1 or min(self.channels, default=0) < 1:
            raise UserError(f"memory_factor {self.memory_factor}, memory_frames {list(self.memory_frames)}, channels "
                            f"{list(self.channels)}: the factor must be 2 or more, frames and channels 1 or more")
        if self.control_mode not in ("6dof", "2d"):
            raise UserError(f"control_mode {self.control_mode!r}: expected '6dof' or '2d'")
        if self.network not in ("unet", "flat8"):
            raise UserError(f"network {self.network!r}: expected 'unet' or 'flat8'")
        if self.warp not in ("off", "input", "base") or not self.focal > 0 or self.focal_y < 0:
            raise UserError(f"warp {self.warp!r}, focal {self.focal}, focal_y {self.focal_y}: expected 'off', 'input' "
                            "or 'base', a focal length above 0, and a vertical one of 0 or more")
        if self.recall and (self.warp == "off" or not 0 <= self.recall_refresh < 1
                            or not 0 <= self.recall_refresh_coarse < 1):
            raise UserError(f"recall with warp {self.warp!r}, recall_refresh {self.recall_refresh}, "
                            f"recall_refresh_coarse {self.recall_refresh_coarse}: a world that recalls real frames "
                            "warps them (warp 'input' or 'base'), and refreshes by shares in [0, 1)")
        if not 0 <= self.look_refresh < 1 or self.look_frames < 0:
            raise UserError(f"look_refresh {self.look_refresh}, look_frames {self.look_frames}: expected a share in "
                            "[0, 1) and a count of 0 or more")
        if self.objective not in ("regression", "flow") or not 1 <= self.sampler_steps <= 16:
            raise UserError(f"objective {self.objective!r}, sampler_steps {self.sampler_steps}: expected "
                            "'regression' or 'flow', and 1..16 steps")
        if self.network == "unet":
            n = len(self.memory_frames)
            for name in ("channels", "encoder_blocks", "decoder_blocks"):
                if len(getattr(self, name)) < n:
                    raise UserError(f"{name} has {len(getattr(self, name))} entries for {n} memory levels")
        else:
            if self.height % 8 or self.width % 8:
                raise UserError(f"{self.width}x{self.height}: the flat8 network needs sizes divisible by 8")
        self.layout.sizes(self.height, self.width)  # raises if a level does not divide the frame

    @property
    def layout(self) -> MemoryLayout:
        return MemoryLayout(self.memory_frames, self.memory_factor)

    def noise_shapes(self) -> list[tuple[int, int, int]]:
        """(channels, h, w) of each U(0, 1) noise input: one map per memory level, and for flow
        worlds the uniforms the sampler turns into its starting Gaussian noise (4 at full size)."""
        shapes = [(1, h, w) for h, w in self.layout.sizes(self.height, self.width)]
        return shapes + ([(4, self.height, self.width)] if self.objective == "flow" else [])

    def scaled_channels(self) -> list[int]:
        """Channel counts after channel_mult, rounded to multiples of 8 (what browser backends like)."""
        return [max(8, int(round(c * self.channel_mult / 8)) * 8) for c in self.channels]

    def with_size(self, height: int, width: int) -> "NetConfig":
        """The same network for another frame size, dropping the memory levels that would not be a
        whole number of pixels (MemoryLayout.for_size)."""
        layout = MemoryLayout.for_size(height, width, self.memory_frames, self.memory_factor)
        if not layout.frames:
            raise UserError(f"{width}x{height}: too small for any memory level")
        return dataclasses.replace(self, height=height, width=width, memory_frames=layout.frames)

    def to_json(self) -> dict:
        return _to_json(self)

    @classmethod
    def from_json(cls, d: dict) -> "NetConfig":
        return cls(**_known_fields(cls, d))


@dataclass(frozen=True)
class TrainRecipe:
    batch: int = 16  # windows per optimizer step (per process)
    lr: float = 3e-4  # AdamW learning rate, constant
    weight_decay: float = 0.01  # AdamW weight decay
    ema_decay: float = 0.999  # decay of the averaged weights that get saved and played
    unroll: int = 3  # frames generated per window; frames after the first see earlier outputs in memory
    memory_noise: float = 0.02  # std of the Gaussian noise added to memory frames (upper bound, drawn per window)
    memory_static: float = 0.01  # probability that a memory frame is replaced by random static
    memory_black: float = 0.01  # probability that a memory frame is replaced by black
    brightness_jitter: float = 0.1  # whole-window brightness gain drawn from 1 +- this (0: no augmentation)
    frame_skip: bool = False  # pose captures: also train on every 2nd.. k-th frame, up to the player's 1/15 s step (data.py)
    unroll_grad: bool = False  # gradients flow through the generated frames of the unroll (straight-through 8-bit)
    still_fraction: float = 0.0  # pose captures: share of windows in which the player stops and stands still (data.py)
    l1_weight: float = 1.0  # weight of the per-pixel L1 loss
    gradient_weight: float = 0.0  # weight of the gradient difference loss (sharp edges; regression)
    adversarial_weight: float = 0.05  # weight of the adversarial loss (0: L1 only, no discriminator)
    adversarial_start: int = 0  # optimizer steps of L1 alone before the critic and its loss join
    r1_weight: float = 0.0  # R1 penalty on the critic's gradient at real frames (Mescheder et al. 2018)
    disc_channels: int = 32  # channels of the discriminator's first layer (doubled per layer)
    disc_lr: float = 3e-4  # discriminator AdamW learning rate

    def __post_init__(self):
        _check_types(self)
        if self.batch < 1 or self.unroll < 1 or not self.lr > 0 or not 0 <= self.ema_decay < 1:
            raise UserError(f"batch {self.batch}, unroll {self.unroll}, lr {self.lr}, ema_decay {self.ema_decay}: "
                            "batch and unroll must be 1 or more, lr above 0, ema_decay in [0, 1)")

    def to_json(self) -> dict:
        return _to_json(self)

    @classmethod
    def from_json(cls, d: dict) -> "TrainRecipe":
        return cls(**_known_fields(cls, d))


@dataclass(frozen=True)
class Preset:
    """A named pair of network and recipe; what `--preset` chooses and `--set` changes."""
    name: str
    net: NetConfig
    recipe: TrainRecipe

    def with_overrides(self, items: list[str]) -> "Preset":
        """Apply `key=value` strings to whichever part has the field (values in JSON, e.g.
        adversarial_weight=0.1, channels=[8,16]; a bare word is a string, e.g. network=flat8)."""
        net_fields = {f.name for f in dataclasses.fields(NetConfig)}
        recipe_fields = {f.name for f in dataclasses.fields(TrainRecipe)}
        net_changes, recipe_changes = {}, {}
        for item in items:
            key, sep, text = item.partition("=")
            if not sep or key not in net_fields | recipe_fields:
                raise UserError(f"--set {item}: expected KEY=VALUE with KEY one of "
                                f"{', '.join(sorted(net_fields | recipe_fields))}")
            try:
                value = json.loads(text)
            except json.JSONDecodeError:
                value = text
            (net_changes if key in net_fields else recipe_changes)[key] = value
        return dataclasses.replace(self, net=dataclasses.replace(self.net, **net_changes),
                                   recipe=dataclasses.replace(self.recipe, **recipe_changes))

    def with_size(self, height: int, width: int) -> "Preset":
        return dataclasses.replace(self, net=self.net.with_size(height, width))

    def with_fields(self, name: str | None = None, **fields) -> "Preset":
        """The preset with fields of either part changed (by name)."""
        net = {k: v for k, v in fields.items() if k in {f.name for f in dataclasses.fields(NetConfig)}}
        recipe = {k: v for k, v in fields.items() if k not in net}
        return dataclasses.replace(self, name=name or self.name, net=dataclasses.replace(self.net, **net),
                                   recipe=dataclasses.replace(self.recipe, **recipe))


PRESETS: dict[str, Preset] = {
    # for CPUs: 64x64 frames, 16 frames of memory in 3 levels; learns visibly in minutes on 2 cores.
    # L1 only: within minutes of CPU the critic wins early and its gradient costs more L1 than it
    # buys detail (measured on 32x32 moving patterns); `--set adversarial_weight=0.01` turns it on.
    # Trained on standing still: at equal time (10 minutes a rung) the hold ladder's rung with the
    # best idle PSNR, collapse frame and moves; frame skip scored higher PSNR by blurring, and
    # lower idle (docs/MEASURED.md). The page steps at the time step the world was trained on.
    # Pose worlds warp the newest frame by the move and take what comes into view from the capture's
    # frames, recalled by pose (recall.py): on the demo's capture the first recipe whose tour held in
    # every chunk and whose walking changed the view; idle 38.5 dB. Its refresh mixes the recalled
    # view's fine detail at 0.1 and the rest at 0.06: the coarse share at which five worlds beat
    # copying 128 frames into the unseen walk and held every tour (docs/MEASURED.md). Standing still
    # keeps the view as it is (hold_still): the network alone softened a view stood in for 20 s.
    # Action worlds recall training frames by look (look_refresh, 0.4 of the fine detail a frame
    # lacks): the car track's world then held its tours and still beat copying at every horizon.
    "tiny": Preset("tiny", NetConfig(
        height=64, width=64, memory_frames=(4, 8, 16), channels=(16, 48, 64),
        encoder_blocks=(0, 0, 0), decoder_blocks=(1, 1, 2), control_embed=64, warp="base", recall=True,
        hold_still=True, look_refresh=0.4,
    ), TrainRecipe(
        batch=8, lr=1e-3, ema_decay=0.995, unroll=2, adversarial_weight=0.0, disc_channels=16, disc_lr=1e-3,
        still_fraction=0.15,
    )),
    # the reference system: 192x256, 32 frames of memory in 4 levels, parameters at coarse scales;
    # tiny's recipe for holding (warp, recall by pose and by look, standing still), and the critic
    # as a later stage with R1, as the systems that use one add it. The recipe's holding was
    # measured with this network at 64x48 on this machine (docs/MEASURED.md), not at this size.
    "forest": Preset("forest", NetConfig(warp="base", recall=True, hold_still=True, look_refresh=0.4),
                     TrainRecipe(still_fraction=0.15, adversarial_start=5000, r1_weight=1.0)),
    # the reference's earlier recipe: one frame of memory, 2D controls, a flat body at 1/8 size, L1 only
    "baseline2022": Preset("baseline2022", NetConfig(
        memory_frames=(1,), control_mode="2d", network="flat8", channels=(128,),
        encoder_blocks=(0,), decoder_blocks=(2,),
    ), TrainRecipe(adversarial_weight=0.0)),
}


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise UserError(f"preset {name!r}: unknown (choose one of {', '.join(PRESETS)})")
    return PRESETS[name]
