import pytest
import torch

from harness.host import default_host
from harness.profiles import Profile, Recipe
from harness.registry import Scenario
from harness.splits import SplitError, make_split, stratified_sample

from .conftest import synthetic_data

DATA = synthetic_data(400, 200)
PROFILE = Profile(name="t", description="", recipe=Recipe(epochs=1), train_size=300, heldout_size=150)


def scenario(name):
    return default_host().scenarios.get(name)


def test_random_split_sizes_disjoint_and_seeded():
    s = make_split(DATA, PROFILE, scenario("random"), seed=0)
    assert s.sizes() == {"retain": 270, "forget": 30, "validation": 30, "test": 120}
    all_idx = torch.cat(list(s.sets().values()))
    assert len(torch.unique(all_idx)) == len(all_idx)
    assert (s.retain < DATA.n_train).all() and (s.forget < DATA.n_train).all()
    assert (s.test >= DATA.n_train).all() and (s.validation >= DATA.n_train).all()
    again = make_split(DATA, PROFILE, scenario("random"), seed=0)
    assert again.hash == s.hash and torch.equal(again.forget, s.forget)


def test_seeds_change_forget_set_but_not_training_pool():
    a = make_split(DATA, PROFILE, scenario("random"), seed=0)
    b = make_split(DATA, PROFILE, scenario("random"), seed=1)
    assert a.hash != b.hash and not torch.equal(a.forget, b.forget)
    assert torch.equal(a.train, b.train) and a.train_hash == b.train_hash  # one original model for all seeds


def test_stratified_sample_keeps_class_proportions():
    labels = torch.arange(1000) % 10
    chosen = stratified_sample(labels, 95, torch.Generator().manual_seed(0))
    counts = torch.bincount(labels[chosen], minlength=10)
    assert len(chosen) == 95 and counts.max() - counts.min() <= 1


def test_class_scenario_forgets_one_whole_class():
    s = make_split(DATA, PROFILE, scenario("class"), seed=0, options={"target_class": "cat"})
    train_labels = DATA.labels[s.train]
    assert (DATA.labels[s.forget] == 3).all()
    assert len(s.forget) == int((train_labels == 3).sum())
    assert s.info == {"forgotten_class": 3, "forgotten_class_name": "cat"}
    by_index = make_split(DATA, PROFILE, scenario("class"), seed=0, options={"target_class": "3"})
    assert torch.equal(by_index.forget, s.forget)
    drawn = make_split(DATA, PROFILE, scenario("class"), seed=0)
    assert drawn.options == {"target_class": "auto"} and 0 <= drawn.info["forgotten_class"] < 10
    with pytest.raises(SplitError, match="target_class='unicorn' is out of range: expected one of 'auto', 'airplane'"):
        make_split(DATA, PROFILE, scenario("class"), seed=0, options={"target_class": "unicorn"})


def test_a_profile_larger_than_the_data_is_named():
    big = Profile(name="big", description="", recipe=Recipe(epochs=1), train_size=5000, heldout_size=150)
    with pytest.raises(SplitError, match=r"profile 'big' needs 5000 training images; the data \(synthetic-0\) has 400"):
        make_split(DATA, big, scenario("random"), seed=0)


@pytest.mark.parametrize("positions, message", [
    (torch.tensor([], dtype=torch.long), "empty forget set"),
    (torch.tensor([0, 0, 1]), "duplicate positions"),
    (torch.tensor([10_000]), "outside the pool"),
    (torch.arange(300), "whole training pool"),
])
def test_bad_scenario_output_is_refused(positions, message):
    bad = Scenario(name="bad", fn=lambda pool, gen: positions)
    with pytest.raises(SplitError, match=message):
        make_split(DATA, PROFILE, bad, seed=0)




def test_targeted_red_picks_the_reddest_images_and_scales_with_the_pool():
    """Plant red images in a grey pool: they are the ones chosen, the same for any seed; the default count
    is the paper's 525 of 50,000 scaled to the pool."""
    from harness.splits import Pool
    from harness_plugins.scenarios import red_forget

    n = 2000
    images = torch.full((n, 3, 32, 32), 120, dtype=torch.uint8)
    images += torch.randint(0, 30, images.shape, generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    planted = torch.tensor([5, 77, 300, 1999])
    images[planted, 0] = 220  # strong red channel
    images[planted, 1:] = 30
    pool = Pool(torch.arange(n), torch.zeros(n, dtype=torch.long), images, ("x",), 0.1, 0)
    chosen, info = red_forget(pool, torch.Generator().manual_seed(0), count=4)
    assert sorted(chosen.tolist()) == planted.tolist() and info["count"] == 4
    again, _ = red_forget(pool, torch.Generator().manual_seed(9), count=4)
    assert torch.equal(chosen, again)
    default, info = red_forget(pool, torch.Generator().manual_seed(0))
    assert info["count"] == round(525 * n / 50_000) == 21 and set(planted.tolist()) <= set(default.tolist())
    with pytest.raises(ValueError, match="whole pool"):
        red_forget(pool, torch.Generator(), count=n)
