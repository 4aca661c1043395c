import numpy as np
import pytest

torch = pytest.importorskip("torch")

from landmask.engine import masked_loss, train_one_epoch  # noqa: E402
from landmask.errors import LandmaskError  # noqa: E402
from landmask.model import ARCHS, ModelConfig, build_model  # noqa: E402
from landmask.report import Reporter  # noqa: E402


@pytest.mark.parametrize("arch, size", [("lmnet", 64), ("lmnet", 80), ("seed", 96)])
def test_every_arch_gives_finite_points_and_every_parameter_a_gradient(arch, size):
    assert arch in ARCHS
    m = build_model(ModelConfig(arch=arch, num_points=15, input_size=size))
    out = m(torch.randn(3, 1, size, size))
    assert out.shape == (3, 15, 2) and torch.isfinite(out).all()
    out.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in m.parameters())


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
