"""Statistics of paired-generator alignment sessions (latentopt.analysis.alignment, .alignment_dynamics).

Every statistic is compared with scipy on the same numbers (rtol 1e-10) and checked on small cases worked by
hand. Simulated threads: 40 trials per block, trial noise sd 1; a planted rise of 1 (in units of the trial sd)
over 20 blocks is a success in every one of 20 seeds, a flat thread succeeds in at most 10 % of 200 seeds (the
best-block selection inflates the nominal 1 %: about 3 % here). The temporal attribution recovers a planted
100-200 ms advantage to within one 10 ms bin.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from latentopt.analysis import (
    area_table,
    benjamini_hochberg,
    bin_trajectories,
    clopper_pearson,
    drop_short_last_block,
    evoked_trials,
    normalised_trajectories,
    paired_t,
    per_block_paired_tests,
    rebinned_edges,
    session_summary,
    temporal_attribution,
    thread_success,
    time_constant,
    universal_normaliser,
)
from latentopt.responses import evoked_response

RTOL = 1e-10


def _thread(rng: np.random.Generator, means: np.ndarray, trials: int = 40) -> list[np.ndarray]:
    """Per block ``trials`` evoked responses, normal around the block's mean with sd 1."""
    return [rng.normal(mean, 1.0, trials) for mean in means]


def _rising(blocks: int = 30, rise: float = 2.0) -> np.ndarray:
    """Block means 1 → 1 + rise over the first 20 blocks, then a plateau."""
    return 1.0 + rise * np.minimum(np.arange(blocks) / 20.0, 1.0)


# --- evoked responses --------------------------------------------------------------------------------------------

def test_evoked_trials_is_the_window_mean_minus_the_baseline_mean_for_2d_and_3d():
    edges = np.arange(0.0, 251.0, 10.0)  # bin i is [10 i, 10 i + 10)
    ramp = np.arange(25, dtype=float)[None, :] * np.array([[1.0], [2.0]])  # trial 1 is twice trial 0
    # by hand: bins 5..19 average 12, bins 0..3 (0-45 ms: [40, 50) straddles 45) average 1.5
    np.testing.assert_allclose(evoked_trials(ramp, edges), [10.5, 21.0], rtol=RTOL)
    np.testing.assert_allclose(evoked_trials(ramp, edges, baseline_ms=None), [12.0, 24.0], rtol=RTOL)
    np.testing.assert_allclose(evoked_trials(ramp, edges, window_ms=(100, 150), baseline_ms=(0, 50)),
                               [10.0, 20.0], rtol=RTOL)
    psth = np.random.default_rng(0).random((6, 3, 25))
    np.testing.assert_allclose(evoked_trials(psth, edges), evoked_response(psth, edges), rtol=RTOL)
    assert evoked_trials(psth, edges).shape == (6, 3)
    with pytest.raises(ValueError, match=r"psth must be \(n, time_bins\) or \(n, channels, time_bins\)"):
        evoked_trials(np.zeros(25), edges)


# --- dropping the last block -------------------------------------------------------------------------------------

def test_short_last_block_of_either_thread_drops_the_last_block_of_both():
    full, short = np.ones(12), np.r_[np.ones(9), np.nan, np.nan, np.nan]  # 9 finite images: short
    threads = {"A": [full, full, full], "B": [full, full, short]}
    kept = drop_short_last_block(threads)
    assert [len(v) for v in kept.values()] == [2, 2]
    assert len(threads["B"]) == 3  # the input is left alone
    assert [len(v) for v in drop_short_last_block(threads, min_images=9).values()] == [3, 3]
    assert [len(v) for v in drop_short_last_block({"A": [full] * 3, "B": [full] * 3}).values()] == [3, 3]


def test_threads_of_different_lengths_are_an_error_naming_them():
    with pytest.raises(ValueError, match=r"same number of blocks, got \{'A': 3, 'B': 2\}"):
        drop_short_last_block({"A": [np.ones(10)] * 3, "B": [np.ones(10)] * 2})


