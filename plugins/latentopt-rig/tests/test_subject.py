"""The rig subject: channels and areas, PSTH windows, policies, and what reaches the run records."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from latentopt.checks import ConfigError
from latentopt.records import load_generation, load_run
from latentopt_rig.drill import FAST_WAIT, rig_evolution
from latentopt_rig.exchange import stimulus_id
from latentopt_rig.formats import TrialResponses, encode_responses
from latentopt_rig.subject import RigSubject


def write_response(folder: Path, label: str, trials: TrialResponses, fmt: str = "npz") -> None:
    suffix = {"npz": ".npz", "mat73": ".mat", "csv": ".csv"}[fmt]
    (folder / f"block{label}{suffix}").write_bytes(encode_responses(trials, fmt))


def test_channels_areas_and_mean(tmp_path: Path) -> None:
    table = tmp_path / "areas.csv"
    table.write_text("channel,area\n0,V1\n1,V4\n2,PIT\n3,PIT\n")
    subject = RigSubject(exchange=tmp_path / "x", protocol="native", n_channels=4, channel_areas=str(table),
                         area="PIT", combine="mean", **FAST_WAIT)
    assert subject.channels == [2, 3] and subject.channel_names == ["mean(ch2:PIT,ch3:PIT)"]
    trials = TrialResponses([stimulus_id(subject.session, "ref_a")], np.array([[1.0, 2.0, 3.0, 5.0]]))
    write_response(subject.exchange, "000", trials)
    responses = subject.respond(torch.zeros(1, 3, 8, 8), image_ids=["ref_a"], rng=np.random.default_rng(0))
    np.testing.assert_allclose(responses, [[4.0]])
    with pytest.raises(ValueError, match=r"not in 0\.\.3"):
        RigSubject(exchange=tmp_path / "y", n_channels=4, channels=[7])
    with pytest.raises(ValueError, match="no selected channel"):
        RigSubject(exchange=tmp_path / "z", n_channels=4, channel_areas=str(table), area="IT")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"protocol": "matlab"}, r"^subject\.protocol must be one of xdream, native, got 'matlab'$"),
    ({"combine": "max"}, r"^subject\.combine must be one of separate, mean, got 'max'$"),
    ({"not_shown": "skip"}, r"^subject\.not_shown must be one of requeue, nan, got 'skip'$"),
    ({"on_timeout": "never"}, r"^subject\.on_timeout must be one of stop, wait, got 'never'$"),
    ({"n_channels": "4"}, r"^subject\.n_channels must be an integer, got '4'$"),
    ({"n_channels": 0}, r"^subject\.n_channels must be in \[1, 4096\], got 0$"),
    ({"requeue_attempts": -1}, r"^subject\.requeue_attempts must be >= 0, got -1$"),
    ({"png_compression": 12}, r"^subject\.png_compression must be in \[0, 9\], got 12$"),
    ({"max_file_mb": 0}, r"^subject\.max_file_mb must be > 0, got 0$"),
    ({"poll_s": "fast"}, r"^subject\.poll_s must be a finite number, got 'fast'$"),
    ({"settle_s": -0.1}, r"^subject\.settle_s must be >= 0, got -0\.1$"),
    ({"response_window_ms": [200, 50]}, r"^subject\.response_window_ms: the start must be before the end"),
    ({"baseline_window_ms": [0]}, r"^subject\.baseline_window_ms must be \[start, end\] in ms, got \[0\]$"),
    ({"channels": [0, "x"]}, r"^subject\.channels must be an integer, got 'x'$"),
    ({"channels": "first"}, r"^subject\.channels: 'all', an index or a list of indices, got 'first'$"),
    ({"channel_areas": 3}, r"^subject\.channel_areas must be the path of a CSV file, got 3$"),
])
def test_bad_subject_values_are_config_errors_naming_the_key(tmp_path: Path, kwargs, message) -> None:
    """Every key is checked before the exchange folder is created or inspected."""
    with pytest.raises(ConfigError, match=message):
        RigSubject(exchange=tmp_path / "x", **kwargs)
    assert not (tmp_path / "x").exists()


def test_bad_exchange_and_area_table_are_config_errors(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    with pytest.raises(ConfigError, match=r"^subject\.exchange: cannot use .*file/sub as the exchange folder"):
        RigSubject(exchange=tmp_path / "file" / "sub")
    with pytest.raises(ConfigError, match=r"^subject\.exchange must be a folder path, got 5$"):
        RigSubject(exchange=5)  # type: ignore[arg-type]
    table = tmp_path / "areas.csv"
    table.write_text("channel,area\n0,V1\nfour,V4\n")
    with pytest.raises(ConfigError, match=r"^subject\.channel_areas: .*areas\.csv line 3: expected <channel index>"):
        RigSubject(exchange=tmp_path / "x", n_channels=4, channel_areas=str(table))
    table.write_text("channel,area\n0,V1\n0,V4\n")
    with pytest.raises(ConfigError, match=r"^subject\.channel_areas: .*areas\.csv lists channel 0 twice$"):
        RigSubject(exchange=tmp_path / "x", n_channels=4, channel_areas=str(table))
    with pytest.raises(ConfigError, match=r"^subject\.channel_areas: no file at .*nowhere\.csv$"):
        RigSubject(exchange=tmp_path / "x", channel_areas=str(tmp_path / "nowhere.csv"))


def test_psth_uses_response_minus_baseline_window(tmp_path: Path) -> None:
    """10-ms bins, 1 spike per bin before 50 ms, 3 after: (300 - 100) spikes/s."""
    subject = RigSubject(exchange=tmp_path, protocol="native", **FAST_WAIT)
    subject.start_block(4)  # generation 4 is this session's first block: 000
    edges = np.arange(0.0, 251.0, 10.0)
    counts = np.where(edges[:-1] >= 50, 3.0, 1.0)[None, None, :].repeat(2, axis=0)
    write_response(tmp_path, "000", TrialResponses([stimulus_id(subject.session, "a_1")] * 2, counts, edges),
                   fmt="csv")
    responses = subject.respond(torch.zeros(1, 3, 8, 8), image_ids=["a_1"], rng=np.random.default_rng(0))
    np.testing.assert_allclose(responses, [[200.0]])
    extras = subject.block_extras()
    np.testing.assert_array_equal(extras["attempt_0"]["trials"]["values"], counts)  # raw bins kept
    assert extras["shown"] == 1 and extras["attempts"] == 1


def test_nan_policy_scores_missing_images_nan_and_lists_them(tmp_path: Path) -> None:
    subject = RigSubject(exchange=tmp_path, not_shown="nan", **FAST_WAIT)
    write_response(tmp_path, "000", TrialResponses([f"block000_000_{subject.session}_a_1"], np.array([[7.0]])),
                   fmt="mat73")
    responses = subject.respond(torch.zeros(2, 3, 8, 8), image_ids=["a_1", "b_2"], rng=np.random.default_rng(0))
    np.testing.assert_array_equal(responses[:, 0], [7.0, np.nan])
    assert list(subject.block_extras()["not_shown"]) == ["b_2"]
    assert not (tmp_path / "block001.manifest.json").exists()


def test_requeue_gives_up_after_the_stated_attempts(tmp_path: Path) -> None:
    subject = RigSubject(exchange=tmp_path, requeue_attempts=1, **FAST_WAIT)
    for label in ("000", "001"):  # the re-queue goes to the next block number
        write_response(tmp_path, label, TrialResponses([stimulus_id(subject.session, "a_1")], np.array([[np.nan]])),
                       fmt="mat73")
    responses = subject.respond(torch.zeros(1, 3, 8, 8), image_ids=["a_1"], rng=np.random.default_rng(0))
    extras = subject.block_extras()
    assert np.isnan(responses).all() and extras["attempts"] == 2
    assert list(extras["requeued"]) == ["a_1"] and list(extras["not_shown"]) == ["a_1"]
    assert list(extras["blocks"]) == [0, 1] and extras["generation"] == 0


def test_wrong_channel_count_is_archived_and_requeued(tmp_path: Path) -> None:
    subject = RigSubject(exchange=tmp_path, n_channels=2, **FAST_WAIT)
    name = stimulus_id(subject.session, "a_1")
    write_response(tmp_path, "000", TrialResponses([name], np.array([[1.0, 2.0, 3.0]])), fmt="mat73")
    write_response(tmp_path, "001", TrialResponses([name], np.array([[1.0, 2.0]])), fmt="mat73")
    responses = subject.respond(torch.zeros(1, 3, 8, 8), image_ids=["a_1"], rng=np.random.default_rng(0))
    extras = subject.block_extras()
    np.testing.assert_array_equal(responses, [[1.0, 2.0]])
    assert extras["attempt_0"]["status"] == "unusable" and "3 channels" in extras["attempt_0"]["error"]
    assert set(extras["files"]) == {"block000.mat", "block001.mat"}


def test_records_hold_archived_files_unknown_ids_and_both_threads(tmp_path: Path, sim_factory) -> None:
    exchange, run_dir = tmp_path / "exchange", tmp_path / "run"
    sim_factory(exchange, protocol="native", fmt="h5", psth=True, faults=["unknown@1"])
    evolution = rig_evolution(run_dir, exchange, generations=2, names=("deepsim", "biggan"), protocol="native")
    results = evolution.run()
    run = load_run(run_dir)
    assert set(run.threads) == {"deepsim", "biggan"} and len(run.subject) == 2
    for g, result in enumerate(results):
        gen = load_generation(run_dir, g)
        archived = gen["subject"]["files"][f"block{g:03d}.h5"]
        assert archived == (exchange / f"block{g:03d}.h5").read_bytes()
        assert gen["subject"]["attempt_0"]["trials"]["values"].ndim == 3  # raw PSTH bins
        owners = gen["block"]["thread"]
        assert (owners == 0).sum() == 8 and (owners == 1).sum() == 8 and (owners == -1).sum() == 2
        assert result.images_shown == 18
    assert "../../../etc/passwd" in set(run.subject[1]["unknown_ids"])


@pytest.mark.parametrize("fmt", ["npz", "mat73", "csv"])
def test_unequal_repeats_average_exactly_the_valid_trials(fmt: str, tmp_path: Path) -> None:
    """ref_a shown 3 times, ref_b once, ref_c twice with one NaN trial (an aborted trial), in shuffled order."""
    subject = RigSubject(exchange=tmp_path, protocol="native", n_channels=2, requeue_attempts=0, **FAST_WAIT)
    ids = ["ref_a", "ref_c", "ref_b", "ref_a", "ref_c", "ref_a"]
    values = np.array([[1.0, 10.0], [np.nan, np.nan], [7.0, -2.0], [2.5, 20.0], [4.0, 0.5], [6.25, 33.0]])
    named = [stimulus_id(subject.session, i) for i in ids]
    write_response(subject.exchange, "000", TrialResponses(named, values), fmt)
    responses = subject.respond(torch.zeros(3, 3, 8, 8), image_ids=["ref_a", "ref_b", "ref_c"],
                                rng=np.random.default_rng(0))
    expected = np.array([[(1.0 + 2.5 + 6.25) / 3, (10.0 + 20.0 + 33.0) / 3], [7.0, -2.0], [4.0, 0.5]])
    np.testing.assert_array_equal(responses, expected)
    assert subject.block_extras()["shown"] == 3 and len(subject.block_extras()["not_shown"]) == 0
