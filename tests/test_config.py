import dataclasses
import pickle

import numpy as np
import pytest

from grokbook import RunConfig
from grokbook.config import MAX_P, SEED_LIMIT, FieldError, check_field, is_prime
from grokbook.trainer import _epoch_permutation


@pytest.mark.parametrize("changes, field", [
    ({"r": 0.0}, "r"), ({"r": 1.0}, "r"), ({"r": -0.3}, "r"), ({"r": 1.5}, "r"),
    ({"task": "div", "p": 96}, "p"), ({"lr": -1e-3}, "lr"), ({"lr": 0.0}, "lr"),
    ({"task": "modexp"}, "task"), ({"optimizer": "lion"}, "optimizer"),
    ({"weight_decay": -1.0}, "weight_decay"), ({"d_model": 30, "n_heads": 4}, "n_heads"),
    ({"betas": (0.9, 1.0)}, "betas"), ({"batch_size": -1}, "batch_size"),
    ({"steps": 0}, "steps"), ({"loss": "hinge"}, "loss"), ({"init_scale": 0.0}, "init_scale"),
    ({"arch": "gpt2"}, "arch"), ({"arch": 1}, "arch"), ({"adam_eps": 0.0}, "adam_eps"),
    ({"grokfast_alpha": 1.0}, "grokfast_alpha"), ({"grokfast_lamb": -1.0}, "grokfast_lamb"),
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


@pytest.mark.parametrize("changes, field", [
    ({"steps": 1.5}, "steps"), ({"steps": True}, "steps"), ({"n_layers": "2"}, "n_layers"),
    ({"d_model": "16"}, "d_model"), ({"weight_decay": float("nan")}, "weight_decay"),
    ({"lr": float("inf")}, "lr"), ({"weight_decay": 10**400}, "weight_decay"), ({"task": 1}, "task"),
    ({"seed": 2**70}, "seed"), ({"seed": 2**32}, "seed"), ({"data_seed": -1}, "data_seed"),
    ({"data_seed": 2**63}, "data_seed"), ({"p": 10**6}, "p"), ({"p": 97.0}, "p"),
    ({"layer_norm": 2}, "layer_norm"), ({"layer_norm": "yes"}, "layer_norm"),
    ({"betas": ("0.9", 0.98)}, "betas"), ({"betas": (0.9, float("nan"))}, "betas"), ({"betas": 0.9}, "betas"),
    ({"p": 7, "r": 0.01}, "r"),  # round(0.49) = 0 of 49 examples: an empty training set
])
def test_wrong_types_and_non_finite_values_name_the_field(changes, field):
    with pytest.raises(ValueError, match=rf"^RunConfig\.{field} = .* is invalid: "):
        RunConfig(**changes)


def test_infinite_train_fraction_gets_the_train_fraction_message():
    with pytest.raises(ValueError, match=r"^RunConfig\.r = inf is invalid: a train fraction strictly between 0 and 1$"):
        RunConfig(r=1e999)


def test_bounds_accept_the_papers_values():
    assert RunConfig(p=97).p == 97 and RunConfig(task="div", p=113).p == 113 and RunConfig(p=MAX_P).p == MAX_P
    assert RunConfig(seed=SEED_LIMIT - 1, data_seed=SEED_LIMIT - 1).seed == SEED_LIMIT - 1
    assert RunConfig(task="s5", p=0).task == "s5"  # p is not used by S5: only its type is checked


def test_largest_seed_still_seeds_the_minibatch_order():
    # train.py seeds torch with seed * 1_000_003 + epoch; torch takes at most 2**64 - 1.
    assert len(_epoch_permutation(SEED_LIMIT - 1, 10**9, 5)) == 5


def test_bools_given_as_0_or_1_are_the_same_config():
    assert RunConfig(layer_norm=1) == RunConfig(layer_norm=True)
    assert RunConfig(layer_norm=1).hash() == RunConfig(layer_norm=True).hash()
    assert RunConfig(layer_norm=0).hash() == RunConfig(layer_norm=False).hash()
    assert RunConfig(layer_norm=1).layer_norm is True


def test_numpy_numbers_are_stored_as_python_numbers():
    c = RunConfig(seed=np.int64(3), lr=np.float64(0.01), p=np.int32(11))
    assert type(c.seed) is int and type(c.p) is int and type(c.lr) is float
    assert c.hash() == RunConfig(seed=3, lr=0.01, p=11).hash()


def test_hashes_of_stored_runs_do_not_change():
    # Literals of TRAIN_VERSION 2 with the field `arch` (the one training core): runs in
    # existing stores keep their keys until a change to training bumps the version.
    assert RunConfig().hash() == "95a9a65ca6b34d6e"
    assert RunConfig(task="div", p=113, r=0.3, layer_norm=False, lr=1, weight_decay=0, betas=[0.8, 0.9],
                     batch_size=64, seed=3, data_seed=2, steps=60).hash() == "e3a2365b4bd7758d"
    assert RunConfig(task="digits", model="mlp", loss="mse", init_scale=8, d_mlp=200, n_layers=2,
                     r=0.5565).hash() == "2e52e2398ac799ee"


def test_fields_added_later_leave_the_hash_alone_at_their_defaults():
    from grokbook.config import LATER_FIELDS

    defaults = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    assert all(defaults[k] == v for k, v in LATER_FIELDS.items())
    assert not set(LATER_FIELDS) & set(RunConfig().to_dict())
    eps = RunConfig(adam_eps=1e-4)
    assert eps.to_dict()["adam_eps"] == 1e-4 and eps.hash() != RunConfig().hash()
    assert RunConfig.from_dict(eps.to_dict()) == eps
    assert RunConfig(grokfast_lamb=2.0).hash() != RunConfig(grokfast_lamb=2.0, grokfast_alpha=0.9).hash()


def test_check_field_checks_one_field_alone():
    assert check_field("lr", 1) == 1.0 and type(check_field("lr", 1)) is float
    assert check_field("n_heads", 3) == 3  # no d_model to divide here
    with pytest.raises(FieldError, match=r"RunConfig\.p = 1 is invalid: an integer from 2 to 4096") as info:
        check_field("p", 1)
    assert (info.value.field, info.value.value) == ("p", 1)
    assert str(pickle.loads(pickle.dumps(info.value))) == str(info.value)  # crosses process boundaries


def test_arch_defaults_to_book_and_grok_is_transformer_only():
    assert RunConfig().arch == "book" and RunConfig(arch="grok").arch == "grok"
    assert RunConfig(arch="grok").hash() != RunConfig().hash()
    names = [f.name for f in dataclasses.fields(RunConfig)]
    assert names[names.index("model") + 1] == "arch"
    with pytest.raises(FieldError, match=r"^RunConfig\.arch = 'grok' is invalid: 'book' for model 'mlp'") as info:
        RunConfig(arch="grok", model="mlp")
    assert info.value.field == "arch"
    with pytest.raises(FieldError, match=r"^RunConfig\.arch = 'grok' is invalid: .*task 'digits'") as info:
        RunConfig(arch="grok", task="digits", model="mlp")
    assert info.value.field == "arch"
    with pytest.raises(FieldError, match=r"^RunConfig\.arch = 'grok' is invalid"):
        RunConfig(arch="grok", task="digits")  # the arch is named, not the model
    assert RunConfig(arch="grok", task="s5").task == "s5"
    assert check_field("arch", "grok") == "grok"
