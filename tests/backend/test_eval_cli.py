"""``rscovlm evaluate`` end to end: tables on the terminal and a complete report folder."""

from __future__ import annotations

import csv
import json

from rscovlm.cli import main


def _write_dota(folder, lines_by_image: dict[str, str]) -> None:
    folder.mkdir()
    for image, text in lines_by_image.items():
        (folder / f"{image}.txt").write_text(text)


def test_cli_prints_both_tables_and_writes_the_report(tmp_path, capsys):
    truth, pred, out = tmp_path / "truth", tmp_path / "pred", tmp_path / "report"
    _write_dota(
        truth,
        {
            "P1": "gsd:0.2\n0 0 20 0 20 10 0 10 plane 0\n40 0 60 0 60 10 40 10 plane 1\n",
            "P2": "0 0 10 0 10 30 0 30 ship 0\n",
        },
    )
    _write_dota(pred, {"P1": "0 0 20 0 20 10 0 10 plane\n", "P2": "100 100 110 100 110 110 100 110 ship\n"})

    code = main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--out", str(out), "--seeds", "4"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "[dota_devkit]" in printed and "[mmrotate]" in printed
    assert "AP50_nc ± std" in printed and "plane" in printed and "mean" in printed

    names = {p.name for p in out.iterdir()}
    assert {"results.json", "per_class.csv", "report.md"} <= names
    assert {"pr_curves_dota_devkit.png", "ap_per_class_mmrotate.png"} <= names
    assert not any(n.endswith(".tmp") for n in names)
    for png in out.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    payload = json.loads((out / "results.json").read_text())
    by_convention = {r["convention"]: r for r in payload["results"]}
    # Plane: the difficult one is ignored by DOTA_devkit (AP 1) but counted by mmrotate
    # (recall 1/2 -> 11-point AP 6/11). Ship: missed by both.
    dota_plane = next(c for c in by_convention["dota_devkit"]["per_class"] if c["class"] == "plane")
    mmr_plane = next(c for c in by_convention["mmrotate"]["per_class"] if c["class"] == "plane")
    assert dota_plane["ap"]["AP50"] == 1.0
    assert abs(mmr_plane["ap"]["AP50"] - 6 / 11) < 1e-9
    assert by_convention["dota_devkit"]["map"]["AP50"] == 0.5
    assert by_convention["dota_devkit"]["scored"] is False and by_convention["dota_devkit"]["seeds"] == 4

    rows = list(csv.DictReader((out / "per_class.csv").open()))
    assert [r["class"] for r in rows if r["convention"] == "mmrotate"] == ["plane", "ship", "mean"]
    report = (out / "report.md").read_text()
    assert "## dota_devkit" in report and "![pr_curves_mmrotate.png](pr_curves_mmrotate.png)" in report


def test_cli_single_convention_and_listed_classes(tmp_path, capsys):
    truth, pred = tmp_path / "truth", tmp_path / "pred"
    _write_dota(truth, {"a": "0 0 10 0 10 10 0 10 plane 0\n"})
    _write_dota(pred, {"a": "0 0 10 0 10 10 0 10 plane\n"})
    code = main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--convention", "dota_devkit",
                 "--classes", "plane,ship", "harbor"])
    assert code == 0
    printed = capsys.readouterr().out
    assert "[mmrotate]" not in printed
    mean_line = next(line for line in printed.splitlines() if line.startswith("mean"))
    assert "33.3" in mean_line  # AP 1 for plane, 0 for ship and harbor, over 3 listed classes


def test_cli_reports_bad_input_as_a_sentence(tmp_path, capsys):
    truth = tmp_path / "truth"
    _write_dota(truth, {"a": "0 0 10 0 10 10 0 10 plane 0\n"})
    code = main(["evaluate", "--pred", str(tmp_path / "nope.gpkg"), "--truth", str(truth)])
    assert code == 2
    err = capsys.readouterr().err
    assert "rscovlm evaluate: error:" in err and "does not exist" in err and "Traceback" not in err
    assert main(["evaluate", "--pred", str(truth), "--truth", str(truth), "--seeds", "0"]) == 2
    assert "--seeds must be at least 1" in capsys.readouterr().err


def test_cli_with_scores_reports_ap_beside_map_nc_and_a_validated_f1(tmp_path, capsys):
    truth, pred, out = tmp_path / "truth", tmp_path / "pred", tmp_path / "report"
    labels, task1 = {}, []
    for k in range(6):
        labels[f"P{k}"] = "".join(f"{30 * j} 0 {30 * j + 20} 0 {30 * j + 20} 20 {30 * j} 20 plane 0\n" for j in range(3))
        task1 += [f"P{k} 0.{9 - j} {30 * j} 0 {30 * j + 20} 0 {30 * j + 20} 20 {30 * j} 20" for j in range(2)]
        task1.append(f"P{k} 0.1 300 0 320 0 320 20 300 20")  # a sure miss, scored low
    _write_dota(truth, labels)
    pred.mkdir()
    (pred / "Task1_plane.txt").write_text("\n".join(task1) + "\n")

    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--convention", "dota_devkit",
                 "--validation-fraction", "0.5", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "ranked by the scores against" in printed and "with random scores (mAP_nc)" in printed
    assert "chosen on 3 validation image(s), measured on the other 3" in printed
    [result] = json.loads((out / "results.json").read_text())["results"]
    assert result["scored"] and result["map"]["AP50"] > result["map_nc_mean"]["AP50"]
    choice = result["threshold"]
    assert 0.1 < choice["threshold"] <= 0.8 and choice["f1"] == 0.8 and abs(choice["confidence_free_f1"] - 4 / 6) < 1e-9
    assert "ranked by the scores" in (out / "report.md").read_text()
    assert main(["evaluate", "--pred", str(pred), "--truth", str(truth), "--validation-fraction", "1"]) == 2
    assert "--validation-fraction must lie between 0 and 1" in capsys.readouterr().err
