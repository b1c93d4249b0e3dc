"""Quality gates: floors, the tolerance against the previous materialization, and what is compared."""
import pytest

from rrec_core.config import GateConfig
from rrec_core.gates import QualityGateError, check_gate, gate_numbers

CFG = GateConfig(min_valid_ndcg=0.2, max_relative_drop=0.02, min_valid_worst_case=0.05,
                 max_worst_case_relative_drop=0.1)


def test_a_first_model_is_judged_by_the_floors_only():
    gate = check_gate({"mf_bpr": {"valid_ndcg@10": 0.25}, "text_hybrid": {"valid_ndcg@10": 0.19}}, None, CFG)
    assert [r.passed for r in gate.rows] == [True, False]
    assert gate.failures() == ["text_hybrid valid_ndcg@10: 0.1900 is below the floor 0.2000"]
    with pytest.raises(QualityGateError, match="text_hybrid valid_ndcg@10"):
        gate.raise_for_failures()


def test_a_drop_beyond_the_tolerance_fails_and_within_it_passes():
    previous = {"mf_bpr": {"valid_ndcg@10": 0.30, "valid_worst_case": 0.10}}
    within = check_gate({"mf_bpr": {"valid_ndcg@10": 0.2941, "valid_worst_case": 0.0901}}, previous, CFG)
    assert within.passed, within.markdown()
    beyond = check_gate({"mf_bpr": {"valid_ndcg@10": 0.2939, "valid_worst_case": 0.0899}}, previous, CFG)
    assert [r.metric for r in beyond.rows if not r.passed] == ["valid_ndcg@10", "valid_worst_case"]
    assert "2.0% below the previous 0.3000" in beyond.failures()[0]
    assert "| mf_bpr | valid_ndcg@10 | 0.2939 | 0.3000 |" in beyond.markdown()
    better = check_gate({"mf_bpr": {"valid_ndcg@10": 0.35, "valid_worst_case": 0.2}}, previous, CFG)
    assert better.passed


def test_only_the_same_model_and_metric_are_compared():
    previous = {"mf_bpr": {"valid_ndcg@10": 0.5}}
    gate = check_gate({"text_hybrid": {"valid_ndcg@10": 0.25, "valid_worst_case": 0.06}}, previous, CFG)
    assert gate.passed and all(r.previous is None for r in gate.rows)


def test_gate_numbers_are_the_selected_epochs_validation_numbers():
    histories = {"mf_bpr": [{"epoch": 0, "valid_ndcg@10": 0.1}, {"epoch": 1, "valid_ndcg@10": 0.3,
                                                                  "valid_ndcg@10_attacked": 0.07}]}
    assert gate_numbers(histories, {"mf_bpr": 1}) == {"mf_bpr": {"valid_ndcg@10": 0.3, "valid_worst_case": 0.07}}
