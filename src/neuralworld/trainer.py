"""One training step of a world, and what it needs: the networks, their optimisers, the
averaged weights, the unroll on the network's own outputs and one-step validation.

The recipe (Ollin Boer Bohan, "World Emulation via Neural Network", 2025): L1 + adversarial
loss, AdamW at a constant learning rate, an averaged copy of the weights (EMA) that is what
gets saved and played, and training on the network's own outputs: each window generates
`unroll` frames in a row through the rollout engine (engine.step), each pushed into memory
before the next is generated, with a loss on each (as DIAMOND and Self-Forcing train on their
own rollouts). With recipe.unroll_grad the loss of a later frame reaches the earlier frames it
was made from (straight-through 8-bit rounding in memory), so the network learns to make
frames it can go on from; without it, the steps are joined through memory values only.

The adversarial term can join later (recipe.adversarial_start, after an L1 phase), with an R1
penalty on the critic (Mescheder et al., "Which Training Methods for GANs do actually
Converge?", ICML 2018) to keep it stable.
"""

from __future__ import annotations

import copy

import torch
import torch.distributed as dist
import torch.nn as nn

from neuralworld import engine
from neuralworld.controls import ControlSchema
from neuralworld.data import Batch
from neuralworld.errors import UserError
from neuralworld.losses import FlowMatchingLoss, GradientDifferenceLoss, HingeGANLoss, L1Loss
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
        torch._foreach_lerp_(list(self.net.parameters()), [p.detach() for p in net.parameters()], 1 - d)
        for e, b in zip(self.net.buffers(), net.buffers()):
            e.copy_(b)
        self.count += 1


class Unroll(nn.Module):
    """Generates K frames in a row through engine.step, each pushed into memory before the next:
    training on the network's own outputs. One forward per step, as DistributedDataParallel expects."""

    def __init__(self, net: nn.Module, layout: MemoryLayout, grad_through_memory: bool, noise_level_input: bool):
        super().__init__()
        self.net = net
        self.layout = layout
        self.grad_through_memory = grad_through_memory
        self.noise_level_input = noise_level_input

    def forward(self, memory, controls, noise, noise_level, targets=None, flow_t=None, flow_eps=None, recall=None):
        """memory: L x (B, 3n, h, w); controls (B, K, C); noise: K x the noise inputs; noise_level (B,)
        -> frames (B, K, 3, H, W) and the newest full-size memory each was made from (B, K, 3n0, H, W).
        Flow: the frames are the clean frames predicted from the targets noised to flow_t (B, K)
        with flow_eps (B, K, 3, H, W); the memory goes on with the network's own samples.
        recall: worlds that recall real frames, ((B, K, 3, H, W) frames, (B, K, 12) relative poses)."""
        frames, contexts = [], []
        level = noise_level if self.noise_level_input else None
        at = lambda k: None if recall is None else (recall[0][:, k], recall[1][:, k])  # noqa: E731
        if flow_t is not None:
            for k in range(controls.shape[1]):
                contexts.append(memory[0])
                t = flow_t[:, k]
                x_t = (1 - t)[:, None, None, None] * (2 * targets[:, k] - 1) + t[:, None, None, None] * flow_eps[:, k]
                frames.append(self.net.predict(controls[:, k], memory, noise[k], level, x_t, t, recall=at(k)))
                if k + 1 < controls.shape[1]:
                    with torch.no_grad():
                        _, memory = engine.step(self.net, memory, controls[:, k], noise[k], self.layout,
                                                noise_level=level, recall=at(k))
            return torch.stack(frames, 1), torch.stack(contexts, 1)
        for k in range(controls.shape[1]):
            contexts.append(memory[0])
            frame, memory = engine.step(self.net, memory, controls[:, k], noise[k], self.layout, noise_level=level,
                                        grad_through_memory=self.grad_through_memory, recall=at(k))  # (B, 3, H, W)
            frames.append(frame)
        return torch.stack(frames, 1), torch.stack(contexts, 1)


def _flat(x: torch.Tensor) -> torch.Tensor:
    """(B, K, ...) -> (B * K, ...)."""
    return x.reshape(-1, *x.shape[2:])


LOSS_NAMES = ("loss", "l1", "g_adv", "d_loss")  # what Trainer.step returns, in this order
PHASES = ("forward", "backward", "critic", "optimizer")  # where Trainer.step calls its timer, in this order