# --- success -----------------------------------------------------------------------------------------------------

def test_success_t_and_p_are_scipys_ttest_ind_of_the_best_pair_against_the_first_pair():
    rng = np.random.default_rng(1)
    blocks = _thread(rng, _rising())
    blocks[3][:5] = np.nan  # not shown: dropped
    result = thread_success(blocks)
    means = [np.nanmean(b) for b in blocks]
    best = int(np.argmax(means))
    start = min(best, len(blocks) - 3)
    top = np.concatenate([blocks[start], blocks[start + 1]])
    first = np.concatenate([blocks[0], blocks[1]])
    expected = stats.ttest_ind(top[np.isfinite(top)], first)
    assert (result.best_block, result.start) == (best, start)
    assert (result.n_first, result.n_best) == (80, int(np.isfinite(top).sum()))
    assert result.t == pytest.approx(expected.statistic, rel=RTOL)
    assert result.p == pytest.approx(expected.pvalue, rel=RTOL)
    assert result.success and result.t > 0 and result.p < 0.01


def test_planted_rise_succeeds_and_flat_threads_rarely_do():
    rising = [thread_success(_thread(np.random.default_rng(s), _rising(rise=1.0))).success for s in range(20)]
    flat = [thread_success(_thread(np.random.default_rng(100 + s), np.ones(30))).success for s in range(200)]
    assert all(rising)
    assert np.mean(flat) <= 0.10


def test_falling_thread_is_no_success_even_when_significant():
    blocks = _thread(np.random.default_rng(2), 3.0 - _rising())  # best block is block 0 or 1
    result = thread_success(blocks)
    assert not result.success and result.start in (0, 1)


def test_start_is_clamped_so_the_pair_never_holds_the_last_block():
    blocks = [np.array([0.0, 1.0]) + level for level in (0, 0, 0, 0, 5, 9)]  # best = last block (5)
    result = thread_success(blocks)
    assert (result.best_block, result.start) == (5, 3)  # blocks 3, 4 against 0, 1
    expected = stats.ttest_ind(np.r_[blocks[3], blocks[4]], np.r_[blocks[0], blocks[1]])
    assert result.t == pytest.approx(expected.statistic, rel=RTOL)
    blocks = [np.array([0.0, 1.0]) + level for level in (9, 0, 0, 0, 0)]  # best = block 0: compared with itself
    result = thread_success(blocks)
    assert (result.start, result.t, result.p, result.success) == (0, 0.0, 1.0, False)


def test_too_few_blocks_or_trials_give_no_success_and_nan():
    short = thread_success([np.ones(10), np.ones(10) + 1, np.ones(10) + 2])
    assert not short.success and np.isnan(short.t) and np.isnan(short.p) and short.best_block is None
    sparse = thread_success([np.array([1.0]), np.array([np.nan]), np.ones(5), np.ones(5) + 3, np.ones(5)])
    assert not sparse.success and np.isnan(sparse.t) and sparse.n_first == 1 and sparse.start == 2
    empty = thread_success([np.array([np.nan])] * 5)
    assert not empty.success and empty.best_block is None


# --- normalisation and time constants ----------------------------------------------------------------------------

def test_trajectories_share_one_maximum_or_each_their_own():
    threads = {"A": [np.array([1.0, 3.0]), np.array([4.0, np.nan])], "B": [np.array([8.0]), np.array([1.0])]}
    shared = normalised_trajectories(threads)  # block means A: 2, 4; B: 8, 1 → one maximum 8
    np.testing.assert_allclose(shared["A"], [0.25, 0.5], rtol=RTOL)
    np.testing.assert_allclose(shared["B"], [1.0, 0.125], rtol=RTOL)
    own = normalised_trajectories(threads, shared=False)
    np.testing.assert_allclose(own["A"], [0.5, 1.0], rtol=RTOL)
    np.testing.assert_allclose(own["B"], [1.0, 0.125], rtol=RTOL)
    negative = normalised_trajectories({"A": [np.array([-1.0]), np.array([-2.0])]})
    assert np.isnan(negative["A"]).all()


