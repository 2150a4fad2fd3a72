import dataclasses
import math

import pytest
import torch

from neuralworld.controls import ACTION_KIND, ControlSchema
from neuralworld.errors import UserError
from neuralworld.model.config import PRESETS, NetConfig, TrainRecipe, get_preset
from neuralworld.model.memory import MemoryLayout, memory_from_frames
from neuralworld.model.network import FiLMBlock, WorldNet, example_inputs, example_recall, model_stats

MICRO = NetConfig(height=32, width=32, memory_frames=(2, 4), channels=(8, 16), encoder_blocks=(0, 1),
                    decoder_blocks=(1, 1), control_embed=16)
POSE = ControlSchema.identity()


@pytest.mark.parametrize("config", [
    MICRO,
    dataclasses.replace(MICRO, residual=False),
    dataclasses.replace(MICRO, network="flat8", memory_frames=(1,), channels=(16,), decoder_blocks=(2,)),
    dataclasses.replace(MICRO, control_mode="2d"),
])
def test_forward_shapes_and_range(config):
    torch.manual_seed(0)
    net = WorldNet(config, POSE)
    for block in net.modules():  # leave the zero init so the output depends on the inputs
        if isinstance(block, torch.nn.Conv2d):
            torch.nn.init.normal_(block.weight, std=0.3)
    controls, memory, noise = example_inputs(config, 16, batch=2)
    out = net(controls, memory, noise)
    assert out.shape == (2, 3, 32, 32)
    assert out.min() >= 0 and out.max() <= 1
    out.mean().backward()
    assert net.control_mlp[0].weight.grad is not None


def test_residual_net_starts_as_copy_of_last_frame():
    net = WorldNet(MICRO, POSE).eval()
    controls, memory, noise = example_inputs(MICRO, 16, batch=2)
    assert torch.equal(net(controls, memory, noise), memory[0][:, -3:])


def test_fresh_net_gets_a_first_order_gradient_from_controls():
    # At the start only the output layer is zero; the features feeding it must already depend
    # on the controls, or L1 training has no gradient toward motion and stays at copy-last.
    torch.manual_seed(0)
    net = WorldNet(MICRO, POSE)
    controls, memory, noise = example_inputs(MICRO, 16, batch=1)
    feats = []
    net.body.out.register_forward_hook(lambda m, inp, out: feats.append(inp[0].detach()))
    net(controls, memory, noise)
    net(controls + torch.randn(1, 16), memory, noise)
    assert not torch.allclose(feats[0], feats[1], atol=1e-4)
    target = torch.rand(1, 3, 32, 32)
    (net(controls, memory, noise) - target).abs().mean().backward()
    assert net.body.out.weight.grad.abs().sum() > 0


def test_gradient_survives_negative_features_before_the_output():
    # L1 pulls the predicted change toward zero; with plain ReLU the features before the output
    # layer could all go negative, the output became a constant and the world a copy for good.
    torch.manual_seed(0)
    net = WorldNet(MICRO, POSE)
    torch.nn.init.normal_(net.body.out.weight, std=0.1)
    last_block = net.body.decoder[0][-1]
    with torch.no_grad():
        last_block.conv2.bias.fill_(-100.0)  # every feature entering the output layer is negative
    controls, memory, noise = example_inputs(MICRO, 16, batch=1)
    (net(controls, memory, noise) - torch.rand(1, 3, 32, 32)).abs().mean().backward()
    assert net.body.stems[0].weight.grad.abs().sum() > 0


def test_controls_are_normalised_inside_and_condition_the_output():
    torch.manual_seed(0)
    net = WorldNet(MICRO, ControlSchema.identity(ACTION_KIND)).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    controls, memory, noise = example_inputs(MICRO, 2)
    a = net(controls, memory, noise)
    b = net(controls + torch.tensor([[5.0, 0.0]]), memory, noise)
    assert not torch.allclose(a, b)
    # shifting the mean with the input leaves the output unchanged: normalisation is inside
    net.control_mean.copy_(torch.tensor([5.0, 0.0]))
    assert torch.allclose(net(controls + torch.tensor([[5.0, 0.0]]), memory, noise), a)


def test_2d_mode_sees_only_forward_motion_and_yaw():
    torch.manual_seed(0)
    config = dataclasses.replace(MICRO, control_mode="2d")
    net = WorldNet(config, POSE).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    controls, memory, noise = example_inputs(config, 16)
    base = net(controls, memory, noise)
    other = controls.clone()
    other[0, 7] = 3.0  # ty: not seen in 2d mode
    assert torch.equal(net(other, memory, noise), base)
    other[0, 11] = 3.0  # tz: seen
    assert not torch.equal(net(other, memory, noise), base)


def test_memory_and_noise_join_at_their_scale():
    torch.manual_seed(0)
    net = WorldNet(MICRO, POSE).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.2)
    controls, memory, noise = example_inputs(MICRO, 16)
    base = net(controls, memory, noise)
    for level in range(2):
        changed = [n.clone() for n in noise]
        changed[level] += 0.5
        assert not torch.allclose(net(controls, memory, changed), base)
        mem = [m.clone() for m in memory]
        mem[level][:, :3] += 0.5  # oldest frame of that level
        assert not torch.allclose(net(controls, mem, noise), base)


