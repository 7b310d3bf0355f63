"""Contract suite for the sequential detectors, over the registry as client code sees it."""

from __future__ import annotations

import numpy as np
import pytest

from driftloop.drift.sequential import ADWIN, CUSUM, DDM, DETECTORS, PageHinkley, make_detector

CHANGE = 2000  # position of the change in the detection tests
SEEDS = range(5)

# Parameters for numeric streams of unit variance, where a detector's defaults are in other units.
NUMERIC_PARAMS = {"page_hinkley": {"delta": 0.5, "threshold": 50.0}}

INVALID = {
    "adwin": [("delta", 0.0), ("delta", 1.5), ("clock", 0), ("max_buckets", 1)],
    "page_hinkley": [("mode", "sideways"), ("threshold", -1.0), ("alpha", 0.0), ("min_instances", 0)],
    "ddm": [("warm_start", 0), ("warning_threshold", 0.0), ("drift_threshold", 1.0)],
    "cusum": [("false_alarms_per_10k", 0.0), ("k", -0.5), ("mode", "x"), ("distribution", "poisson"), ("warm_up", 10**6), ("std", 0.0)],
}


def error_bits(seed: int, n: int, p: float) -> list[int]:
    return (np.random.default_rng(seed).random(n) < p).astype(int).tolist()


def shifted_bits(seed: int) -> list[int]:
    rng = np.random.default_rng(seed)
    return np.r_[rng.random(CHANGE) < 0.1, rng.random(CHANGE) < 0.4].astype(int).tolist()


def shifted_scores(seed: int) -> list[float]:
    rng = np.random.default_rng(seed)
    return np.r_[rng.normal(0, 1, CHANGE), rng.normal(1, 1, CHANGE)].tolist()


def numeric(name: str):
    if DETECTORS[name].binary_input:
        pytest.skip(f"{name} reads error bits only")
    return DETECTORS[name](**NUMERIC_PARAMS.get(name, {}))


def ids(suffix):
    return [f"{name}-{suffix}" for name in DETECTORS]


@pytest.mark.parametrize("name", list(DETECTORS), ids=ids("rare-alarms-stationary-error-bits"))
def test_rare_alarms_on_stationary_error_bits(name):
    alarms = sum(len(DETECTORS[name]().update_many(error_bits(seed, 20_000, 0.1))) for seed in SEEDS)
    assert alarms / (20_000 * len(SEEDS)) * 10_000 <= 2.0


@pytest.mark.parametrize("name", list(DETECTORS), ids=ids("rare-alarms-stationary-scores"))
def test_rare_alarms_on_stationary_scores(name):
    numeric(name)
    alarms = sum(len(numeric(name).update_many(np.random.default_rng(seed).normal(0, 1, 20_000).tolist())) for seed in SEEDS)
    assert alarms / (20_000 * len(SEEDS)) * 10_000 <= 2.0


def detected_within(detector_factory, streams, bound):
    """Delay of the first alarm after the change on each stream with no alarm before it (``None``: missed).

    A stream whose pre-change part raised a (rare, separately tested) false alarm is
    left out: a detector that re-learns its reference after an alarm may still be
    learning when the change comes.
    """
    delays = []
    for stream in streams:
        alarms = detector_factory().update_many(stream)
        if any(i < CHANGE for i in alarms):
            continue
        after = [i - CHANGE for i in alarms]
        delays.append(after[0] if after and after[0] <= bound else None)
    return delays


@pytest.mark.parametrize("name", list(DETECTORS), ids=ids("detects-error-rate-0.1-to-0.4"))
def test_detects_error_rate_increase(name):
    delays = detected_within(DETECTORS[name], [shifted_bits(seed) for seed in range(10)], bound=300)
    assert len(delays) >= 5 and None not in delays, delays


@pytest.mark.parametrize("name", list(DETECTORS), ids=ids("detects-1-sigma-mean-shift"))
def test_detects_mean_shift(name):
    numeric(name)
    delays = detected_within(lambda: numeric(name), [shifted_scores(seed) for seed in range(10)], bound=300)
    assert len(delays) >= 5 and None not in delays, delays


@pytest.mark.parametrize("name", list(DETECTORS), ids=ids("update-returns-self-flag-only-on-trigger"))
def test_flag_only_on_the_triggering_sample(name):
    detector = DETECTORS[name]()
    flags = [detector.update(x).drift_detected for x in shifted_bits(0)]
    assert detector.update(0) is detector
    alarms = [i for i, flag in enumerate(flags) if flag]
    assert alarms and alarms == DETECTORS[name]().update_many(shifted_bits(0))


@pytest.mark.parametrize("name", list(DETECTORS), ids=ids("reset-forgets-the-stream"))
def test_reset(name):
    detector = DETECTORS[name]()
    detector.update_many(shifted_bits(1)[: CHANGE + 150])
    assert detector.reset() is detector and not detector.drift_detected
    assert detector.update_many(shifted_bits(2)) == DETECTORS[name]().update_many(shifted_bits(2))


@pytest.mark.parametrize("name", list(DETECTORS), ids=ids("state-json-round-trip-resumes-the-stream"))
def test_state_round_trip_resumes_the_stream(name):
    import json

    stream = shifted_bits(3)
    detector = DETECTORS[name]()
    detector.update_many(stream[: CHANGE - 500])
    state = json.loads(json.dumps(detector.state_dict()))
    resumed = DETECTORS[name](**detector.params()).load_state_dict(state)
    assert resumed.update_many(stream[CHANGE - 500:]) == detector.update_many(stream[CHANGE - 500:])
    with pytest.raises(ValueError, match="lacks"):
        DETECTORS[name]().load_state_dict({})


