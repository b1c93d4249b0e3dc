"""The measured tables of docs/results.md are the committed metrics, rendered."""
from conftest import ROOT


def test_results_doc_tables_match_the_metrics(monkeypatch):
    from rrec_core.reporting.results_doc import main

    monkeypatch.chdir(ROOT)
    assert main(["--check"]) == 0, "run `python -m rrec_core.reporting.results_doc` after a pipeline run"


def test_a_changed_number_is_caught(tmp_path, monkeypatch):
    from rrec_core.reporting.results_doc import main, render

    monkeypatch.chdir(ROOT)
    doc = (ROOT / "docs" / "results.md").read_text()
    rendered = render(doc, ROOT / "metrics")
    lines = rendered.splitlines()
    i = next(k for k, line in enumerate(lines) if line.startswith("| rrec mf_bpr |"))
    lines[i] = lines[i].replace("0.", "0.9", 1)  # one digit off in one table cell
    tampered = tmp_path / "results.md"
    tampered.write_text("\n".join(lines) + "\n")
    assert main(["--check", "--doc", str(tampered)]) == 1