def test_time_constant_is_the_first_block_past_the_fraction_of_the_rise():
    trajectory = np.array([1.0, 2.0, 3.0, 8.0, 10.0, 11.0, 10.5])  # rise 0, 1, 2, 7, 9, 10, 9.5; max 10
    assert time_constant(trajectory) == 4  # first rise > 8
    assert time_constant(trajectory, fraction=0.632) == 3  # first rise > 6.32
    assert time_constant(trajectory / 11.0) == 4  # scale free
    assert time_constant(np.array([3.0, 2.0, 1.0])) is None  # never rises
    assert time_constant(np.array([np.nan, 1.0, 2.0])) is None
    with pytest.raises(ValueError, match="fraction must be in"):
        time_constant(trajectory, fraction=1.0)


# --- intervals and tests -----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("k", "n"), [(0, 10), (10, 10), (37, 38), (20, 38), (67, 106), (1, 1), (0, 1), (5, 13)])
def test_clopper_pearson_is_scipys_exact_binomial_interval(k, n):
    expected = stats.binomtest(k, n).proportion_ci(confidence_level=0.9, method="exact")
    lo, hi = clopper_pearson(k, n)
    assert lo == pytest.approx(expected.low, rel=RTOL, abs=1e-15)
    assert hi == pytest.approx(expected.high, rel=RTOL)
    assert (lo == 0.0) == (k == 0) and (hi == 1.0) == (k == n)


def test_clopper_pearson_rejects_impossible_counts():
    for k, n in [(3, 2), (-1, 5), (0, 0), (1.5, 3), (1, 2.5)]:
        with pytest.raises(ValueError, match="clopper_pearson needs integers"):
            clopper_pearson(k, n)


def test_paired_t_is_ttest_rel_on_pairs_finite_in_both():
    rng = np.random.default_rng(3)
    a, b = rng.normal(0.3, 1.0, 30), rng.normal(0.0, 1.0, 30)
    a[2], b[7] = np.nan, np.inf
    keep = np.isfinite(a) & np.isfinite(b)
    expected = stats.ttest_rel(a[keep], b[keep])
    t, p, n = paired_t(a, b)
    assert n == 28
    assert t == pytest.approx(expected.statistic, rel=RTOL) and p == pytest.approx(expected.pvalue, rel=RTOL)
    assert np.isnan(paired_t([1.0, np.nan], [2.0, 3.0])[0])


def test_benjamini_hochberg_by_hand_and_against_scipy():
    # sorted 0.005, 0.01, 0.03, 0.04 → × 4 / rank: 0.02, 0.02, 0.04, 0.04 (already monotone)
    rejected, adjusted = benjamini_hochberg([0.01, 0.04, 0.03, 0.005])
    np.testing.assert_allclose(adjusted, [0.02, 0.04, 0.04, 0.02], rtol=RTOL)
    assert rejected.all()
    np.testing.assert_array_equal(benjamini_hochberg([0.01, 0.04, 0.03, 0.005], alpha=0.03)[0],
                                  [True, False, False, True])
    # step-up: 0.02 > 0.05 / 3 alone, yet rejected because 0.03 <= 2 · 0.05 / 3
    rejected, adjusted = benjamini_hochberg([0.02, 0.03, 0.5])
    np.testing.assert_allclose(adjusted, [0.045, 0.045, 0.5], rtol=RTOL)
    np.testing.assert_array_equal(rejected, [True, True, False])
    # NaN: left out of m, never rejected
    rejected, adjusted = benjamini_hochberg([0.02, np.nan, 0.03, 0.5])
    np.testing.assert_allclose(adjusted, [0.045, np.nan, 0.045, 0.5], rtol=RTOL)
    np.testing.assert_array_equal(rejected, [True, False, True, False])
    p = np.random.default_rng(4).random(50) ** 3
    np.testing.assert_allclose(benjamini_hochberg(p)[1], stats.false_discovery_control(p, method="bh"), rtol=RTOL)
    with pytest.raises(ValueError, match=r"p values must lie in \[0, 1\]"):
        benjamini_hochberg([0.5, 1.2])


