"""Visuals that read right on short runs: recorded frames of a watchable size, MP4s written without
a library's warning, learning curves with a point per evaluation, a caveat on importances drawn
from few trials."""

import logging
import warnings

import numpy as np
import pytest

from recurrent_rl.runs.evaluation import MIN_SIDE, save_video, scale_frame


@pytest.mark.parametrize(
    ("shape", "expected"),
    [
        ((24, 88, 3), (264, 968, 3)),  # a grid task's frame: enlarged by 11 until its short side is 256+
        ((72, 264, 3), (288, 1056, 3)),
        ((400, 600, 3), (400, 600, 3)),  # CartPole: already large enough, kept
        ((1080, 1920, 3), (270, 480, 3)),  # thinned to 480 wide, the short side still 256+
        ((300, 2000, 3), (300, 2000, 3)),  # thinning would take the short side under 256: kept
    ],
)
def test_frames_are_scaled_to_a_short_side_of_at_least_256(shape, expected):
    frame = np.arange(np.prod(shape), dtype=np.uint8).reshape(shape)
    scaled = scale_frame(frame)
    assert scaled.shape == expected and min(scaled.shape[:2]) >= MIN_SIDE
    if scaled.shape[0] > shape[0]:  # nearest neighbour: each pixel a block of equal pixels
        factor = scaled.shape[0] // shape[0]
        assert np.array_equal(scaled[::factor, ::factor], frame)


def test_mp4_is_written_without_a_library_warning(tmp_path, capfd, caplog):
    """Frames whose sides are not multiples of 16 made imageio-ffmpeg log a resize warning (printed
    on the user's terminal by logging's last-resort handler)."""
    import imageio.v3 as iio

    frames = [np.full((264, 968, 3), value, dtype=np.uint8) for value in (0, 128, 255)]
    capfd.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        save_video(frames, tmp_path / "episode.mp4", fps=10)
    out, err = capfd.readouterr()
    assert out == "" and err == ""
    assert [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING] == []
    video = iio.imread(tmp_path / "episode.mp4")
    assert video.shape[1:3] == (272, 976)  # padded to multiples of 16 with the edge pixels


def _result(seed, curve):
    from recurrent_rl.sweeps.seeds import SeedResult

    return SeedResult(seed=seed, run_dir="", final_return=curve[-1][1], curve=curve)


def test_curves_with_one_evaluation_per_seed_draw_a_point_per_seed():
    """With one evaluation per seed, lines and bands have no length: markers carry the figure."""
    from recurrent_rl.sweeps.seeds import curves_figure

    results = [_result(seed, [(1000, float(10 * seed))]) for seed in range(4)]
    figure = curves_figure(results, "one evaluation")
    (axes,) = figure.axes
    lines = axes.get_lines()
    assert len(lines) == 5  # a line per seed and the median
    for line in lines:
        assert line.get_marker() not in (None, "", "None", " ")
    seeds = sorted(float(line.get_ydata()[0]) for line in lines[:4])
    assert seeds == [0.0, 10.0, 20.0, 30.0]
    assert not axes.collections  # no band from a single evaluation


def test_curves_with_several_evaluations_draw_the_bands():
    from recurrent_rl.sweeps.seeds import curves_figure

    results = [_result(seed, [(1000, float(seed)), (2000, float(2 * seed))]) for seed in range(3)]
    (axes,) = curves_figure(results).axes
    assert len(axes.collections) == 2  # min-max and interquartile bands


def _study(n_trials):
    optuna = pytest.importorskip("optuna")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    distributions = {
        "x": optuna.distributions.FloatDistribution(0, 1),
        "y": optuna.distributions.FloatDistribution(0, 1),
    }
    rng = np.random.default_rng(0)
    for _ in range(n_trials):
        x, y = rng.random(2)
        study.add_trial(
            optuna.trial.create_trial(params={"x": x, "y": y}, distributions=distributions, value=3 * x + y)
        )
    return study


def test_importance_from_few_trials_carries_a_caveat_in_the_figure():
    from recurrent_rl.sweeps.importance import FEW_TRIALS, importance_figure

    few = importance_figure(_study(3))
    assert any("only 3 complete trials" in text.get_text() for text in few.axes[0].texts)
    enough = importance_figure(_study(FEW_TRIALS))
    assert not any("complete trials" in text.get_text() for text in enough.axes[0].texts)
    assert importance_figure(_study(1)) is None
