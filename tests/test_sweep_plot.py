"""The sweep's plot shows every policy, also those whose lines lie on each other (issue 15: lru, clawvm and
oracle were drawn on top of each other at 0 faults, so only the last was visible)."""

from __future__ import annotations

from pathlib import Path

import matplotlib.colors
import matplotlib.pyplot as plt
import numpy as np
import pytest

from clawvm_mcp.replay.report import figure, plot

BUDGETS = [120, 180, 240, 300]
SERIES = {  # policy -> (faults, thrash) per budget; the last three coincide exactly, as in the real sweep
    "retrieval": ([90, 90, 90, 90], [39.0, 39.0, 39.0, 39.0]),
    "compaction_hybrid": ([50, 26, 14, 9], [2.5, 1.6, 1.1, 0.9]),
    "lru": ([0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]),
    "clawvm": ([0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]),
    "oracle": ([0, 0, 0, 0], [0.5, 0.5, 0.5, 0.5]),
}
ROWS = [
    {"policy": name, "budget": b, "faults_total": faults[i], "thrash": thrash[i], "trace": "w.jsonl"}
    for name, (faults, thrash) in SERIES.items()
    for i, b in enumerate(BUDGETS)
]


def visible_pixels(fig: object, ax: object, colour: str) -> int:
    """Pixels of ``colour`` inside the axes (the legend is outside them), after rendering."""
    canvas = fig.canvas  # type: ignore[attr-defined]
    canvas.draw()
    image = np.asarray(canvas.buffer_rgba())[..., :3].astype(int)
    box = ax.get_window_extent()  # type: ignore[attr-defined]
    height = image.shape[0]
    crop = image[int(height - box.y1) : int(height - box.y0), int(box.x0) : int(box.x1)]
    rgb = np.array(matplotlib.colors.to_rgb(colour)) * 255
    return int((np.abs(crop - rgb).sum(axis=2) < 60).sum())


def test_every_policy_is_visible_in_both_panels() -> None:
    fig = figure(ROWS, BUDGETS)
    try:
        for ax in fig.axes:
            lines = ax.get_lines()
            assert [line.get_label().split(" ")[0] for line in lines] == list(SERIES)
            for line in lines:
                seen = visible_pixels(fig, ax, line.get_color())
                assert seen >= 40, f"{ax.get_title()}: {line.get_label()} shows {seen} pixels"
    finally:
        plt.close(fig)


def test_coinciding_policies_say_so_in_the_legend() -> None:
    fig = figure(ROWS, BUDGETS)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    plt.close(fig)
    assert labels[2:] == ["lru", "clawvm (faults = lru)", "oracle (faults = lru)"]


def test_the_png_is_written(tmp_path: Path) -> None:
    path = tmp_path / "faults.png"
    assert plot(ROWS, BUDGETS, path) is None
    assert path.read_bytes().startswith(b"\x89PNG")


@pytest.mark.parametrize("name", ["lru", "clawvm"])
def test_the_check_would_see_a_hidden_line(name: str) -> None:
    """Drawn the old way (same marker and width, one on top of the other), the lower lines vanish."""
    fig, ax = plt.subplots()
    drawn = {n: ax.plot(BUDGETS, SERIES[n][0], marker="o", color=f"C{i}")[0] for i, n in enumerate(SERIES)}
    try:
        assert visible_pixels(fig, ax, drawn[name].get_color()) == 0
    finally:
        plt.close(fig)
