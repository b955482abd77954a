"The GPU path: the same runs on CUDA and on the CPU (float64) agree; skipped without a CUDA device."
import pytest
import torch

from papercode.score_distillation import EpsMLP, ImageParam, ddim_invert, distill, sd_schedule

S = sd_schedule()


@pytest.mark.gpu
def test_inversion_and_sdi_on_cuda_match_the_cpu():
    torch.manual_seed(0)
    net = EpsMLP(64, 10, 64).double().eval().requires_grad_(False); net.schedule = S
    x0 = torch.tanh(torch.randn(256, 64, dtype=torch.float64))
    lab = torch.arange(256) % 10
    kw = dict(n_steps=10, gamma_inv=-7.5, eta=0.3, variant="code", delta=7, seed=1)
    k_cpu = ddim_invert(net, x0, 0.7, S, cond=lab, **kw).kappa
    gnet = EpsMLP(64, 10, 64).double().eval().requires_grad_(False); gnet.load_state_dict(net.state_dict()); gnet = gnet.cuda(); gnet.schedule = S
    k_gpu = ddim_invert(gnet, x0.cuda(), 0.7, S, cond=lab.cuda(), **kw).kappa
    torch.testing.assert_close(k_gpu.cpu(), k_cpu, rtol=1e-9, atol=1e-9)
    r_cpu = distill(ImageParam(32, 64, squash=True), net, noise="sdi", iters=20, cond=lab[:32], optimizer="adam", lr=0.1, seed=2)
    r_gpu = distill(ImageParam(32, 64, squash=True), gnet, noise="sdi", iters=20, cond=lab[:32], optimizer="adam", lr=0.1, seed=2)
    assert r_gpu.device.startswith("cuda") and r_gpu.model_calls == r_cpu.model_calls
    torch.testing.assert_close(r_gpu.x0.cpu(), r_cpu.x0, rtol=1e-6, atol=1e-6)
