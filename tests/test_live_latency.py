"""pymicro latency: the light-time arithmetic, the command's table and caveats (no timing asserted),
and the one-command example."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import pytest

import pymicro
from pymicro.cli import main
from pymicro.errors import InputError
from pymicro.live.latency import C_KM_S, EARTH_RADIUS_KM, SITES, great_circle_km, light_time
from pymicro.market.technical import MOMENTUM_FEATURES

ROOT = Path(__file__).resolve().parents[1]


def test_light_time_is_the_great_circle_over_c():
    # spherical law of cosines, an independent formula for the same arc
    (la1, lo1, _), (la2, lo2, _) = SITES["CME-Aurora"], SITES["NYSE-Mahwah"]
    p1, p2 = math.radians(la1), math.radians(la2)
    arc = math.acos(math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(math.radians(lo2 - lo1)))
    assert great_circle_km("CME-Aurora", "NYSE-Mahwah") == pytest.approx(arc * EARTH_RADIUS_KM, rel=1e-9)
    lt = light_time("CME-Aurora", "NYSE-Mahwah")
    assert 1100 < lt.km < 1250  # Chicago suburbs to northern New Jersey
    assert lt.vacuum_us == pytest.approx(lt.km / C_KM_S * 1e6) and lt.fibre_us == pytest.approx(lt.vacuum_us * 1.47)
    assert great_circle_km("LSE-Slough", "LSE-Slough") == 0.0
    with pytest.raises(InputError, match="unknown site"):
        great_circle_km("CME-Aurora", "Atlantis")


def test_pymicro_latency_prints_both_and_says_what_they_are_not(tmp_path, capsys):
    net = dataclasses.replace(pymicro.preset("momentum"), feature_names=tuple(MOMENTUM_FEATURES)).init(seed=1)
    pymicro.freeze(net, tmp_path / "m.pmb")
    assert main(["latency", str(tmp_path / "m.pmb"), "--ticks", "3000", "--to", "Nasdaq-Carteret"]) == 0
    out = capsys.readouterr().out
    assert "on_tick, median" in out and "CME-Aurora -> Nasdaq-Carteret" in out
    assert "lower bound" in out and "nothing here predicts before data arrives" in out


@pytest.mark.slow
def test_the_one_command_example_runs_the_whole_path(tmp_path):
    spec = importlib.util.spec_from_file_location("live_paper", ROOT / "examples" / "live_paper.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = mod.main(tmp_path, n_ticks=20_000)
    # two contributions, one allocation, its P&L and two profit shares
    assert out["bars"] == 200 and out["ledger_entries_verified"] == 6
    assert set(out["report"]["baseline_always_long"]) == set(out["report"]["model"])
    # the paper run's P&L, shared to the cent
    assert sum(c for _, c in out["members"]) == pytest.approx(100_000 + round(out["equity"] - 100_000, 2), abs=1e-6)