def test_adwin_refuses_a_window_it_cannot_read_and_keeps_a_fresh_one():

    detector = ADWIN()
    state = {**detector.state_dict(), "window": "Z2FyYmFnZQ=="}  # 'garbage'
    with pytest.raises(ValueError, match="not readable"):
        detector.load_state_dict(state)
    with pytest.raises(ValueError, match="River"):
        detector.load_state_dict({**state, "river": "0.0.1"})
    assert detector.width == 0 and detector.update_many(shifted_bits(4)) == ADWIN().update_many(shifted_bits(4))


@pytest.mark.parametrize(
    ("name", "param", "value"),
    [(name, param, value) for name, cases in INVALID.items() for param, value in cases],
    ids=[f"{name}-invalid-{param}" for name, cases in INVALID.items() for param, _ in cases],
)
def test_invalid_parameters_name_the_parameter_and_valid_values(name, param, value):
    with pytest.raises(ValueError, match=rf"'{param}'.*Valid values|'{param}'.*give both") as error:
        DETECTORS[name](**{param: value})
    assert param in str(error.value)


def test_registry_lists_valid_names():
    assert set(INVALID) == set(DETECTORS)
    with pytest.raises(ValueError, match=r"Valid values are: \['adwin', 'page_hinkley', 'ddm', 'cusum'\]"):
        make_detector("kswin")
    assert isinstance(make_detector("ddm", warm_start=50), DDM)


def test_ddm_reads_error_bits_only():
    with pytest.raises(ValueError, match=r"Valid values are: \[0, 1\]"):
        DDM().update(0.5)


def test_ddm_differs_from_river_only_where_river_alarms_on_an_error_free_start():
    """River's DDM sets s_min = 0 on a clean start and alarms on the first error; ours waits for evidence."""
    from river.drift.binary import DDM as RiverDDM

    def river_alarms(stream) -> list[int]:
        river = RiverDDM()
        return [i for i, x in enumerate(stream) if river.update(x) is None and river.drift_detected]

    clean_start = [0] * 100 + [1] + [0] * 100
    assert river_alarms(clean_start) == [100] and DDM().update_many(clean_start) == []
    rising = shifted_bits(1)
    assert DDM().update_many(rising) == river_alarms(rising) != []


def test_adwin_matches_river_alarm_for_alarm():
    """River is a drop-in baseline: same API, and ADWIN's alarms on the same streams, a rise and a fall.

    Alarm by alarm, with `update` and `update_many`, and again after `reset`.
    """
    from river import drift as river_drift

    for seed in (0, 3):
        rng = np.random.default_rng(seed)
        stream = np.r_[shifted_bits(seed), (rng.random(3000) < 0.05).astype(int)]
        river = river_drift.ADWIN()
        river_alarms = [i for i, x in enumerate(stream) if river.update(int(x)) is None and river.drift_detected]
        assert len(river_alarms) >= 2
        ours = ADWIN()
        assert [i for i, x in enumerate(stream) if ours.update(x).drift_detected] == river_alarms
        assert ours.reset().update_many(stream) == river_alarms


@pytest.mark.parametrize(
    ("rate", "stream", "make"),
    [
        (rate, stream, make)
        for rate in (1.0, 10.0)
        for stream, make in (
            ("normal-known-reference", lambda r: CUSUM(r, mean=0.0, std=1.0)),
            ("normal-warm-up", lambda r: CUSUM(r)),
            ("bits-p0.1-warm-up", lambda r: CUSUM(r, mode="up")),
            ("bits-p0.3-known-rate", lambda r: CUSUM(r, mean=0.3, distribution="bernoulli")),
        )
    ],
    ids=lambda v: f"{v:g}-per-10k" if isinstance(v, float) else (v if isinstance(v, str) else ""),
)
def test_cusum_false_alarm_rate_matches_setting(rate, stream, make):
    """Measured alarms per 10k on i.i.d. in-control streams within a factor 2 of the setting."""
    n = 600_000 if rate == 1.0 else 100_000  # about 60 and 100 expected alarms
    rng = np.random.default_rng(2024)
    if stream.startswith("normal"):
        xs = rng.normal(0.0, 1.0, n)
    else:
        xs = (rng.random(n) < (0.1 if "p0.1" in stream else 0.3)).astype(float)
    measured = len(make(rate).update_many(xs.tolist())) / n * 10_000
    assert rate / 2 <= measured <= rate * 2, measured


def test_cusum_threshold_matches_known_arl():
    """Siegmund's formula: h = 4, k = 0.5 has ARL0 of about 336 (Montgomery's tables)."""
    from driftloop.drift.sequential.cusum import siegmund_arl

    assert siegmund_arl(4.0, 0.5) == pytest.approx(336, rel=0.02)
    assert CUSUM(10_000 / 336, k=0.5, mean=0.0, std=1.0, mode="up").threshold_up_ == pytest.approx(4.0, abs=0.02)


def test_page_hinkley_mode_up_ignores_decreases():
    rng = np.random.default_rng(0)
    falling = np.r_[rng.normal(0, 1, CHANGE), rng.normal(-2, 1, CHANGE)].tolist()
    assert PageHinkley(mode="up", delta=0.5).update_many(falling) == []
    assert PageHinkley(mode="down", delta=0.5).update_many(falling)
