"""Multiple-comparison corrections against scipy's and against hand-computed values."""

import math

import numpy as np
import pytest

from rootbench.harness import stats


def test_benjamini_hochberg_matches_scipy_and_keeps_order_and_missing_values():
    from scipy.stats import false_discovery_control

    rng = np.random.default_rng(0)
    p = rng.uniform(0, 0.2, 36)
    assert stats.benjamini_hochberg(p) == pytest.approx(false_discovery_control(p).tolist())
    q = stats.benjamini_hochberg([0.01, float("nan"), 0.04, None, 0.03])
    assert q[0] == pytest.approx(0.03) and math.isnan(q[1]) and math.isnan(q[3]) and q[2] == q[4] == pytest.approx(0.04)


def test_holm_is_the_step_down_bonferroni():
    assert stats.holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert stats.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])