def test_presets_and_their_budgets():
    assert set(PRESETS) == {"tiny", "forest", "baseline2022"}
    forest = model_stats(get_preset("forest").net)
    assert 4e6 < forest["params"] < 6e6 and 0.7e9 < forest["flops"] < 1.3e9
    tiny = model_stats(get_preset("tiny").net)
    assert 0.2e6 < tiny["params"] < 0.5e6
    for field in ("warp", "recall", "recall_refresh", "recall_refresh_coarse", "hold_still", "look_refresh"):
        assert getattr(get_preset("forest").net, field) == getattr(get_preset("tiny").net, field)  # one recipe for holding
    base = get_preset("baseline2022")
    assert base.net.memory_frames == (1,) and base.net.control_mode == "2d" and base.recipe.adversarial_weight == 0
    with pytest.raises(UserError):
        get_preset("nope")


def test_config_json_round_trip_and_resize():
    cfg = get_preset("forest").net
    assert NetConfig.from_json(cfg.to_json()) == cfg
    recipe = get_preset("tiny").recipe
    assert TrainRecipe.from_json(recipe.to_json()) == recipe
    small = cfg.with_size(96, 128)
    assert small.memory_frames == (4, 8, 16) and small.layout == MemoryLayout((4, 8, 16), 4)
    WorldNet(small, POSE)(*example_inputs(small, 16), recall=example_recall(small))
    with pytest.raises(UserError):
        NetConfig(network="flat8", height=30, width=32, memory_frames=(1,))


def test_memory_from_frames_feeds_the_network():
    frames = torch.rand(1, 5, 3, 32, 32)
    memory = memory_from_frames(frames, MICRO.layout)
    out = WorldNet(MICRO, POSE).eval()(torch.zeros(1, 16), memory, [torch.rand(1, 1, 32, 32), torch.rand(1, 1, 8, 8)])
    assert out.shape == (1, 3, 32, 32)


def test_film_folded_into_the_convolution_is_the_same_block():
    torch.manual_seed(0)
    block = FiLMBlock(8, 16)
    with torch.no_grad():
        for p in block.parameters():
            p.normal_(0, 0.3)
    x, cond = torch.randn(1, 8, 12, 16), torch.randn(1, 16)
    expected = block(x, cond)
    torch.testing.assert_close(block.forward_folded(x, cond), expected, rtol=1e-5, atol=1e-5)
    assert (expected - x).abs().mean() > 0.05  # the block does something


def test_upsampling_starts_as_nearest_neighbour():
    """ICNR: at initialisation each PixelShuffle block repeats one value per channel, so the first
    steps of free play carry no factor x factor checkerboard."""
    net = WorldNet(get_preset("tiny").net, ControlSchema.identity())
    for up in net.body.ups:
        f = up[1].upscale_factor
        y = up(torch.randn(2, up[0].in_channels, 3, 5))  # (2, C, 3f, 5f)
        blocks = y.unflatten(2, (3, f)).unflatten(4, (5, f))  # (2, C, 3, f, 5, f)
        torch.testing.assert_close(blocks, blocks[:, :, :, :1, :, :1].expand_as(blocks))


def _move(rotation=None, translation=(0.0, 0.0, 0.0)) -> torch.Tensor:
    """(1, 16) pose controls of one move: rotation (3, 3) and translation in the old camera's axes."""
    c = torch.zeros(1, 16)
    R = torch.eye(3) if rotation is None else torch.as_tensor(rotation, dtype=torch.float32)
    c[0, :12] = torch.cat([R, torch.tensor(translation, dtype=torch.float32)[:, None]], 1).reshape(12)
    return c


def test_move_warp_turns_and_zooms_the_view():
    from neuralworld.model.network import MoveWarp

    warp = MoveWarp(48, 64, focal=0.75)  # 48 pixels of focal length
    bar = torch.zeros(1, 3, 48, 64)
    bar[..., 30:34] = 1.0  # a vertical bar, columns 30..33
    still, inside = warp(bar, _move())
    torch.testing.assert_close(still, bar, atol=1e-4, rtol=0)  # standing still: the same frame
    assert bool(inside.all())
    turn = math.radians(5)  # turning right (about the camera's y axis, which points down)
    R = [[math.cos(turn), 0, math.sin(turn)], [0, 1, 0], [-math.sin(turn), 0, math.cos(turn)]]
    turned, inside = warp(bar, _move(R))
    columns = torch.nonzero(turned[0, 0, 24] > 0.5).flatten()
    shift = round(48 * math.tan(turn))  # 4 pixels: the view moves left
    assert columns.tolist() == list(range(30 - shift, 34 - shift))
    # what comes into view: a run of columns at the right edge (wider than the centre's shift:
    # the view is turned, not slid), which the old view did not hold
    came = torch.nonzero(inside[0, 0, 24] == 0).flatten().tolist()
    assert came == list(range(64 - len(came), 64)) and shift <= len(came) <= 2 * shift
    square = torch.zeros(1, 3, 48, 64)
    square[..., 20:28, 28:36] = 1.0  # centred on the principal point (31.5, 23.5)
    closer, _ = warp(square, _move(translation=(0.0, 0.0, 1.0)))  # a metre forward: the plane is nearer
    assert (closer[0, 0] > 0.5).sum() > 1.5 * (square[0, 0] > 0.5).sum()


