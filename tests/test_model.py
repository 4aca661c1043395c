import numpy as np
import pytest

torch = pytest.importorskip("torch")

from landmask.engine import masked_loss, train_one_epoch  # noqa: E402
from landmask.errors import LandmaskError  # noqa: E402
from landmask.model import ARCHS, ModelConfig, build_model  # noqa: E402
from landmask.report import Reporter  # noqa: E402


@pytest.mark.parametrize("arch, size, stride, block, head", [
    ("lmnet", 64, 4, "sep", "heatmap"), ("lmnet", 80, 4, "sep", "heatmap"), ("lmnet", 80, 8, "sep", "heatmap"),
    ("lmnet", 64, 4, "dense", "heatmap"), ("lmnet", 64, 8, "sep", "simcc"), ("seed", 96, 4, "sep", "heatmap")])
def test_every_arch_gives_finite_points_and_every_parameter_a_gradient(arch, size, stride, block, head):
    assert arch in ARCHS
    m = build_model(ModelConfig(arch=arch, num_points=15, input_size=size, head_stride=stride, block=block, head=head))
    out = m(torch.randn(3, 1, size, size))
    assert out.shape == (3, 15, 2) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


@pytest.mark.parametrize("stride", [4, 8])
def test_a_peaked_heatmap_decodes_to_its_cell_centre(stride):
    """Soft-argmax geometry at either head stride: a heatmap that is all in cell (i, j) gives the
    crop-pixel centre of that cell, (s·j + (s - 1)/2, s·i + (s - 1)/2)."""
    m = build_model(ModelConfig(num_points=2, input_size=64, head_stride=stride))
    n = 64 // stride
    h = torch.full((1, 2, n, n), -1e4)
    h[0, 0, 1, 2] = h[0, 1, n - 1, 0] = 0.0
    pts, _ = m._decode(h)
    c = (stride - 1) / 2
    assert torch.allclose(pts[0], torch.tensor([[2 * stride + c, stride + c], [c, (n - 1) * stride + c]]))
    assert not hasattr(m, "fuse4") if stride == 8 else hasattr(m, "fuse4")
    with pytest.raises(ValueError, match="head_stride 2"):
        build_model(ModelConfig(head_stride=2))


def test_simcc_points_are_the_expectations_of_their_x_and_y_distributions():
    """The simcc head: bin i of SPLIT·S covers crop pixels [i/SPLIT, (i+1)/SPLIT) (pixel-centre
    convention), a distribution all in one bin gives that bin's centre, and the point confidence is
    the product of the two distributions' sums of squares (1 for two one-bin distributions); a simcc
    head needs the 1/8 maps."""
    from landmask.model import SIMCC_SPLIT
    m = build_model(ModelConfig(num_points=2, input_size=64, head_stride=8, head="simcc")).eval()
    n = SIMCC_SPLIT * 64
    with torch.no_grad():
        m.simcc_x.weight.zero_(), m.simcc_y.weight.zero_()
        m.simcc_x.bias.fill_(-1e4), m.simcc_y.bias.fill_(-1e4)
        m.simcc_x.bias[5], m.simcc_y.bias[n - 1] = 0.0, 0.0
        pts, face, point = m.points_and_confidence(torch.randn(1, m.heat.in_channels, 8, 8))
    centre = lambda i: (i + 0.5) / SIMCC_SPLIT - 0.5  # noqa: E731
    assert torch.allclose(pts[0], torch.tensor([[centre(5), centre(n - 1)]] * 2))
    assert torch.allclose(point, torch.ones(1, 2)) and torch.allclose(face, torch.ones(1))
    with pytest.raises(ValueError, match="head_stride 4: the simcc head"):
        build_model(ModelConfig(head="simcc"))
    with pytest.raises(ValueError, match="has no heatmaps"):
        m.points_and_heatmaps(torch.rand(1, 1, 64, 64))


def test_lmnet_points_stay_inside_the_crop():
    m = build_model(ModelConfig(input_size=64)).eval()
    with torch.no_grad():
        p = m(torch.randn(2, 1, 64, 64) * 5)
    assert (p >= -0.5).all() and (p <= 63.5).all()


@pytest.mark.parametrize("kind", ["l1", "mse", "wing"])
def test_loss_ignores_missing_points(kind):
    pred = torch.zeros(2, 3, 2)
    target = torch.tensor([[[0.0, 0], [np.nan, np.nan], [0, 0]], [[np.nan, np.nan]] * 3])
    assert masked_loss(pred, target, kind, 64).item() == 0.0
    target[0, 0] = 6.4
    assert masked_loss(pred, target, kind, 64).item() > 0


def test_non_finite_loss_stops_training_with_a_clear_message():
    class Broken(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(1))

        def forward(self, x):
            return self.w * torch.full((len(x), 2, 2), float("nan"))
    m = Broken()
    opt = torch.optim.SGD(m.parameters(), 0.1)
    loader = [(torch.zeros(2, 1, 8, 8), torch.zeros(2, 2, 2))]
    with pytest.raises(LandmaskError, match="loss became nan at epoch 3, step 1"):
        train_one_epoch(m, opt, None, loader, 1, "l1", 8, 3, Reporter())
