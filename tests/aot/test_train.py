"""`train_preference` on the tabular toy: the step callback sees every step and leaves training unchanged."""
import pytest
import torch

from papercode.aot.train import BanditLM, train_preference


def test_callback_sees_every_step_and_leaves_training_bit_identical():
    world = BanditLM(16, 4, seed=2)
    data = world.preferences(256, seed=1)
    kw = dict(loss="paot", steps=7, sort_batch=8, lr=0.1, log_every=3, seed=5)
    plain = train_preference(world.reset(), data, **kw)
    after_plain = world.logits.detach().clone()
    seen = []
    def cb(step):  # draws from the global generator and runs the policy, as an evaluation would
        seen.append(step); torch.rand(3)
        with torch.no_grad(): world.logps([0, 1], [0, 1])
    called = train_preference(world.reset(), data, callback=cb, **kw)
    assert seen == list(range(1, 8))
    assert torch.equal(plain.loss, called.loss) and torch.equal(plain.chosen_q, called.chosen_q)
    assert torch.equal(after_plain, world.logits.detach())
    assert called.log_steps == (0, 3, 6, 7)
    # the callback is not a no-op check: a callback that moves the policy does change the run
    def nudge(step):
        with torch.no_grad(): world.logits[:, 0].add_(0.05)  # (a constant on every answer would not change π)
    assert not torch.equal(train_preference(world.reset(), data, callback=nudge, **kw).loss, plain.loss)


def test_bad_input_is_named():
    world = BanditLM(8, 3, seed=0)
    for n in (0, -1, 2.5):
        with pytest.raises(ValueError, match="n: expected a positive integer"): world.preferences(n)
        with pytest.raises(ValueError, match="n: expected a positive integer"): world.unpaired_sets(n)
    data = world.preferences(32, seed=1)
    # the loss name fixes the variant: an override in loss_kw would train pAOT on unpaired sets under the name 'uaot'
    with pytest.raises(ValueError, match="loss_kw: 'variant' is fixed by loss='uaot'"):
        train_preference(world.reset(), data.unpaired(), loss="uaot", loss_kw=dict(variant="paired"), steps=1)
    with pytest.raises(ValueError, match="loss_kw: 'variant' is fixed by loss='paot'"):
        train_preference(world.reset(), data, loss="paot", loss_kw=dict(variant="unpaired"), steps=1)