# --- sessions and areas ------------------------------------------------------------------------------------------

def test_session_summary_of_a_texture_aligned_session():
    rng = np.random.default_rng(5)
    threads = {"DeePSim": _thread(rng, _rising(31)), "BigGAN": _thread(rng, np.full(31, 1.5))}
    threads["BigGAN"][-1] = threads["BigGAN"][-1][:6]  # 6 images in the last block: dropped from both
    summary = session_summary(threads)
    deepsim, biggan = summary["DeePSim"], summary["BigGAN"]
    assert deepsim.blocks == biggan.blocks == 30 and deepsim.valid
    assert deepsim.success and not biggan.success
    trajectories = normalised_trajectories(drop_short_last_block(threads))
    assert deepsim.last_norm == trajectories["DeePSim"][-1] and biggan.first_norm == trajectories["BigGAN"][0]
    assert max(trajectories["DeePSim"].max(), trajectories["BigGAN"].max()) == 1.0
    expected = thread_success(threads["DeePSim"][:30])
    assert (deepsim.t, deepsim.p) == (expected.t, expected.p)
    # the plateau starts at block 20; 80 % of the rise is reached near block 16 (noise moves it by a few)
    assert deepsim.time_constant is not None and 12 <= deepsim.time_constant <= 20
    short = session_summary({name: blocks[:15] for name, blocks in threads.items()})
    assert [s.blocks for s in short.values()] == [15, 15] and all(s.valid for s in short.values())
    shorter = session_summary({name: blocks[:14] for name, blocks in threads.items()})
    assert not any(s.valid for s in shorter.values())


def _rows() -> list[dict]:
    """Three V1 sessions and four IT sessions (one IT session lacks BigGAN, one is invalid)."""
    rows = []
    v1 = [("s1", True, False, 0.9, 0.5, 0.3, 0.4), ("s2", True, False, 0.8, 0.4, 0.2, 0.5),
          ("s3", False, False, 0.7, 0.6, 0.1, 0.3)]
    it = [("s4", True, True, 0.7, 0.9, 0.2, 0.4), ("s5", False, True, 0.5, 0.8, 0.3, 0.3),
          ("s6", True, False, 0.9, 0.6, 0.1, 0.2), ("s8", False, False, 0.5, 0.2, 0.1, 0.1)]
    for area, sessions in (("V1", v1), ("IT", it)):
        for session, win_a, win_b, last_a, last_b, first_a, first_b in sessions:
            rows.append(dict(area=area, generator="DeePSim", session=session, success=win_a, last_norm=last_a,
                             first_norm=first_a))
            rows.append(dict(area=area, generator="BigGAN", session=session, success=win_b, last_norm=last_b,
                             first_norm=first_b))
    rows.append(dict(area="IT", generator="DeePSim", session="s7", success=True, last_norm=1.0, first_norm=0.2))
    rows.append(dict(area="IT", generator="DeePSim", session="s9", success=True, last_norm=1.0, first_norm=0.2,
                     valid=False))
    return rows


