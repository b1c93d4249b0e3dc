"""The rrec CLI: config resolution and overrides (the run subcommand is exercised by make run)."""
import pytest

from orchestration.cli import main, parse_overrides


def test_config_prints_resolved_values_with_descriptions(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("adversarial:\n  eps: 0.4\n")
    assert main(["config", "--set", "adversarial.steps=7"]) == 0
    out = capsys.readouterr().out
    assert "  eps: 0.4  # Radius of the training adversary's ball." in out  # from params.yaml
    assert "  steps: 7  # PGD inner steps" in out  # from --set
    assert "  lr: 0.001  # Adam learning rate" in out  # schema default


def test_unknown_override_key_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="unknown key 'epss'"):
        main(["--debug", "config", "--set", "adversarial.epss=0.3"])
    assert main(["config", "--set", "adversarial.epss=0.3"]) == 2  # without --debug: a message, exit code 2


def test_override_values_are_yaml_and_validated(tmp_path, monkeypatch):
    assert parse_overrides(["pretrain.models=[mf_bpr]", "adversarial.eps=0.25"]) == {
        "pretrain.models": ["mf_bpr"], "adversarial.eps": 0.25}
    with pytest.raises(SystemExit, match="key=value"):
        parse_overrides(["adversarial.eps"])
    monkeypatch.chdir(tmp_path)
    from rrec_core.config import ConfigError

    with pytest.raises(ConfigError, match="adversarial.method"):
        main(["--debug", "config", "--set", "adversarial.method=fgsm"])  # not apr or pgd


def _tiny_project(tmp_path, bert):
    import yaml
    from conftest import write_tiny_atomic
    from test_pipeline_e2e import tiny_params

    write_tiny_atomic(tmp_path / "data" / "tiny")
    params = tiny_params("data/tiny", bert)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    return tmp_path


def test_validate_exit_codes(tmp_path, monkeypatch, capsys, tiny_bert):
    root = _tiny_project(tmp_path, tiny_bert)
    monkeypatch.chdir(root)
    assert main(["validate"]) == 0
    assert "expectation" in capsys.readouterr().out.lower()  # the suite as a Markdown table
    inter = root / "data" / "tiny" / "tiny.inter"
    lines = inter.read_text().splitlines()
    fields = lines[3].split("\t")
    fields[2] = "11"  # rating out of range on line 4
    lines[3] = "\t".join(fields)
    inter.write_text("\n".join(lines) + "\n")
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert "rating" in err and "row 4" in err


def test_data_pull_refuses_without_a_matching_source(tmp_path, capsys):
    (tmp_path / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef0123456789abcdef.dir\n  path: data\n")
    assert main(["data", "pull", "--root", str(tmp_path), "--sources", "nosuchsource"]) == 1
    assert "unknown data source" in capsys.readouterr().err
    assert not (tmp_path / "data").exists()


def test_run_with_overrides_then_evaluate(tmp_path, monkeypatch, capsys, tiny_bert):
    """`rrec run --set` reaches the assets (here: only MF-BPR, no hybrid), prints where the report is;
    `rrec evaluate` scores a saved model on the saved split."""
    import json

    root = _tiny_project(tmp_path, tiny_bert)
    monkeypatch.chdir(root)
    code = main(["run", "--select", "*pretrain_evaluation", "--set", "pretrain.models=[mf_bpr]"])
    assert code == 0
    out = capsys.readouterr().out
    assert "| mf_bpr |" in out and "text_hybrid" not in out.split("stage times")[1]
    assert sorted(p.name for p in (root / "artifacts" / "pretrained_recommender").iterdir()) == ["mf_bpr", "models.json"]
    assert main(["evaluate", "artifacts/pretrained_recommender/mf_bpr", "--part", "valid"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 < metrics["ndcg@10"] <= 1


def test_run_records_in_the_project_instance_quietly(tmp_path, monkeypatch, capfd, tiny_bert):
    """`rrec run` writes its run, materializations and metadata to .dagster/ of the project (what `make ui`
    reads), prints a line per finished stage and no library chatter, and names its log file; bad data ends
    with exit code 2 and nothing downstream."""
    from dagster import AssetKey

    from orchestration.instance import project_instance

    monkeypatch.delenv("DAGSTER_HOME", raising=False)
    root = _tiny_project(tmp_path, tiny_bert)
    monkeypatch.chdir(root)
    assert main(["run", "--select", "*validated_interactions"]) == 0
    out, err = capfd.readouterr()
    assert "done raw_interactions" in out and "done validated_interactions" in out
    assert "great_expectations" not in out + err and "STEP_START" not in out + err and "DEBUG" not in out + err
    log = next((root / ".dagster" / "logs").glob("rrec-run-*.log"))
    assert f"log:       {log}" in out and "validated_interactions" in log.read_text()
    instance = project_instance(root)
    event = instance.get_latest_materialization_event(AssetKey("validated_interactions"))
    assert event is not None and "n_users" in event.asset_materialization.metadata
    assert len(instance.get_runs()) == 1

    (root / "data" / "tiny" / "tiny.inter").write_text("")  # an empty interactions file
    assert main(["run", "--select", "*validated_interactions"]) == 2
    out, err = capfd.readouterr()
    assert "tiny.inter: the file is empty" in err and "Traceback" not in err
    assert len(project_instance(root).get_runs()) == 2  # the failed run is in the UI too


def test_run_refuses_a_bad_override_before_any_work(tmp_path, monkeypatch, tiny_bert, capsys):
    root = _tiny_project(tmp_path, tiny_bert)
    monkeypatch.chdir(root)
    assert main(["run", "--set", "pretrain.nope=1"]) == 2
    assert "unknown key 'nope'" in capsys.readouterr().err
    assert not (root / "artifacts").exists()
