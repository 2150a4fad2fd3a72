import torch

from neuralworld.model.memory import MemoryLayout, empty_memory, memory_from_frames, push, quantize8


def test_layout_sizes_and_scaling():
    assert MemoryLayout().sizes(192, 256) == [(192, 256), (48, 64), (12, 16), (3, 4)]
    assert MemoryLayout.for_size(64, 64).frames == (4, 8, 16, 32)
    assert MemoryLayout.for_size(96, 128).frames == (4, 8, 16)  # 96 is not divisible by 64


def test_push_matches_memory_from_frames_and_is_quantized():
    layout = MemoryLayout((2, 3, 4), 4)
    frames = torch.rand(2, 5, 3, 32, 32)
    mem = empty_memory(layout, 2, 32, 32)
    for i in range(5):
        mem = push(mem, frames[:, i], layout)
    direct = memory_from_frames(frames, layout)
    for a, b in zip(mem, direct):
        assert torch.equal(a, b)
    assert torch.equal(mem[0], quantize8(mem[0]))
    # level 0 holds the last 2 frames, newest last; level 2 (8x8) still has one empty slot? no: 4 <= 5
    assert torch.allclose(mem[0][:, 3:], quantize8(frames[:, 4]))
    assert torch.allclose(mem[1][:, 6:], quantize8(torch.nn.functional.avg_pool2d(frames[:, 4], 4)))


def test_short_history_is_zero_padded_oldest_first():
    layout = MemoryLayout((4,), 4)
    frames = torch.ones(1, 1, 3, 8, 8)
    mem = memory_from_frames(frames, layout)[0]
    assert mem[:, :9].abs().sum() == 0 and torch.all(mem[:, 9:] == 1)