def test_area_table_counts_intervals_and_paired_tests():
    v1, it = area_table(_rows(), generators=("DeePSim", "BigGAN"))
    assert (v1["area"], v1["DeePSim_successes"], v1["DeePSim_sessions"], v1["BigGAN_successes"]) == ("V1", 2, 3, 0)
    assert (it["DeePSim_successes"], it["DeePSim_sessions"], it["BigGAN_successes"], it["BigGAN_sessions"]) == (
        3, 5, 2, 4)
    interval = stats.binomtest(3, 5).proportion_ci(confidence_level=0.9, method="exact")
    assert it["DeePSim_ci_lo"] == pytest.approx(interval.low, rel=RTOL)
    assert it["DeePSim_ci_hi"] == pytest.approx(interval.high, rel=RTOL)
    assert v1["BigGAN_ci_lo"] == 0.0 and it["DeePSim_rate"] == pytest.approx(0.6)
    # paired over sessions with both generators where either succeeded: V1 s1, s2; IT s4, s5, s6 (s7 has no pair)
    expected = stats.ttest_rel([0.7, 0.5, 0.9], [0.9, 0.8, 0.6])
    assert it["last_n"] == 3 and it["last_t"] == pytest.approx(expected.statistic, rel=RTOL)
    assert it["last_p"] == pytest.approx(expected.pvalue, rel=RTOL)
    expected = stats.ttest_rel([0.3, 0.2], [0.4, 0.5])
    assert v1["first_n"] == 2 and v1["first_t"] == pytest.approx(expected.statistic, rel=RTOL)
    every = area_table(_rows(), generators=("DeePSim", "BigGAN"), pairs="all")[1]
    expected = stats.ttest_rel([0.7, 0.5, 0.9, 0.5], [0.9, 0.8, 0.6, 0.2])
    assert every["last_n"] == 4 and every["last_t"] == pytest.approx(expected.statistic, rel=RTOL)
    both = area_table(_rows(), generators=("DeePSim", "BigGAN"), pairs="both_success")
    assert both[1]["last_n"] == 1 and np.isnan(both[1]["last_t"]) and both[0]["last_n"] == 0


def test_area_table_rejects_bad_rows_naming_them():
    rows = _rows()
    with pytest.raises(ValueError, match=r"row 0: generator 'DeePSim' is not one of \('fc6', 'BigGAN'\)"):
        area_table(rows, generators=("fc6", "BigGAN"))
    with pytest.raises(ValueError, match="row 1 lacks last_norm"):
        area_table([rows[0], {k: v for k, v in rows[1].items() if k != "last_norm"}], generators=("DeePSim", "BigGAN"))
    with pytest.raises(ValueError, match="row 1: session 's1' appears twice"):
        area_table([rows[0], rows[0]], generators=("DeePSim", "BigGAN"))


# --- dynamics ----------------------------------------------------------------------------------------------------

def test_bin_trajectories_average_recorded_bins_weighted_by_width():
    edges = np.array([0.0, 5.0, 10.0, 20.0, 25.0, 30.0, 40.0])  # widths 5, 5, 10, 5, 5, 10
    trials = np.array([[1.0, 3.0, 4.0, 6.0, 8.0, 2.0], [3.0, 5.0, 6.0, 8.0, 10.0, np.nan]])  # trial 1 dropped
    binned = bin_trajectories({"A": [trials, trials[:1] + 1.0]}, edges, bin_ms=10, span_ms=(0, 40))
    np.testing.assert_allclose(binned["A"], [[2.0, 4.0, 7.0, 2.0], [3.0, 5.0, 8.0, 3.0]], rtol=RTOL)
    twenty = bin_trajectories({"A": [trials]}, edges, bin_ms=20, span_ms=(0, 40))["A"]
    np.testing.assert_allclose(twenty, [[(1 * 5 + 3 * 5 + 4 * 10) / 20, (6 * 5 + 8 * 5 + 2 * 10) / 20]], rtol=RTOL)
    np.testing.assert_allclose(rebinned_edges(bin_ms=25, span_ms=(0, 200)), np.arange(0, 201, 25))
    empty = bin_trajectories({"A": [np.full((2, 6), np.nan)]}, edges, span_ms=(0, 40))["A"]
    assert empty.shape == (1, 4) and np.isnan(empty).all()


