import numpy as np
import pytest

from grokbook.phases import PhaseTimes, first_crossing, is_grokking, phase_bands, phase_times


def sigmoid_curve(steps, centre, width=5.0, low=0.0):
    return low + (1 - low) / (1 + np.exp(-(steps - centre) / width))


def test_phase_times_of_known_sigmoids():
    steps = np.arange(2000)
    train = sigmoid_curve(steps, 100)
    val = sigmoid_curve(steps, 1500, width=20)
    t = phase_times(steps, train, val, leave=0.1, reach=0.99)
    # closed form: sigmoid >= q at centre + width * log(q / (1 - q)), rounded up to a step
    q = lambda c, w, th: int(np.ceil(c + w * np.log(th / (1 - th))))
    assert t == PhaseTimes(q(100, 5, 0.1), q(100, 5, 0.99), q(1500, 20, 0.1), q(1500, 20, 0.99))


def test_never_reached_is_none_and_val_steps():
    steps = np.arange(100)
    t = phase_times(steps, np.full(100, 0.5), np.zeros(10), val_steps=np.arange(0, 100, 10))
    assert t == PhaseTimes(0, None, None, None)


def test_thresholds_are_validated():
    with pytest.raises(ValueError, match="leave"):
        phase_times([0, 1], [0, 1], [0, 1], leave=0.99, reach=0.5)
    with pytest.raises(ValueError, match="differ in shape"):
        first_crossing([0, 1, 2], [0.0, 1.0], 0.5)


def test_bands_and_label():
    t = PhaseTimes(10, 50, 400, 1000)
    assert phase_bands(t, 2000) == [("confusion", 0, 10), ("memorization", 50, 400),
                                    ("comprehension", 400, 1000), ("generalization", 1000, 2000)]
    assert is_grokking(t, min_ratio=5) and not is_grokking(t, min_ratio=25)
    unfinished = PhaseTimes(10, 50, 400, None)
    assert phase_bands(unfinished, 2000)[-1] == ("comprehension", 400, 2000)
    assert not is_grokking(unfinished)
