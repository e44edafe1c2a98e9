"""jerp.stats on hand-computed cases."""

from __future__ import annotations

import pytest

from jerp import stats


def test_wilson_zero_of_twelve():
    # centre = half = (z^2/2) / (12 + z^2) = 1.9208 / 15.8415 = 0.12125
    lo, hi = stats.wilson(0, 12)
    assert lo == 0.0
    assert hi == pytest.approx(0.24250, abs=1e-4)


def test_wilson_half_of_twelve():
    # half = z / (12 + z^2) * sqrt(0.25 * 12 + z^2 / 4) = 0.12372 * 1.99007 = 0.24622
    lo, hi = stats.wilson(6, 12)
    assert (lo, hi) == (pytest.approx(0.25378, abs=1e-4), pytest.approx(0.74622, abs=1e-4))


def test_wilson_is_symmetric_and_rejects_bad_counts():
    lo, hi = stats.wilson(3, 10)
    lo2, hi2 = stats.wilson(7, 10)
    assert lo == pytest.approx(1 - hi2) and hi == pytest.approx(1 - lo2)
    with pytest.raises(ValueError, match="k=5, n=4"):
        stats.wilson(5, 4)


@pytest.mark.parametrize("b,c,p", [(0, 6, 0.03125), (1, 5, 0.21875), (6, 0, 0.03125),
                                   (0, 0, 1.0), (3, 3, 1.0), (0, 1, 1.0)])
def test_mcnemar_exact(b, c, p):
    # (0, 6): 2 * (1/2)^6; (1, 5): 2 * (1 + 6) / 64; (3, 3): 2 * 42/64 capped at 1
    assert stats.mcnemar_p(b, c) == pytest.approx(p)


def test_discordant_counts_pairs():
    a = [True, True, False, False, True]
    b = [True, False, True, True, False]
    assert stats.discordant(a, b) == (2, 2)
    with pytest.raises(ValueError, match="length"):
        stats.discordant([True], [True, False])


def test_bootstrap_mean_is_seeded_and_brackets_the_mean():
    values = [0, 1, 1, 0, 1, 1, 1, 0]
    m, lo, hi = stats.bootstrap_mean(values, seed=3)
    assert m == 0.625 and lo < m < hi
    assert stats.bootstrap_mean(values, seed=3) == (m, lo, hi)
    assert stats.bootstrap_mean([2.0, 2.0]) == (2.0, 2.0, 2.0)


def test_paired_bootstrap_difference():
    same = stats.paired_bootstrap([0, 1, 1], [0, 1, 1])
    assert same == {"diff": 0.0, "low": 0.0, "high": 0.0, "p": 1.0}
    # b gains on every pair: every resampled mean is 1 > 0, so p = 0
    up = stats.paired_bootstrap([0, 0, 0, 0], [1, 1, 1, 1])
    assert up["diff"] == 1.0 and up["p"] == 0.0
    mixed = stats.paired_bootstrap([0] * 10, [1, 0, 0, 0, 0, 0, 0, 0, 0, 0])
    assert mixed["diff"] == pytest.approx(0.1) and mixed["p"] > 0.05
    with pytest.raises(ValueError, match="pairs must match"):
        stats.paired_bootstrap([1], [1, 2])


def test_pairs_needed_mcnemar_connor():
    # d = 4/12, pd = 6/12: (1.95996*0.70711 + 0.84162*0.62361)^2 / (1/9) = 32.86 -> 33
    assert stats.pairs_needed_mcnemar(1, 5, 12) == 33
    assert stats.pairs_needed_mcnemar(2, 2, 12) is None
    with pytest.raises(ValueError):
        stats.pairs_needed_mcnemar(5, 5, 6)


def test_pairs_needed_mean_difference():
    # mean 0.5, sd 0.57735: (2.80158 * 0.57735 / 0.5)^2 = 10.47 -> 11
    assert stats.pairs_needed([1, 1, 0, 0]) == 11
    assert stats.pairs_needed([1, -1, 0, 0]) is None


def test_clustered_bootstrap_of_identical_states_is_the_per_game_bootstrap():
    # 5 games of 3 states each, the states of a game identical: resampling games draws
    # the same games as the per-game bootstrap with the same seed, so the same interval
    per_game = [1.0, 0.0, 1.0, 1.0, 0.0]
    states = [v for v in per_game for _ in range(3)]
    games = [g for g in "abcde" for _ in range(3)]
    assert stats.bootstrap_mean(states, seed=7, clusters=games) == pytest.approx(
        stats.bootstrap_mean(per_game, seed=7), abs=1e-12)
    # resampled as if independent, the 15 states give a narrower (too narrow) interval
    _, lo, hi = stats.bootstrap_mean(states, seed=7)
    _, clo, chi = stats.bootstrap_mean(states, seed=7, clusters=games)
    assert hi - lo < chi - clo
    a = [0.0] * 15
    assert stats.paired_bootstrap(a, states, seed=7, clusters=games) == pytest.approx(
        stats.paired_bootstrap([0.0] * 5, per_game, seed=7), abs=1e-12)


def test_clustered_bootstrap_weighs_games_by_their_states():
    # game x: 3 states won, game y: 1 state lost; the point is the state mean 3/4, and
    # every resample is a mix of whole games: 0 (y, y), 3/4 (x, y) or 1 (x, x)
    m, lo, hi = stats.bootstrap_mean([1, 1, 1, 0], clusters=["x", "x", "x", "y"], seed=1)
    assert m == 0.75 and lo == 0.0 and hi == 1.0
    assert stats.bootstrap_mean([4.0], clusters=["x"]) == (4.0, 4.0, 4.0)  # one game
    with pytest.raises(ValueError, match="one cluster"):
        stats.bootstrap_mean([1, 0], clusters=["x"])


def test_holm_hand_computed():
    # sorted 0.01, 0.02, 0.03, 0.2 times 4, 3, 2, 1 -> 0.04, 0.06, 0.06 (kept monotone), 0.2
    adjusted = stats.holm([0.03, 0.2, 0.01, 0.02])
    assert adjusted == pytest.approx([0.06, 0.2, 0.04, 0.06])
    assert [a < 0.05 for a in adjusted] == [False, False, True, False]
    assert stats.holm([0.5, 0.6]) == [1.0, 1.0]  # capped at 1
    assert stats.holm([]) == []
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        stats.holm([1.5])