def test_bins_the_recording_does_not_tile_are_an_error_naming_both():
    edges = np.arange(0.0, 201.0, 10.0)
    with pytest.raises(ValueError, match=r"bins of 25 ms over \[0, 200\] ms are not tiled by the recorded bins "
                                         r"\(edges \[0, 10, 20, \.\.\., 180, 190, 200\] ms\): no recorded edge at 25"):
        bin_trajectories({"A": [np.zeros((3, 20))]}, edges, bin_ms=25)
    with pytest.raises(ValueError, match=r"not a whole number of 30 ms bins"):
        bin_trajectories({"A": [np.zeros((3, 20))]}, edges, bin_ms=30)
    with pytest.raises(ValueError, match=r"thread 'A' block 0: PSTH must be \(trials, 20\)"):
        bin_trajectories({"A": [np.zeros((3, 19))]}, edges)


def test_universal_normaliser_is_the_largest_evoked_block_mean_of_both_threads():
    edges = np.arange(0.0, 201.0, 10.0)
    base = np.full(20, 2.0)  # baseline bins 0..3 (0-45 ms) stay at 2
    a = [np.tile(base, (3, 1)), np.tile(np.r_[base[:5], np.full(15, 6.0)], (3, 1))]  # evoked 0, 4
    b = [np.tile(np.r_[base[:5], np.full(15, 9.0)], (2, 1)), np.tile(base, (2, 1))]  # evoked 7, 0
    b[0][1, 7] = np.nan  # a trial not shown: dropped, the other trial still gives 7
    assert universal_normaliser({"A": a, "B": b}, edges) == pytest.approx(7.0, rel=RTOL)
    assert universal_normaliser({"A": a, "B": b}, edges, baseline_ms=None) == pytest.approx(
        (2 * 0 + 9 * 15) / 15, rel=RTOL)


def test_per_block_paired_tests_are_ttest_rel_per_block_with_bh_across_blocks():
    rng = np.random.default_rng(6)
    a = rng.normal(0.0, 1.0, (25, 12)) + np.linspace(0.0, 1.5, 12)
    b = rng.normal(0.0, 1.0, (25, 12))
    a[3, 5] = np.nan
    t, p, rejected = per_block_paired_tests(a, b)
    for j in range(12):
        keep = np.isfinite(a[:, j])
        expected = stats.ttest_rel(a[keep, j], b[keep, j])
        assert t[j] == pytest.approx(expected.statistic, rel=RTOL) and p[j] == pytest.approx(expected.pvalue, rel=RTOL)
    np.testing.assert_array_equal(rejected, stats.false_discovery_control(p, method="bh") <= 0.05)
    assert rejected[-1] and not rejected[0]


def test_temporal_attribution_finds_a_planted_late_advantage_within_one_bin():
    rng = np.random.default_rng(7)
    edges = rebinned_edges()  # 20 bins of 10 ms, 0-200 ms
    centres = (edges[:-1] + edges[1:]) / 2
    sessions = rng.normal(1.0, 0.3, (40, 1))  # shared per-session level
    a = sessions + rng.normal(0.0, 0.2, (40, 20))
    b = sessions + rng.normal(0.0, 0.2, (40, 20)) + 0.3 * (centres >= 100)
    result = temporal_attribution(a, b, edges)
    assert result.advantage_a_ms == []
    assert len(result.advantage_b_ms) == 1
    start, end = result.advantage_b_ms[0]
    assert abs(start - 100) <= 10 and abs(end - 200) <= 10
    swapped = temporal_attribution(b, a, edges)
    assert swapped.advantage_a_ms == result.advantage_b_ms and swapped.advantage_b_ms == []
    expected = stats.ttest_rel(a[:, 15], b[:, 15])
    assert result.t[15] == pytest.approx(expected.statistic, rel=RTOL)
    with pytest.raises(ValueError, match="20 time bins need 21 bin edges, got 20"):
        temporal_attribution(a, b, edges[:-1])