class Trainer:
    """The networks, optimizers and one training step; state_dict() / load_state_dict() for checkpoints.

    The speed switches (train.TrainOptions; each on with CUDA by default, off on the CPU):
    use_bf16 bfloat16 autocast; use_compile torch.compile of the network (cuda_graphs: in its
    "reduce-overhead" mode, which replays CUDA graphs); channels_last the networks' weights in
    NHWC order, which cuDNN's fastest convolutions take; fused AdamW's fused kernels;
    cudnn_benchmark lets cuDNN time its convolution algorithms for the run's fixed shapes and
    keep the fastest (a setting of the whole process)."""

    def __init__(self, config: NetConfig, recipe: TrainRecipe, schema: ControlSchema, device: torch.device,
                 seed: int, world_size: int, use_bf16: bool, use_compile: bool, channels_last: bool = False,
                 fused: bool = False, cuda_graphs: bool = False, cudnn_benchmark: bool = False):
        self.recipe, self.device, self.world_size = recipe, device, world_size
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = cudnn_benchmark
        torch.manual_seed(seed)
        memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.net = WorldNet(config, schema).to(device, memory_format=memory_format)
        self.ema = EMA(self.net, recipe.ema_decay)
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=recipe.lr, betas=(0.9, 0.99),
                                     weight_decay=recipe.weight_decay, fused=fused or None)
        self.critic = self.opt_critic = None
        if recipe.adversarial_weight > 0:
            self.critic = PatchCritic(config, schema.dim, recipe.disc_channels).to(device, memory_format=memory_format)
            self.opt_critic = torch.optim.AdamW(self.critic.parameters(), lr=recipe.disc_lr, betas=(0.5, 0.99),
                                                weight_decay=0.0, fused=fused or None)
        if config.objective == "flow" and (recipe.adversarial_weight > 0 or recipe.unroll_grad):
            raise UserError("objective flow: trains without the adversarial term and without unroll_grad "
                            "(set adversarial_weight=0 and unroll_grad=false)")
        self.flow = config.objective == "flow"
        self.l1 = FlowMatchingLoss() if self.flow else L1Loss()
        self.gan, self.gdl = HingeGANLoss(), GradientDifferenceLoss()
        self.use_bf16 = use_bf16
        net = torch.compile(self.net, mode="reduce-overhead" if cuda_graphs else None) if use_compile else self.net
        self.unroll = Unroll(net, config.layout, recipe.unroll_grad, config.noise_level_input)
        self.critic_ddp = self.critic
        if world_size > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.unroll = nn.parallel.DistributedDataParallel(self.unroll, device_ids=ids)
            if self.critic is not None:
                self.critic_ddp = nn.parallel.DistributedDataParallel(self.critic, device_ids=ids)

    def autocast(self):
        return torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.use_bf16)

    def step(self, batch: Batch, step: int = 0, nan: bool = False, check: bool = True, timer=None) -> torch.Tensor:
        """Optimizer step number `step` of the network (and of the critic, from
        recipe.adversarial_start on). Returns the losses (LOSS_NAMES), averaged over ranks, as one
        tensor on the device. check: raise FloatingPointError before the update if a loss is not
        finite, which waits for the device (a host sync); without it the caller checks the losses
        it reads. timer: called with each name of PHASES as that part of the step is queued (for
        profiling; it synchronises if it wants device times)."""
        mark = timer or (lambda name: None)
        recipe = self.recipe
        self.net.train()
        adversarial = self.critic is not None and step >= recipe.adversarial_start
        if adversarial:  # (B * K, C) normalised, as the critic sees them
            controls = self.net.normalise_controls(_flat(batch.controls))
        with self.autocast():
            frames, contexts = self.unroll(batch.memory, batch.controls, batch.noise, batch.noise_level,
                                           batch.targets, batch.flow_t, batch.flow_eps,
                                           batch.recall)  # (B, K, 3, H, W)
            frames = frames.float()
            l1 = self.l1(frames, batch.targets)
            loss = recipe.l1_weight * l1
            if recipe.gradient_weight > 0:
                loss = loss + recipe.gradient_weight * self.gdl(frames, batch.targets)
            g_adv = torch.zeros((), device=self.device)
            if adversarial:
                self.critic.requires_grad_(False)
                g_adv = self.gan.generator(self.critic(_flat(frames), _flat(contexts), controls))
                loss = loss + recipe.adversarial_weight * g_adv.float()
        if nan:
            loss = loss * float("nan")
        mark("forward")
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        mark("backward")
        d_loss = torch.zeros((), device=self.device)
        if adversarial:
            self.critic.requires_grad_(True)
            with self.autocast():
                n = frames.shape[0] * frames.shape[1]
                real = _flat(batch.targets).requires_grad_(recipe.r1_weight > 0)
                logits = self.critic_ddp(torch.cat([real, _flat(frames.detach())]),
                                         _flat(contexts).detach().repeat(2, 1, 1, 1), controls.repeat(2, 1))
                d_loss = self.gan.critic(logits[:n].float(), logits[n:].float())
            if recipe.r1_weight > 0:  # R1: the critic's gradient at real frames stays small
                grad, = torch.autograd.grad(logits[:n].float().sum(), real, create_graph=True)
                d_loss = d_loss + recipe.r1_weight / 2 * grad.pow(2).sum(dim=(1, 2, 3)).mean()
            self.opt_critic.zero_grad(set_to_none=True)
            d_loss.backward()
        mark("critic")
        stats = torch.stack([loss.detach().float(), l1.detach().float(), g_adv.detach().float(), d_loss.detach().float()])
        if self.world_size > 1:
            dist.all_reduce(stats)
            stats /= self.world_size
        if check and not torch.isfinite(stats).all():
            raise FloatingPointError
        self.opt.step()
        self.ema.update(self.net)
        if adversarial:
            self.opt_critic.step()
        mark("optimizer")
        return stats

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
    memory, controls, targets, last, recalled = val
    g = torch.Generator().manual_seed(seed)
    preds = []
    for i in range(0, len(targets), 32):
        mem = [m[i:i + 32].to(device) for m in memory]
        noise = engine.draw_noise(g, net.config.noise_shapes(), mem[0].shape[0], device)
        part = None if recalled is None else tuple(r[i:i + 32].to(device) for r in recalled)
        frame, _ = engine.step(net, mem, controls[i:i + 32].to(device), noise, recall=part)
        preds.append(frame.float().cpu())
    pred = quantize8(torch.cat(preds))  # as the world shows it: 8-bit
    to_hwc = lambda x: x.permute(0, 2, 3, 1).numpy()  # noqa: E731
    return {"val_l1": float((pred - targets).abs().mean()),
            "val_psnr": float(psnr(to_hwc(pred), to_hwc(targets)).mean()),
            "val_copy_psnr": float(psnr(to_hwc(last), to_hwc(targets)).mean()),
            "pred": pred}
