"""One training step of a world, and what it needs: the networks, their optimisers, the
averaged weights, the unroll on the network's own outputs and one-step validation.

The recipe (Ollin Boer Bohan, "World Emulation via Neural Network", 2025): L1 + adversarial
loss, AdamW at a constant learning rate, an averaged copy of the weights (EMA) that is what
gets saved and played, and training on the network's own outputs: each window generates
`unroll` frames in a row through the rollout engine (engine.step), each pushed into memory
before the next is generated, with a loss on each (as DIAMOND and Self-Forcing train on their
own rollouts). The memory rounds frames to 8 bits, which has no gradient, so the steps are
joined through memory values only, not through gradients.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn as nn

from neuralworld import engine
from neuralworld.controls import ControlSchema
from neuralworld.data import Batch
from neuralworld.losses import HingeGANLoss, L1Loss
from neuralworld.metrics import psnr
from neuralworld.model.config import NetConfig, TrainRecipe
from neuralworld.model.discriminator import PatchCritic
from neuralworld.model.memory import MemoryLayout, quantize8
from neuralworld.model.network import WorldNet


class EMA:
    """An exponential moving average of a network's weights (Polyak & Juditsky 1992), with the
    warm-up min(decay, (1 + n) / (10 + n)) so that short runs are not dominated by the random start."""

    def __init__(self, net: nn.Module, decay: float):
        self.net = copy.deepcopy(net).eval().requires_grad_(False)
        self.decay = decay
        self.count = 0

    @torch.no_grad()
    def update(self, net: nn.Module) -> None:
        d = min(self.decay, (1 + self.count) / (10 + self.count))
        for e, p in zip(self.net.parameters(), net.parameters()):
            e.lerp_(p.detach(), 1 - d)
        for e, b in zip(self.net.buffers(), net.buffers()):
            e.copy_(b)
        self.count += 1


class Unroll(nn.Module):
    """Generates K frames in a row through engine.step, each pushed into memory before the next:
    training on the network's own outputs. One forward per step, as DistributedDataParallel expects."""

    def __init__(self, net: nn.Module, layout: MemoryLayout):
        super().__init__()
        self.net = net
        self.layout = layout

    def forward(self, memory, controls, noise):
        """memory: L x (B, 3n, h, w); controls (B, K, C); noise: K x L x (B, 1, h, w)
        -> frames (B, K, 3, H, W) and the newest full-size memory each was made from (B, K, 3n0, H, W)."""
        frames, contexts = [], []
        for k in range(controls.shape[1]):
            contexts.append(memory[0])
            frame, memory = engine.step(self.net, memory, controls[:, k], noise[k], self.layout)  # (B, 3, H, W)
            frames.append(frame)
        return torch.stack(frames, 1), torch.stack(contexts, 1)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(B, K, ...) -> (B * K, ...)."""
    return x.reshape(-1, *x.shape[2:])


class Trainer:
    """The networks, optimizers and one training step; state_dict() / load_state_dict() for checkpoints."""

    def __init__(self, config: NetConfig, recipe: TrainRecipe, schema: ControlSchema, device: torch.device,
                 seed: int, world_size: int, use_bf16: bool, use_compile: bool):
        self.recipe, self.device, self.world_size = recipe, device, world_size
        torch.manual_seed(seed)
        self.net = WorldNet(config, schema).to(device)
        self.ema = EMA(self.net, recipe.ema_decay)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=recipe.lr, betas=(0.9, 0.99),
                                     weight_decay=recipe.weight_decay)
        self.critic = self.opt_critic = None
        if recipe.adversarial_weight > 0:
            self.critic = PatchCritic(config, schema.dim, recipe.disc_channels).to(device)
            self.opt_critic = torch.optim.AdamW(self.critic.parameters(), lr=recipe.disc_lr, betas=(0.5, 0.99),
                                                weight_decay=0.0)
        self.l1, self.gan = L1Loss(), HingeGANLoss()
        self.use_bf16 = use_bf16
        net = torch.compile(self.net) if use_compile else self.net
        self.unroll = Unroll(net, config.layout)
        self.critic_ddp = self.critic
        if world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.unroll = nn.parallel.DistributedDataParallel(self.unroll, device_ids=ids)
            if self.critic is not None:
                self.critic_ddp = nn.parallel.DistributedDataParallel(self.critic, device_ids=ids)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16)

    def step(self, batch: Batch, nan: bool = False) -> dict:
        """One optimizer step of the network (and of the critic). Returns losses averaged over ranks."""
        recipe = self.recipe
        self.net.train()
        if self.critic is not None:  # (B * K, C) normalised, as the critic sees them
            controls = self.net.normalise_controls(_flat(batch.controls))
        with self.autocast():
            frames, contexts = self.unroll(batch.memory, batch.controls, batch.noise)  # (B, K, 3, H, W)
            frames = frames.float()
            l1 = self.l1(frames, batch.targets)
            loss = recipe.l1_weight * l1
            g_adv = torch.zeros((), device=self.device)
            if self.critic is not None:
                self.critic.requires_grad_(False)
                g_adv = self.gan.generator(self.critic(_flat(frames), _flat(contexts), controls))
                loss = loss + recipe.adversarial_weight * g_adv.float()
        if nan:
            loss = loss * float("nan")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        d_loss = torch.zeros((), device=self.device)
        if self.critic is not None:
            self.critic.requires_grad_(True)
            with self.autocast():
                n = frames.shape[0] * frames.shape[1]
                logits = self.critic_ddp(torch.cat([_flat(batch.targets), _flat(frames.detach())]),
                                         _flat(contexts).repeat(2, 1, 1, 1), controls.repeat(2, 1))
                d_loss = self.gan.critic(logits[:n].float(), logits[n:].float())
            self.opt_critic.zero_grad(set_to_none=True)
            d_loss.backward()
        stats = torch.stack([loss.detach().float(), l1.detach().float(), g_adv.detach().float(), d_loss.detach().float()])
        if self.world_size > 1:
            dist.all_reduce(stats)
            stats /= self.world_size
        if not torch.isfinite(stats).all():
            raise FloatingPointError
        self.opt.step()
        self.ema.update(self.net)
        if self.critic is not None:
            self.opt_critic.step()
        return dict(zip(["loss", "l1", "g_adv", "d_loss"], stats.tolist()))

    def state_dict(self) -> dict:
        return {
            "net": self.net.state_dict(), "ema": self.ema.net.state_dict(), "ema_count": self.ema.count,
            "opt": self.opt.state_dict(),
            "critic": self.critic.state_dict() if self.critic is not None else None,
            "opt_critic": self.opt_critic.state_dict() if self.critic is not None else None,
        }

    def load_state_dict(self, state: dict) -> None:
        self.net.load_state_dict(state["net"])
        self.ema.net.load_state_dict(state["ema"])
        self.ema.count = int(state["ema_count"])
        self.opt.load_state_dict(state["opt"])
        if self.critic is not None:
            # critics saved before the world's network normalised their controls kept a copy of it
            critic = {k: v for k, v in state["critic"].items() if k not in ("control_mean", "control_scale")}
            self.critic.load_state_dict(critic)
            self.opt_critic.load_state_dict(state["opt_critic"])


@torch.no_grad()
def validate(net: WorldNet, val, device, seed: int = 1234) -> dict:
    """One-step prediction of held-out frames from real memory (data.validation_set), through
    engine.step, against copy-the-last-frame."""
    memory, controls, targets, last = val
    g = torch.Generator().manual_seed(seed)
    preds = []
    for i in range(0, len(targets), 32):
        mem = [m[i:i + 32].to(device) for m in memory]
        noise = engine.draw_noise(g, [m.shape[-2:] for m in mem], mem[0].shape[0], device)
        frame, _ = engine.step(net, mem, controls[i:i + 32].to(device), noise)
        preds.append(frame.float().cpu())
    pred = quantize8(torch.cat(preds))  # as the world shows it: 8-bit
    to_hwc = lambda x: x.permute(0, 2, 3, 1).numpy()  # noqa: E731
    return {"val_l1": float((pred - targets).abs().mean()),
            "val_psnr": float(psnr(to_hwc(pred), to_hwc(targets)).mean()),
            "val_copy_psnr": float(psnr(to_hwc(last), to_hwc(targets)).mean()),
            "pred": pred}
