"""metrics.jsonl: the documented fields, the one writer and the one (incremental) reader."""

import json
import pathlib

import pytest

from meta_train import metrics_log, reference

RECORD = {field: 0 for field in metrics_log.EVERY_STEP}


def test_the_docs_list_every_field():
    docs = pathlib.Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
    assert docs.read_text() == reference.metrics_markdown(), (
        "run: python -m meta_train.reference metrics > docs/metrics.md"
    )


def test_append_writes_documented_records_only(tmp_path):
    path = tmp_path / "metrics.jsonl"
    metrics_log.append(path, {**RECORD, "step": 1, "valid": 0.5})
    assert json.loads(path.read_text()) == {**RECORD, "step": 1, "valid": 0.5}
    with pytest.raises(ValueError, match=r"undocumented fields \['typo'\]"):
        metrics_log.append(path, {**RECORD, "typo": 1})
    with pytest.raises(ValueError, match=r"missing fields \['meta_loss'\]"):
        metrics_log.append(path, {k: v for k, v in RECORD.items() if k != "meta_loss"})
    assert len(metrics_log.read(path)) == 1


def test_the_reader_follows_a_file_being_written(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = metrics_log.MetricsLog(path)
    assert log.read() == []  # not written yet
    path.write_text('{"step": 1}\n{"step": 2, "meta_lo')  # the second line half-written
    assert log.read() == [{"step": 1}]
    with path.open("a") as f:
        f.write('ss": 0.5}\n')
    assert log.read() == [{"step": 1}, {"step": 2, "meta_loss": 0.5}]
    path.write_text('{"step": 1}\nnot json\n{"step": 3}\n')
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not a metrics record"):
        metrics_log.read(path)


def test_truncate_keeps_the_records_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1}\n{"step": 2}\n{"step": 3}\n{"step": 4, "x')
    metrics_log.truncate(path, 2)
    assert metrics_log.read(path) == [{"step": 1}, {"step": 2}]
    metrics_log.truncate(tmp_path / "none.jsonl", 2)  # nothing to truncate
    assert not (tmp_path / "none.jsonl").exists()
