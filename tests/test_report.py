import json

import pytest

from pymicro.cli import main


@pytest.mark.slow
def test_report_writes_the_table_and_plots(tmp_path, capsys):
    code = main(["report", "--out", str(tmp_path), "--presets", "reversal", "--symbols", "SP500",
                 "--epochs", "2", "--ablation-seeds", "--ensemble-presets"])
    assert code == 0
    text = (tmp_path / "report.md").read_text()
    assert "| reversal | 1,191 |" in text and "buy&hold" in text
    assert (tmp_path / "report" / "equity.png").read_bytes()[:4] == b"\x89PNG"
    data = json.loads((tmp_path / "report" / "report.json").read_text())
    row = data["results"][0]
    assert 0 <= row["accuracy"] <= 1 and row["inference_us"] > 0 and row["symbols"] == ["SP500"]
    for leg in ("strategy", "buy_and_hold", "momentum", "majority_class"):
        assert leg in row["trading"]
        assert -1 <= row["trading"][leg]["max_drawdown"] <= 1
    assert data["ablation"] is None
