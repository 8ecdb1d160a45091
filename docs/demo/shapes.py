"""A learnable synthetic image task, generated here (no downloads): coloured shapes.

Each 32x32 image holds one shape (circle, square, triangle or cross) of random size and
position, in one of three colours (red, green, blue) with jitter, on a noisy background.
Labels: the shape (4 classes) and the colour (3 classes).
"""

import torch

SHAPES = ("circle", "square", "triangle", "cross")
COLOURS = ("red", "green", "blue")
SIZE = 32


def _mask(shape: int, cx, cy, r, y, x) -> torch.Tensor:
    dx, dy = (x - cx).abs(), (y - cy).abs()
    if shape == 0:  # circle
        return (x - cx) ** 2 + (y - cy) ** 2 <= r**2
    if shape == 1:  # square
        return (dx <= r * 0.8) & (dy <= r * 0.8)
    if shape == 2:  # triangle, point up
        top = cy - r
        return (y >= top) & (y <= cy + r) & (dx <= (y - top) / 2)
    arm = r / 3  # cross
    return ((dx <= arm) & (dy <= r)) | ((dy <= arm) & (dx <= r))


def make(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """`n` images (n, 3, 32, 32) in [0, 1], their shape labels and their colour labels."""
    g = torch.Generator().manual_seed(seed)
    y, x = torch.meshgrid(torch.arange(SIZE), torch.arange(SIZE), indexing="ij")
    images = torch.rand(n, 3, SIZE, SIZE, generator=g) * 0.25
    shapes = torch.randint(0, len(SHAPES), (n,), generator=g)
    colours = torch.randint(0, len(COLOURS), (n,), generator=g)
    for i in range(n):
        r = float(torch.randint(6, 12, (), generator=g))
        cx, cy = (float(torch.randint(int(r), SIZE - int(r), (), generator=g)) for _ in range(2))
        mask = _mask(int(shapes[i]), cx, cy, r, y, x)
        rgb = torch.rand(3, generator=g) * 0.3
        rgb[colours[i]] = 0.7 + 0.3 * torch.rand((), generator=g)
        images[i][:, mask] = rgb[:, None]
    return images, shapes, colours
