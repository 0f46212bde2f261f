"""metrics.jsonl: the documented record, the one writer and the one (incremental) reader."""

import dataclasses
import json
import pathlib

import pytest

from meta_train import metrics_log, reference
from meta_train.metrics_log import StepRecord

RECORD = StepRecord(**dict.fromkeys(metrics_log.EVERY_STEP, 0) | {"task": "t", "devices": [1]})


def _line(record: StepRecord) -> str:
    return record.to_json() + "\n"


def test_the_docs_list_every_field():
    docs = pathlib.Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
    assert docs.read_text() == reference.metrics_markdown(), (
        "run: python -m meta_train.reference metrics > docs/metrics.md"
    )
    assert all(doc for doc in metrics_log.FIELDS.values())
    assert (
        metrics_log.EVERY_STEP[:2] == ("step", "meta_loss")
        and "valid" not in metrics_log.EVERY_STEP
    )


def test_a_record_round_trips_without_its_absent_fields(tmp_path):
    path = tmp_path / "metrics.jsonl"
    record = dataclasses.replace(RECORD, step=1, valid=0.5, valid_tasks={"a": 0.5}, workers=[0, 1])
    metrics_log.append(path, record)
    assert json.loads(path.read_text()) == {
        **dict.fromkeys(metrics_log.EVERY_STEP, 0),
        "task": "t",
        "devices": [1],
        "step": 1,
        "valid": 0.5,
        "valid_tasks": {"a": 0.5},
        "workers": [0, 1],
    }
    assert metrics_log.read(path) == [record]
    with pytest.raises(TypeError, match="typo"):
        StepRecord(**{field: 0 for field in metrics_log.EVERY_STEP}, typo=1)
    with pytest.raises(TypeError, match="meta_loss"):
        StepRecord(step=1)
    with pytest.raises(ValueError, match=r"needs \['step'\]"):
        dataclasses.replace(RECORD, step=None)


def test_the_reader_names_unknown_and_missing_fields(tmp_path):
    path = tmp_path / "metrics.jsonl"
    fields = json.loads(RECORD.to_json())
    path.write_text(_line(RECORD) + json.dumps(fields | {"typo": 1}) + "\n")
    with pytest.raises(ValueError, match=r"line 2: .*unknown fields \['typo'\]"):
        metrics_log.read(path)
    del fields["grad_norm"]
    path.write_text(json.dumps(fields) + "\n")
    with pytest.raises(ValueError, match=r"line 1: .*missing fields \['grad_norm'\]"):
        metrics_log.read(path)
    path.write_text("[1, 2]\n")
    with pytest.raises(ValueError, match=r"line 1: .*a JSON object was expected, not list"):
        metrics_log.read(path)


def test_the_reader_follows_a_file_being_written(tmp_path):
    path = tmp_path / "metrics.jsonl"
    log = metrics_log.MetricsLog(path)
    assert log.read() == []  # not written yet
    one, two = (dataclasses.replace(RECORD, step=s) for s in (1, 2))
    path.write_text(_line(one) + _line(two)[:20])  # the second line half-written
    assert log.read() == [one]
    with path.open("a") as f:
        f.write(_line(two)[20:])
    assert log.read() == [one, two]
    path.write_text(_line(one) + "not json\n" + _line(two))
    with pytest.raises(ValueError, match=r"metrics.jsonl, line 2: not a metrics record"):
        metrics_log.read(path)


def test_truncate_keeps_the_records_up_to_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    records = [dataclasses.replace(RECORD, step=s) for s in (1, 2, 3, 4)]
    path.write_text("".join(map(_line, records))[:-5])  # the last line cut short
    metrics_log.truncate(path, 2)
    assert metrics_log.read(path) == records[:2]
    metrics_log.truncate(tmp_path / "none.jsonl", 2)  # nothing to truncate
    assert not (tmp_path / "none.jsonl").exists()
