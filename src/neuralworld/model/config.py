"""A world's configuration: the network, its memory and its training recipe, in one dataclass.

Every recipe step of the reference system (Ollin Boer Bohan, "World Emulation via Neural
Network", 2025) is a field of its own, so that the ablation ladder (earlier recipe -> 6DoF
controls -> 32-frame multi-scale memory -> multi-scale network -> adversarial loss -> bigger
network) is built by changing fields alone. Named presets below; the resolved config is
saved in every world.json.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from neuralworld.errors import UserError
from neuralworld.model.memory import MemoryLayout


@dataclass(frozen=True)
class WorldConfig:
    # --- frames and memory ---
    height: int = 192  # frame height in pixels (captures are resized to it once, at load)
    width: int = 256  # frame width in pixels
    memory_frames: tuple[int, ...] = (4, 8, 16, 32)  # past frames per memory level, level 0 = full size
    memory_factor: int = 4  # each memory level (and network scale) is this many times smaller per side
    # --- controls ---
    control_mode: str = "6dof"  # "6dof": the whole control vector; "2d": forward motion + yaw change only (pose worlds)
    # --- network ---
    network: str = "unet"  # "unet": multi-scale UNet, one scale per memory level; "flat8": one flat body at 1/8 size
    channels: tuple[int, ...] = (8, 32, 128, 256)  # channels per scale (unet) or of the body (flat8: first entry)
    encoder_blocks: tuple[int, ...] = (0, 0, 1, 0)  # residual blocks per scale on the way down
    decoder_blocks: tuple[int, ...] = (1, 1, 2, 2)  # residual blocks per scale on the way up (decoder-heavy; flat8: their sum)
    channel_mult: float = 1.0  # multiplies every channel count (the "bigger network" rung of the ladder)
    control_embed: int = 128  # width of the control MLP whose output conditions every block (FiLM)
    residual: bool = True  # predict a change to the newest memory frame instead of a whole frame
    # --- training recipe ---
    batch: int = 16  # windows per optimizer step (per process)
    lr: float = 3e-4  # AdamW learning rate, constant
    weight_decay: float = 0.01  # AdamW weight decay
    ema_decay: float = 0.999  # decay of the averaged weights that get saved and played
    unroll: int = 3  # frames generated per window; frames after the first see earlier outputs in memory
    memory_noise: float = 0.02  # std of the Gaussian noise added to memory frames (upper bound, drawn per window)
    memory_static: float = 0.01  # probability that a memory frame is replaced by random static
    memory_black: float = 0.01  # probability that a memory frame is replaced by black
    brightness_jitter: float = 0.1  # whole-window brightness gain drawn from 1 +- this (0: no augmentation)
    l1_weight: float = 1.0  # weight of the per-pixel L1 loss
    adversarial_weight: float = 0.05  # weight of the adversarial loss (0: L1 only, no discriminator)
    disc_channels: int = 32  # channels of the discriminator's first layer (doubled per layer)
    disc_lr: float = 3e-4  # discriminator AdamW learning rate

    def __post_init__(self):
        for name in ("memory_frames", "channels", "encoder_blocks", "decoder_blocks"):
            object.__setattr__(self, name, tuple(int(v) for v in getattr(self, name)))
        if self.control_mode not in ("6dof", "2d"):
            raise UserError(f"control_mode {self.control_mode!r}: expected '6dof' or '2d'")
        if self.network not in ("unet", "flat8"):
            raise UserError(f"network {self.network!r}: expected 'unet' or 'flat8'")
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

    def scaled_channels(self) -> list[int]:
        """Channel counts after channel_mult, rounded to multiples of 8 (what browser backends like)."""
        return [max(8, int(round(c * self.channel_mult / 8)) * 8) for c in self.channels]

    def with_size(self, height: int, width: int) -> "WorldConfig":
        """The same recipe for another frame size, dropping the memory levels that would not be a
        whole number of pixels (MemoryLayout.for_size)."""
        layout = MemoryLayout.for_size(height, width, self.memory_frames, self.memory_factor)
        if not layout.frames:
            raise UserError(f"{width}x{height}: too small for any memory level")
        return dataclasses.replace(self, height=height, width=width, memory_frames=layout.frames)

    def with_overrides(self, items: list[str]) -> "WorldConfig":
        """Apply `key=value` strings (values in JSON, e.g. adversarial_weight=0.1, channels=[8,16])."""
        import json

        fields = {f.name for f in dataclasses.fields(self)}
        changes = {}
        for item in items:
            key, sep, text = item.partition("=")
            if not sep or key not in fields:
                raise UserError(f"--set {item}: expected KEY=VALUE with KEY one of {', '.join(sorted(fields))}")
            try:
                changes[key] = json.loads(text)
            except json.JSONDecodeError:
                changes[key] = text  # a bare word, e.g. network=flat8
        return dataclasses.replace(self, **changes)

    def to_json(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict) -> "WorldConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


PRESETS: dict[str, WorldConfig] = {
    # for CPUs: 64x64 frames, 16 frames of memory in 3 levels; learns visibly in minutes on 2 cores.
    # L1 only: within minutes of CPU the critic wins early and its gradient costs more L1 than it
    # buys detail (measured on 32x32 moving patterns); `--set adversarial_weight=0.01` turns it on.
    "tiny": WorldConfig(
        height=64, width=64, memory_frames=(4, 8, 16), channels=(16, 48, 64),
        encoder_blocks=(0, 0, 0), decoder_blocks=(1, 1, 2), control_embed=64,
        batch=8, lr=1e-3, ema_decay=0.995, unroll=2, adversarial_weight=0.0, disc_channels=16, disc_lr=1e-3,
    ),
    # the reference system: 192x256, 32 frames of memory in 4 levels, parameters at coarse scales
    "forest": WorldConfig(),
    # the reference's earlier recipe: one frame of memory, 2D controls, a flat body at 1/8 size, L1 only
    "baseline2022": WorldConfig(
        memory_frames=(1,), control_mode="2d", network="flat8", channels=(128,),
        encoder_blocks=(0,), decoder_blocks=(2,), adversarial_weight=0.0,
    ),
}


def get_preset(name: str) -> WorldConfig:
    if name not in PRESETS:
        raise UserError(f"preset {name!r}: unknown (choose one of {', '.join(PRESETS)})")
    return PRESETS[name]
