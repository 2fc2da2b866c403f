import pytest

from grokbook import RunConfig
from grokbook.config import is_prime


@pytest.mark.parametrize("changes, field", [
    ({"r": 0.0}, "r"), ({"r": 1.0}, "r"), ({"r": -0.3}, "r"), ({"r": 1.5}, "r"),
    ({"task": "div", "p": 96}, "p"), ({"lr": -1e-3}, "lr"), ({"lr": 0.0}, "lr"),
    ({"task": "modexp"}, "task"), ({"optimizer": "lion"}, "optimizer"),
    ({"weight_decay": -1.0}, "weight_decay"), ({"d_model": 30, "n_heads": 4}, "n_heads"),
    ({"betas": (0.9, 1.0)}, "betas"), ({"batch_size": -1}, "batch_size"),
    ({"steps": 0}, "steps"), ({"loss": "hinge"}, "loss"), ({"init_scale": 0.0}, "init_scale"),
])
def test_invalid_values_name_the_field(changes, field):
    with pytest.raises(ValueError, match=rf"RunConfig\.{field} = .* is invalid: "):
        RunConfig(**changes)


def test_division_accepts_prime():
    assert RunConfig(task="div", p=97).p == 97


def test_is_prime_against_sieve():
    n = 200
    sieve = [True] * n
    sieve[0] = sieve[1] = False
    for k in range(2, n):
        if sieve[k]:
            for m in range(2 * k, n, k):
                sieve[m] = False
    assert [is_prime(k) for k in range(n)] == sieve


def test_hash_is_stable_and_discriminates():
    a, b = RunConfig(), RunConfig()
    assert a.hash() == b.hash() and len(a.hash()) == 16
    assert a.hash() != a.replace(seed=1).hash()
    assert a.hash() != a.replace(lr=a.lr * (1 + 1e-12)).hash()
    # A literal value keeps a stored run addressable across sessions and machines.
    assert RunConfig(task="add", p=97, r=0.5, seed=0).hash() == a.hash()


def test_dict_round_trip_and_unknown_keys():
    c = RunConfig(betas=[0.8, 0.9], batch_size=64)
    assert RunConfig.from_dict(c.to_dict()) == c
    with pytest.raises(ValueError, match="unknown RunConfig field.*colour"):
        RunConfig.from_dict({**c.to_dict(), "colour": 1})


def test_int_for_a_float_field_gives_the_same_hash():
    a, b = RunConfig(weight_decay=1, lr=1), RunConfig(weight_decay=1.0, lr=1.0)
    assert a.hash() == b.hash() and isinstance(a.weight_decay, float)
    assert RunConfig.from_dict(a.to_dict()).hash() == b.hash()
