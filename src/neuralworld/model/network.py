"""The world model network: (controls, memory pyramid, noise) -> next frame. Pure tensors.

After the reference system (Ollin Boer Bohan, "World Emulation via Neural Network", 2025):
an asymmetric, decoder-heavy multi-scale UNet in which memory level i and noise map i join
at their own scale (1/4^i of the frame per side), the coarse scales hold most parameters and
the full-resolution block is small, and the controls condition every residual block through
feature-wise scale and shift (FiLM; Perez et al., "FiLM: Visual Reasoning with a General
Conditioning Layer", AAAI 2018).

The earlier recipe ("flat8": one frame of memory, a body working at a fixed 1/8 resolution)
is the other body, for the ablation ladder.

Only export-friendly ops: Conv2d, LeakyReLU, PixelShuffle, Linear, Pad, elementwise; fixed shapes.
Input channel counts are padded to multiples of 16 (Chromium's software WebGPU backend was seen
to compute a 15-channel convolution wrongly, and a 16-channel one right).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from neuralworld.controls import POSE_KIND, ControlSchema
from neuralworld.engine import draw_noise
from neuralworld.model.config import NetConfig
from neuralworld.recall import FEATURES as RECALL_FEATURES, RECALL_REACH, frames_in

MOVED = 1e-3  # a move whose numbers differ from standing by this much (summed) counts fully as moving
LOOK_POOL = 4  # LookRecall compares frames by their averages over squares of this many pixels a side
LOOK_BANK_BYTES = 4 << 20  # LookRecall keeps as many training frames as fit in this (455 at 64x48)
REFRESH_BLUR = 2  # pixels: the Gaussian's sigma that parts the recall refresh's fine detail from the coarse view
NOISE_LEVEL_SCALE = 10.0  # the memory's noise level (std in 0..1 units) enters the control MLP times this

# Leaky, not plain ReLU: the network starts as copy-the-last-frame and L1 pulls its change
# toward zero, which plain ReLUs reach by going negative everywhere before the output layer,
# where they pass no gradient and the world stays a copy for good. Measured on a synth trail
# at 64x48, one-step PSNR over copy after 1000 steps: ReLU +0.0 dB (seeds 0, 1: its output
# was a constant, the output layer's bias), LeakyReLU(0.2) +2.1 and +2.8 dB.
NEGATIVE_SLOPE = 0.2


def act(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, NEGATIVE_SLOPE)


def pad_channels(x: torch.Tensor, multiple: int = 16) -> torch.Tensor:
    """Zero-pad the channel dimension of (B, C, H, W) up to a multiple of `multiple`."""
    pad = -x.shape[1] % multiple
    return F.pad(x, (0, 0, 0, 0, 0, pad)) if pad else x


def padded(channels: int, multiple: int = 16) -> int:
    return channels + (-channels % multiple)


class FiLMBlock(nn.Module):
    """Residual block x + conv(act(film(conv(act(x))))), FiLM-conditioned on the controls.

    The block starts close to the identity (its last convolution scaled down 10x), not at it:
    were its FiLM and last convolution zero as well as the network's output layer, the product
    of controls and image features that motion needs would have no gradient at the start."""

    def __init__(self, channels: int, cond_dim: int):
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.film = nn.Linear(cond_dim, 2 * channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        with torch.no_grad():
            self.conv2.weight.mul_(0.1)
            self.conv2.bias.zero_()

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        h = self.conv1(act(x))
        scale, shift = self.film(cond)[:, :, None, None].chunk(2, dim=1)  # (B, C, 1, 1) each
        h = h * (1 + scale) + shift
        return x + self.conv2(act(h))

    def forward_folded(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """forward for batch 1 with FiLM folded into the first convolution, (W a + b)(1 + s) + t =
        (W (1 + s)) a + (b (1 + s) + t): the same block (to float rounding) with two passes over
        the image fewer, and the activation after it fused into the convolution by onnxruntime."""
        scale, shift = self.film(cond).chunk(2, dim=1)  # (1, C) each
        gain = 1 + scale[0]
        h = F.conv2d(act(x), self.conv1.weight * gain[:, None, None, None], self.conv1.bias * gain + shift[0],
                     padding=1)
        return x + self.conv2(act(h))


class UNetBody(nn.Module):
    """Multi-scale UNet with one scale per memory level. Down: stride-f convolution; up: 1x1
    convolution + pixel shuffle (Shi et al., "Real-Time Single Image and Video Super-Resolution
    Using an Efficient Sub-Pixel CNN", CVPR 2016); skips are added, not concatenated."""

    def __init__(self, config: NetConfig, cond_dim: int, extra: int = 0):
        """extra: channels joining the full-size level besides its memory and noise map."""
        super().__init__()
        levels = len(config.memory_frames)
        ch = config.scaled_channels()[:levels]
        f = config.memory_factor
        self.stems = nn.ModuleList(nn.Conv2d(padded(3 * n + 1 + (extra if i == 0 else 0)), c, 3, padding=1)
                                   for i, (n, c) in enumerate(zip(config.memory_frames, ch)))
        self.downs = nn.ModuleList(nn.Conv2d(ch[i], ch[i + 1], f, stride=f) for i in range(levels - 1))
        self.ups = nn.ModuleList(nn.Sequential(nn.Conv2d(ch[i + 1], ch[i] * f * f, 1), nn.PixelShuffle(f))
                                 for i in range(levels - 1))
        for up in self.ups:
            icnr_(up[0], f)
        self.encoder = nn.ModuleList(nn.ModuleList(FiLMBlock(c, cond_dim) for _ in range(config.encoder_blocks[i]))
                                     for i, c in enumerate(ch))
        self.decoder = nn.ModuleList(nn.ModuleList(FiLMBlock(c, cond_dim) for _ in range(config.decoder_blocks[i]))
                                     for i, c in enumerate(ch))
        self.out = nn.Conv2d(ch[0], 3, 3, padding=1)

    def forward(self, memory: list[torch.Tensor], noise: list[torch.Tensor], cond: torch.Tensor) -> torch.Tensor:
        skips = []
        x = None
        for i, stem in enumerate(self.stems):
            h = stem(pad_channels(torch.cat([memory[i], noise[i]], dim=1)))  # (B, c_i, h_i, w_i)
            if i > 0:
                h = h + self.downs[i - 1](x)
            for block in self.encoder[i]:
                h = block(h, cond)
            skips.append(h)
            x = h
        for i in reversed(range(len(self.stems))):
            if i < len(self.stems) - 1:
                x = self.ups[i](x) + skips[i]
            for block in self.decoder[i]:
                x = block(x, cond)
        return self.out(act(x))  # (B, 3, H, W)


class MoveWarp(nn.Module):
    """The newest frame as the camera sees it after the move, assuming every pixel lies on a plane
    facing the new camera at one depth: the plane-induced homography H = K (R + t e3^T / d) K^-1
    (Hartley & Zisserman, "Multiple View Geometry", 2nd ed., 13.1), which is exact for rotation and
    approximate for translation; the inverse depth 1/d is learned (it starts at 1/4 m). Pixels the
    old view did not hold repeat its border; the network redraws them. The move is the control
    vector's relative pose (controls.py: frame i's camera in frame i-1's axes, rows of [R | t]).
    As in motion-compensated prediction of video codecs, the network then predicts only what the
    warp gets wrong: parallax, what comes into view, and the rest of the world's change."""

    def __init__(self, height: int, width: int, focal: float, focal_y: float = 0.0):
        super().__init__()
        # focal lengths in pixels, principal point at the centre; frames resized to another shape
        # than the camera's have pixels taller or wider than square (NetConfig.focal_y)
        fx = focal * width
        fy = focal_y * height if focal_y > 0 else fx
        K = torch.tensor([[fx, 0.0, (width - 1) / 2], [0.0, fy, (height - 1) / 2], [0.0, 0.0, 1.0]])
        self.register_buffer("K", K, persistent=False)
        self.register_buffer("K_inv", torch.linalg.inv(K), persistent=False)
        v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                              indexing="ij")
        pixels = torch.stack([u, v, torch.ones_like(u)]).reshape(3, -1)  # (3, H W) homogeneous, one row per axis
        self.register_buffer("pixels", pixels, persistent=False)
        self.inverse_depth = nn.Parameter(torch.tensor(0.25))

    def forward(self, frame: torch.Tensor, controls: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frame (B, 3, H, W), controls (B, C) raw -> frame (B, 3, H, W) warped by the move, and
        (B, 1, H, W) 1 where the old view held the pixel, 0 where it came into view."""
        return self.sample(frame, self.plane(controls))

    def plane(self, controls: torch.Tensor) -> torch.Tensor:
        """(B, 3, 3) R + t e3^T / d of the controls' move, which adds t / d to R's third column."""
        move = controls[:, :12].reshape(-1, 3, 4)
        return torch.cat([move[:, :, :2], move[:, :, 2:3] + move[:, :, 3:] * self.inverse_depth], 2)

    def sample(self, frame: torch.Tensor, plane: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """frame (B, 3, H, W) seen through (B, 3, 3) camera-axes homography `plane` (new camera
        ray -> old camera ray) -> the warped frame and where it was inside the old view (forward)."""
        H = self.K @ plane @ self.K_inv  # new pixel -> old pixel
        # (B, 3, H W): x, y and depth each a whole row (as (H W, 3) triples, the page's runtime sliced
        # and divided them with strides, slower than the sampling itself)
        old = H @ self.pixels
        depth = old[:, 2]
        ahead = depth.clamp_min(1e-3)  # points behind the camera stay finite (and count as outside)
        x, y = old[:, 0] / ahead, old[:, 1] / ahead  # (B, H W) each
        b, _, h, w = frame.shape
        inside = (depth > 0) & (x >= -0.5) & (x <= w - 0.5) & (y >= -0.5) & (y <= h - 0.5)
        return catmull_rom_sample(frame, x, y), inside.to(frame.dtype).reshape(b, 1, h, w)

    def recalled(self, frame: torch.Tensor, relative: torch.Tensor) -> torch.Tensor:
        """A recalled real frame (B, 3, H, W) turned to face the way the camera faces; relative
        (B, 12): the camera in the recalled camera's axes, rows of [R | t]. Only the rotation is
        used (a scene far away): the recalled camera stood elsewhere, and a plane at the learned
        depth would stretch its view out of shape with every metre between them."""
        frame, _ = self.sample(frame, relative.reshape(-1, 3, 4)[:, :, :3])
        return frame


class LookRecall(nn.Module):
    """An action world's long-term memory of real frames, recalled by how the world's frame looks:
    a world with no pose to recall by (recall.py) recalls the training frame nearest its drawn
    frame in LOOK_POOL x LOOK_POOL averages, and WorldNet mixes that frame's fine detail into it at
    play, in proportion to the detail the frame lacks, so it keeps a real frame's detail where the
    network blurs (after the retrieval of real frames into a world model's memory in WorldMem,
    Xiao et al., 2025, here by appearance). The frames are buffers of the network: saved with its
    weights, exported as constants, so the page recalls as Python does with no code of its own.

    frames (M, 3, H, W) uint8, keys (M, 3 H W / LOOK_POOL^2) their averages; M = config.look_frames,
    which training sets (LookRecall.capacity at most)."""

    def __init__(self, config: NetConfig):
        super().__init__()
        h, w = config.height, config.width
        self.register_buffer("frames", torch.zeros(config.look_frames, 3, h, w, dtype=torch.uint8))
        self.register_buffer("keys", torch.zeros(config.look_frames, 3 * (h // LOOK_POOL) * (w // LOOK_POOL)))

    @staticmethod
    def capacity(height: int, width: int) -> int:
        """How many frames of this size fit in LOOK_BANK_BYTES."""
        return frames_in(LOOK_BANK_BYTES, height, width)

    def fill(self, frames: torch.Tensor) -> None:
        """frames (N, H, W, 3) uint8, the training frames: keep M of them, evenly spaced."""
        pick = torch.linspace(0, len(frames) - 1, len(self.frames)).round().long()
        kept = frames[pick.to(frames.device)].permute(0, 3, 1, 2).to(self.frames.device)
        self.frames.copy_(kept)
        self.keys.copy_(self.key(kept.float() / 255))

    @staticmethod
    def key(frame: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [0, 1] -> (B, K) its LOOK_POOL x LOOK_POOL averages."""
        return F.avg_pool2d(frame, LOOK_POOL).flatten(1)

    def forward(self, frame: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 3, H, W) in [0, 1]: the kept frame nearest it in key distance."""
        k = self.key(frame)  # (B, K)
        distance = (self.keys * self.keys).sum(1)[None] - 2 * k @ self.keys.t()  # (B, M), less |k|^2
        nearest = distance.argmin(1)
        return torch.index_select(self.frames, 0, nearest).to(frame.dtype) / 255


# Keys' cubic (a = -1/2) as a matrix: (4 neighbours at offsets -1, 0, 1, 2) x (powers 1, t, t^2, t^3) of the fraction
CATMULL_ROM = 0.5 * torch.tensor([[0.0, -1, 2, -1], [2, 0, -5, 3], [0, 1, 4, -3], [0, 0, -1, 1]])
SAMPLE_PAD = 3  # the frame's border repeated this far out: the 4 x 4 neighbours of a clamped pixel stay inside


def catmull_rom_sample(frame: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """frame (B, C, H, W) sampled at pixel coordinates x, y (B, H W) each (pixel centres at whole
    numbers; outside, the border repeats) -> (B, C, H, W), with the Catmull-Rom cubic (Keys, "Cubic
    convolution interpolation for digital image processing", 1981, a = -1/2).

    Free play resamples the view at every step: bilinear weights blur a little each time (soup
    within 2 s at 60 steps a second), and the a = -3/4 cubic of grid_sample amplifies some
    frequencies (by up to 3% at a half-pixel shift), which free play grew into colour blobs; this
    cubic's gain stays at or below 1 (docs/MEASURED.md). Plain ONNX, and cheap at full size, where
    the page's runtime pays for every pass over the 16 neighbours of every pixel: the weights are
    the cubic's polynomials (one product with CATMULL_ROM), the frame is padded by its border so
    that one offset per pixel finds all 16 neighbours (no clamping of each), and they are
    gathered once per channel."""
    b, c, h, w = frame.shape
    n = x.shape[1]
    p = SAMPLE_PAD
    row = w + 2 * p  # the padded frame's width
    padded = F.pad(frame, (p, p, p, p), mode="replicate").reshape(b, c, 1, (h + 2 * p) * row)
    cubic = CATMULL_ROM.to(frame)
    weights, first = [], []
    for along, size in ((x, w), (y, h)):
        base = torch.floor(along)
        t = (along - base)[:, None]  # (B, 1, N) the fraction
        t2 = t * t
        powers = torch.cat([t, t2, t2 * t], 1)  # (B, 3, N); the constant term added apart (a row of ones
        # would be folded into the exported model as a constant the size of the frame)
        weights.append(cubic[:, :1] + cubic[:, 1:] @ powers)  # (B, 4, N) the weights of the 4 neighbours
        # the first neighbour in the padded frame; far outside, every neighbour is the border
        first.append(base.clamp(-2, size) + (p - 1))
    corner = (first[1] * row + first[0]).long()  # (B, N) the top-left neighbour, a flat index
    steps = torch.arange(4, device=frame.device)
    offsets = (steps[:, None] * row + steps).reshape(1, 16, 1)  # from the corner: 4 rows x 4 columns
    index = (corner[:, None] + offsets).reshape(b, 1, 16 * n)  # (B, 1, 4 rows x 4 columns x N)
    weight = (weights[1][:, :, None] * weights[0][:, None]).reshape(b, 16, n)
    # a gather per channel (one gather of all channels would need the index repeated per channel),
    # and the sum over the 16 neighbours as a product with ones: onnxruntime's fastest way to it
    ones = torch.ones(1, 16, device=frame.device, dtype=frame.dtype)
    out = [ones @ (torch.gather(padded[:, k], 2, index).reshape(b, 16, n) * weight) for k in range(c)]
    return torch.cat(out, 1).reshape(b, c, h, w)


def icnr_(conv: nn.Conv2d, factor: int) -> None:
    """ICNR initialisation (Aitken et al., "Checkerboard artifact free sub-pixel convolution", 2017):
    the factor^2 sub-pixel channels that PixelShuffle puts into one output channel start equal, so the
    upsampling starts as nearest-neighbour instead of factor x factor blocks of unrelated weights."""
    with torch.no_grad():
        out = conv.out_channels // (factor * factor)
        small = nn.Conv2d(conv.in_channels, out, conv.kernel_size, padding=conv.padding)  # default init
        conv.weight.copy_(small.weight.repeat_interleave(factor * factor, dim=0))
        conv.bias.copy_(small.bias.repeat_interleave(factor * factor, dim=0))


class Flat8Body(nn.Module):
    """The earlier recipe's body: the newest memory level (full size) and its noise map go down
    8x in one strided convolution, a flat stack of blocks works at 1/8 size, pixel shuffle up."""

    def __init__(self, config: NetConfig, cond_dim: int, extra: int = 0):
        super().__init__()
        c = config.scaled_channels()[0]
        self.down = nn.Conv2d(padded(3 * config.memory_frames[0] + 1 + extra), c, 8, stride=8)
        self.blocks = nn.ModuleList(FiLMBlock(c, cond_dim) for _ in range(sum(config.decoder_blocks)))
        self.up = nn.Sequential(nn.Conv2d(c, 3 * 64, 3, padding=1), nn.PixelShuffle(8))

    def forward(self, memory: list[torch.Tensor], noise: list[torch.Tensor], cond: torch.Tensor) -> torch.Tensor:
        x = self.down(pad_channels(torch.cat([memory[0], noise[0]], dim=1)))  # (B, c, H/8, W/8)
        for block in self.blocks:
            x = block(x, cond)
        return self.up(act(x))  # (B, 3, H, W)


class WorldNet(nn.Module):
    """forward(controls (B, C) raw, memory [L x (B, 3 n_i, h_i, w_i)], noise [NetConfig.noise_shapes])
    -> (B, 3, H, W) in [0, 1]. Controls are normalised inside, by the buffers control_mean and
    control_scale (the schema's, saved with the weights), so every caller passes raw vectors.

    objective "regression": one prediction of the next frame (predict). objective "flow": the
    next frame is sampled (sample): starting from Gaussian noise, `sampler_steps` Euler steps of
    rectified flow (Liu et al., "Flow Straight and Fast", ICLR 2023; Lipman et al., "Flow
    Matching for Generative Modeling", ICLR 2023), the network predicting the clean frame from
    the noisy one x_t = (1 - t) x0 + t eps and t (x-prediction, as in Li & He, "Back to Basics:
    Let Denoising Generative Models Denoise", 2025), still as a change to the newest frame."""

    def __init__(self, config: NetConfig, schema: ControlSchema):
        super().__init__()
        self.config = config
        self.flow = config.objective == "flow"
        self.sampler_steps = config.sampler_steps  # flow: may be changed at play
        self.register_buffer("control_mean", torch.tensor(schema.mean, dtype=torch.float32))
        self.register_buffer("control_scale", torch.tensor(schema.scale, dtype=torch.float32))
        index = schema.network_index(config.control_mode)
        self.register_buffer("control_index", torch.tensor(index), persistent=False)
        e = config.control_embed
        inputs = (len(index) + (1 if config.noise_level_input else 0) + (1 if self.flow else 0)
                  + (RECALL_FEATURES if config.recall else 0))
        self.control_mlp = nn.Sequential(nn.Linear(inputs, e), nn.LeakyReLU(NEGATIVE_SLOPE),
                                         nn.Linear(e, e), nn.LeakyReLU(NEGATIVE_SLOPE))
        # warp: the newest frame warped by the move (pose worlds: an action world has no move to warp by)
        self.warp = MoveWarp(config.height, config.width, config.focal, config.focal_y) if (
            config.warp != "off" and schema.kind == POSE_KIND) else None
        if config.recall and self.warp is None:
            raise ValueError("a world that recalls real frames warps them: it needs a pose schema and warp on")
        # action worlds: real frames recalled by how the drawn frame looks (filled by training)
        self.look = LookRecall(config) if (config.look_refresh > 0 and config.look_frames > 0
                                           and schema.kind != POSE_KIND) else None
        radius = 3 * REFRESH_BLUR // 2  # taps out to 1.5 sigma each side
        taps = torch.arange(-radius, radius + 1, dtype=torch.float32)
        g = torch.exp(-taps ** 2 / (2 * REFRESH_BLUR ** 2))
        g = g / g.sum()
        self.register_buffer("blur_kernel", g.expand(3, 1, 1, len(g)).clone(),
                             persistent=False)  # (3, 1, 1, k) depthwise, along rows then columns: the refresh's blur
        # flow: the noisy frame x_t joins at full size; warp: the warped frame; recall: the recalled one
        extra = (3 if self.flow else 0) + (3 if self.warp is not None else 0) + (3 if config.recall else 0)
        self.body = UNetBody(config, e, extra) if config.network == "unet" else Flat8Body(config, e, extra)
        if config.residual:  # start as copy-the-last-frame
            last = self.body.out if config.network == "unet" else self.body.up[0]
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)

    def refresh(self, frame: torch.Tensor, real: torch.Tensor, fine, coarse) -> torch.Tensor:
        """At play, a real frame's share mixed into a frame of the world (both (B, 3, H, W)): `fine`
        of its fine detail (what a Gaussian blur of REFRESH_BLUR pixels takes out), which the
        network's per-step blur would otherwise wear away, and `coarse` of the rest, which pulls a
        drifting view's colour and contrast back to a real one's. Shares: numbers or (B, 1, 1, 1).
        Not in training, where the network would learn to take it out again. The blur is linear, so
        the difference of the two frames is blurred once."""
        change = real - frame
        coarse_change = self.refresh_blur(change)
        return frame + fine * (change - coarse_change) + coarse * coarse_change

    def refresh_blur(self, frame: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> the same blurred by the separable Gaussian kernel `blur_kernel`, the
        border repeated."""
        r = self.blur_kernel.shape[-1] // 2
        kernel = self.blur_kernel.to(frame.dtype)
        rows = F.conv2d(F.pad(frame, (r, r, r, r), mode="replicate"), kernel, groups=3)  # (B, 3, H + 2r, W)
        return F.conv2d(rows, kernel.transpose(2, 3), groups=3)

    def fine_detail(self, frame: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, 1, 1, 1) the mean absolute difference from its refresh blur."""
        return (frame - self.refresh_blur(frame)).abs().mean((1, 2, 3), keepdim=True)

    def normalise_controls(self, controls: torch.Tensor) -> torch.Tensor:
        """(B, C) raw -> (B, C) normalised by the schema's mean and scale."""
        return (controls - self.control_mean) / self.control_scale

    def forward(self, controls: torch.Tensor, memory: list[torch.Tensor], noise: list[torch.Tensor],
                noise_level: torch.Tensor | None = None, recall=None) -> torch.Tensor:
        """noise_level (B,): the std of the noise training put on the memory frames (networks with
        noise_level_input; None: config.play_noise_level, as at play). recall (networks with
        config.recall): (frame (B, 3, H, W), relative (B, 12)), the recalled real frame and the camera
        in its camera's axes, rows of [R | t] (recall.py)."""
        if self.flow:
            return self.sample(controls, memory, noise, noise_level, recall=recall)
        return self.predict(controls, memory, noise, noise_level, recall=recall)

    def predict(self, controls, memory, noise, noise_level=None, x_t=None, t=None, recall=None) -> torch.Tensor:
        """The next frame (B, 3, H, W) in [0, 1]; for flow, the clean frame from x_t (B, 3, H, W)
        at t (B,). noise: the memory levels' maps (the first L of the noise inputs)."""
        c = torch.index_select(self.normalise_controls(controls), 1, self.control_index)  # (B, C') the controls this recipe sees
        if self.config.noise_level_input:
            if noise_level is None:
                noise_level = torch.full((c.shape[0],), self.config.play_noise_level, device=c.device)
            c = torch.cat([c, NOISE_LEVEL_SCALE * noise_level[:, None].to(c.dtype)], 1)  # (B, C' + 1)
        maps = list(noise[:len(memory)])
        newest = last = memory[0][:, -3:]
        if self.warp is not None:  # where the newest frame's pixels land after the move
            still = torch.eye(3, 4, device=controls.device, dtype=controls.dtype).reshape(1, 12)
            moved = ((controls[:, :12] - still).abs().sum(1) / MOVED).clamp(0, 1)  # (B,) 0 standing, 1 moving
            warped, inside = self.warp(newest, controls)
            if self.config.recall:  # what comes into view is taken from the recalled real frame
                if recall is None:
                    raise ValueError("this world recalls real frames: pass recall=(frame, relative pose)")
                frame, relative = recall
                turned = self.warp.recalled(frame.to(warped.dtype), relative.to(warped.dtype))
                warped = inside * warped + (1 - inside) * turned
                if not self.training and (self.config.recall_refresh or self.config.recall_refresh_coarse):
                    # at play, a little of the real view at every step that moves; the coarse share kept
                    # smaller: on new ground the recalled frame is of another place, and its layout
                    # costs PSNR (docs/MEASURED.md)
                    share = moved[:, None, None, None].to(warped.dtype)  # (B, 1, 1, 1)
                    warped = self.refresh(warped, turned, share * self.config.recall_refresh,
                                          share * self.config.recall_refresh_coarse)
                rows = relative.reshape(-1, 3, 4).to(c.dtype)  # the MLP is told the rotation and the clipped way
                away = rows[:, :, 3].clamp(-RECALL_REACH, RECALL_REACH) / RECALL_REACH
                c = torch.cat([c, rows[:, :, :3].flatten(1), away], 1)  # (B, ... + 12)
                maps[0] = torch.cat([maps[0], turned], 1)  # (B, ... + 3, H, W)
            maps[0] = torch.cat([maps[0], warped], 1)
            if self.config.warp == "base":
                newest = warped
        if self.flow:
            c = torch.cat([c, t[:, None].to(c.dtype)], 1)
            maps[0] = torch.cat([maps[0], x_t], 1)  # (B, 1 + 3, H, W)
        cond = self.control_mlp(c)  # (B, E)
        out = self.body(memory, maps, cond)  # (B, 3, H, W)
        if not self.config.residual:
            return torch.sigmoid(out)
        out = newest + out  # a change to the newest frame in memory (warp "base": warped by the move)
        if self.training:  # straight-through clamp: overshooting pixels still get a gradient
            return out + (out.clamp(0.0, 1.0) - out).detach()
        out = out.clamp(0.0, 1.0)
        if self.look is not None:  # an action world: fine detail of the real frame that looks most like it
            real = self.look(out)
            # in proportion to the fine detail the frame lacks: none from sharp real memory (so the
            # next frame's PSNR is kept), more as the network's blur piles up over free play
            lacks = 1 - self.fine_detail(out) / self.fine_detail(real).clamp_min(1e-4)  # (B, 1, 1, 1)
            share = self.config.look_refresh * lacks.clamp(0.0, 1.0)
            out = self.refresh(out, real, share, 0.0).clamp(0.0, 1.0)
        if self.config.hold_still and self.warp is not None:
            # at play, a step that does not move shows the newest frame as it is: the capture is of a
            # still place, and the network's own small change per step (it was trained to clean noised
            # memory) would otherwise soften a view stood in for seconds
            keep = (1 - moved)[:, None, None, None].to(out.dtype)
            out = keep * last + (1 - keep) * out
        return out

    def sample(self, controls, memory, noise, noise_level=None, steps: int | None = None, recall=None) -> torch.Tensor:
        """Flow: the next frame by `steps` Euler steps from t = 1 to 0, from the Gaussian noise
        made from the last noise input (gaussian_from_uniform)."""
        steps = steps or self.sampler_steps
        x = gaussian_from_uniform(noise[-1])  # (B, 3, H, W) at t = 1
        batch = x.shape[0]
        for k in range(steps):
            t, t_next = 1.0 - k / steps, 1.0 - (k + 1) / steps
            x0 = 2 * self.predict(controls, memory, noise, noise_level, x, torch.full((batch,), t, device=x.device),
                                  recall) - 1
            x = x + (t_next - t) * (x - x0) / t  # Euler on the velocity (x_t - x0) / t; at t_next = 0, x = x0
        return ((x + 1) / 2).clamp(0.0, 1.0)


def gaussian_from_uniform(u: torch.Tensor) -> torch.Tensor:
    """(B, 4, H, W) U(0, 1) -> (B, 3, H, W) N(0, 1) by the Box-Muller transform (Box & Muller,
    1958), in ops every runtime has, so the browser's uniform noise starts the sampler."""
    r = torch.sqrt(-2.0 * torch.log(u[:, :2].clamp_min(1e-7)))  # (B, 2, H, W)
    angle = 2 * math.pi * u[:, 2:]
    return torch.cat([r * torch.cos(angle), r * torch.sin(angle)], 1)[:, :3]


def example_inputs(config: NetConfig, control_dim: int, batch: int = 1, device=None):
    """Zero controls, random memory and noise of the right shapes (for stats, export and tests)."""
    sizes = config.layout.sizes(config.height, config.width)
    controls = torch.zeros(batch, control_dim, device=device)
    memory = [torch.rand(batch, 3 * n, h, w, device=device) for n, (h, w) in zip(config.memory_frames, sizes)]
    return controls, memory, draw_noise(None, config.noise_shapes(), batch, device)


def example_recall(config: NetConfig, batch: int = 1, device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """A random recalled frame and the camera where it stood (relative pose of standing still)."""
    return (torch.rand(batch, 3, config.height, config.width, device=device),
            torch.eye(3, 4, device=device).reshape(1, 12).expand(batch, 12))


def model_stats(config: NetConfig, schema: ControlSchema | None = None) -> dict:
    """Parameters and FLOPs of one frame (batch 1), counted by torch.utils.flop_counter.
    FLOPs count a multiply-add as 2; elementwise ops are not counted (they are small)."""
    from torch.utils.flop_counter import FlopCounterMode

    schema = schema or ControlSchema.identity()
    net = WorldNet(config, schema).eval()
    inputs = example_inputs(config, schema.dim)
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        net(*inputs, **({"recall": example_recall(config)} if config.recall else {}))
    return {
        "params": sum(p.numel() for p in net.parameters()),
        "flops": int(counter.get_total_flops()),
        "height": config.height, "width": config.width,
        "memory_frames": list(config.memory_frames),
    }


class CopyLastNet(nn.Module):
    """The copy-the-last-frame baseline as a network: its next frame is the newest frame in
    memory, whatever the controls and noise. A World around it rolls out through the same
    engine as a trained world, so baselines are measured by the same code."""

    def __init__(self, config: NetConfig):
        super().__init__()
        self.config = config

    def forward(self, controls: torch.Tensor, memory: list[torch.Tensor], noise: list[torch.Tensor],
                recall=None) -> torch.Tensor:
        return memory[0][:, -3:]