def test_move_warp_of_frames_squeezed_to_another_shape_moves_rows_by_the_vertical_focal_length():
    from neuralworld.model.network import MoveWarp

    bar = torch.zeros(1, 3, 48, 64)
    bar[..., 22:26, :] = 1.0  # a horizontal bar, rows 22..25
    tilt = math.radians(5)  # looking up (about the camera's x axis, which points right)
    R = [[1, 0, 0], [0, math.cos(tilt), -math.sin(tilt)], [0, math.sin(tilt), math.cos(tilt)]]
    for focal_y, pixels in ((0.0, 48), (2.0, 96)):  # square pixels: 48 px as across; squeezed 2:1: 96
        tilted, _ = MoveWarp(48, 64, focal=0.75, focal_y=focal_y)(bar, _move(R))
        rows = torch.nonzero(tilted[0, 0, :, 32] > 0.5).flatten()
        shift = round(pixels * math.tan(tilt))  # 4 and 8 rows: the view moves down
        assert rows.tolist() == list(range(22 + shift, 26 + shift))


def test_warped_world_starts_as_the_newest_frame_warped_by_the_move():
    config = dataclasses.replace(MICRO, warp="base", focal=0.7)
    net = WorldNet(config, POSE).eval()
    _, memory, noise = example_inputs(config, 16, batch=1)
    move = _move(translation=(0.1, 0.0, 0.3))
    torch.testing.assert_close(net(move, memory, noise), net.warp(memory[0][:, -3:], move)[0].clamp(0, 1))
    assert WorldNet(config, ControlSchema.identity(ACTION_KIND)).warp is None  # no move to warp by
    beside = WorldNet(dataclasses.replace(config, warp="input"), POSE).eval()  # the warped frame as an input only
    assert torch.equal(beside(move, memory, noise), memory[0][:, -3:])



def test_catmull_rom_sampling_is_exact_at_whole_pixels_and_never_sharpens():
    """Free play resamples every step: whole-pixel moves copy pixels, and a half-pixel move back
    and forth many times softens the view (gain <= 1) where grid_sample's a = -3/4 cubic grows it."""
    from neuralworld.model.network import catmull_rom_sample

    torch.manual_seed(0)
    frame = torch.rand(1, 3, 12, 16)
    v, u = torch.meshgrid(torch.arange(12.0), torch.arange(16.0), indexing="ij")
    x, y = u.reshape(1, -1), v.reshape(1, -1)
    shifted = catmull_rom_sample(frame, x + 2.0, y + 1.0)
    torch.testing.assert_close(shifted[..., :-1, :-2], frame[..., 1:, 2:])
    soft = frame
    for k in range(100):
        soft = catmull_rom_sample(soft, x + (0.5 if k % 2 == 0 else -0.5), y)
    assert soft.std() < frame.std() and soft.min() >= 0 and soft.max() <= 1


def test_catmull_rom_sampling_repeats_the_border_outside_the_frame():
    """Near and far outside (beyond the padding that lets one offset find all 16 neighbours), the
    samples are those of a frame whose border row and column go on forever."""
    from neuralworld.model.network import catmull_rom_sample

    def cubic(t):  # Keys' weights (a = -1/2) of the neighbours at -1, 0, 1, 2
        return torch.tensor([((-t + 2) * t - 1) * t / 2, ((3 * t - 5) * t * t + 2) / 2,
                             ((-3 * t + 4) * t + 1) * t / 2, (t - 1) * t * t / 2])

    torch.manual_seed(1)
    frame = torch.rand(2, 3, 12, 16)
    x, y = torch.zeros(2, 12 * 16), torch.zeros(2, 12 * 16)  # 12 points to check, the rest at pixel (0, 0)
    x[:, :12] = torch.tensor([-40.0, -2.3, -0.7, 15.6, 17.2, 70.0] * 2)
    y[:, :12] = torch.tensor([[-30.0] * 6 + [3.0] * 6, [4.0] * 6 + [55.5] * 6])
    out = catmull_rom_sample(frame, x, y).reshape(2, 3, -1)
    wide = torch.nn.functional.pad(frame, (60, 60, 60, 60), mode="replicate")  # the border repeated far out
    for b in range(2):
        for k in range(12):
            xs, ys = float(x[b, k]) + 60, float(y[b, k]) + 60  # the same point in the wide frame, well inside it
            x0, y0 = math.floor(xs), math.floor(ys)
            patch = wide[b, :, y0 - 1:y0 + 3, x0 - 1:x0 + 3]  # (3, 4, 4) its 16 neighbours
            expected = torch.einsum("i,cij,j->c", cubic(ys - y0), patch, cubic(xs - x0))
            torch.testing.assert_close(out[b, :, k], expected, atol=1e-5, rtol=0)
