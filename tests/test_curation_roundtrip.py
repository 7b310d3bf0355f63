"""Curation through the real broker: select, export, label, import, and the labels appear joined in the store.

Also: a batch is never selected twice, a bad label file sends nothing, and
snapshot ids are stable and change when any input changes.
"""

from __future__ import annotations

import json
import os
from datetime import timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from events import START, feedback_for, prediction_documents, produce, run_cli, stored_counts, wait_until
from kafka import KafkaConsumer, TopicPartition

from driftloop.curation import SnapshotSpec, build_snapshot

END = (START + timedelta(hours=1)).isoformat()



@pytest.fixture
def traffic(writer, kafka, kafka_settings):
    """600 predictions of 'churn' at 09:00, the first 100 with user feedback."""
    predictions = prediction_documents(600, seed=3)
    produce(kafka, kafka_settings.topic("predictions"), predictions)
    produce(kafka, kafka_settings.topic("feedback"), feedback_for(predictions[:100]))
    assert wait_until(lambda: stored_counts(writer)[0] == 600 and stored_counts(writer, "feedback")[0] == 100, 30)
    return writer, predictions


@pytest.fixture
def env(kafka, kafka_settings, data_dir) -> dict:
    return {
        **os.environ,
        "DRIFTLOOP_DATA_DIR": str(data_dir),
        "DRIFTLOOP_KAFKA__BOOTSTRAP_SERVERS": kafka,
        "DRIFTLOOP_KAFKA__TOPIC_PREFIX": kafka_settings.topic_prefix,
    }


def select(env: dict, budget: int, strategy: str = "margin") -> tuple[str, list[str]]:
    """Run `curate select`; the new batch's id and its request ids, best first."""
    done = run_cli("curate", "select", "--model", "churn", "--budget", str(budget), "--strategy", strategy,
                   "--window", "2h", "--end", END, "--json", env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    selected = json.loads(done.stdout)
    assert [pick["request_id"] for pick in selected["picks"]] == pq.read_table(selected["batch"]["path"])[
        "request_id"].to_pylist(), "the JSON lists the recorded batch, best first"
    return selected["batch"]["batch_id"], [pick["request_id"] for pick in selected["picks"]]


def feedback_end_offsets(kafka: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=kafka)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        return sum(consumer.end_offsets(partitions).values())
    finally:
        consumer.close()


def annotate(tasks: list[dict], labels: dict[str, str]) -> list[dict]:
    """What Label Studio's JSON export gives once annotators labelled the tasks whose request is in `labels`."""
    exported = []
    for number, task in enumerate(tasks, start=1):
        task = {**task, "id": number, "annotations": []}
        label = labels.get(task["data"]["request_id"])
        if label is not None:
            task["annotations"] = [{
                "id": 1000 + number, "was_cancelled": False, "updated_at": f"{START.date()}T10:{number % 60:02d}:00Z",
                "result": [{"from_name": "label", "to_name": "input", "type": "choices", "value": {"choices": [label]}}],
            }]
        exported.append(task)
    return exported


def test_select_export_label_import_and_the_labels_join_their_predictions(traffic, env, kafka, kafka_settings, tmp_path):
    store, predictions = traffic
    by_request = {p["request_id"]: p for p in predictions}
    batch_id, chosen = select(env, 50)
    assert len(chosen) == 50
    labelled_already = {p["request_id"] for p in predictions[:100]}
    assert not set(chosen) & labelled_already, "only unlabelled predictions are chosen"
    margins = {r: abs(2 * p["output"]["probabilities"]["1"] - 1) for r, p in by_request.items() if r not in labelled_already}
    assert max(margins[r] for r in chosen) <= min(m for r, m in margins.items() if r not in chosen)

    exported = run_cli("curate", "export", batch_id, "--out", str(tmp_path / "tasks.json"), env=env)
    assert exported.returncode == 0, exported.stdout + exported.stderr
    tasks = json.loads((tmp_path / "tasks.json").read_text())
    assert [t["data"]["request_id"] for t in tasks] == chosen
    assert tasks[0]["predictions"][0]["result"][0]["value"]["choices"] == [str(by_request[chosen[0]]["output"]["label"])]
    assert '<Choice value="0"/>' in (tmp_path / "tasks.label_config.xml").read_text()

    truth = {r: str(1 - by_request[r]["output"]["label"]) for r in chosen[:40]}  # annotators disagree with the model
    topic = kafka_settings.topic("feedback")
    bad = annotate(tasks, {**truth, chosen[7]: "maybe"})
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    before = feedback_end_offsets(kafka, topic)
    refused = run_cli("curate", "import", str(tmp_path / "bad.json"), env=env)
    assert refused.returncode == 1
    assert "row 8" in refused.stderr and "'label'" in refused.stderr and "maybe" in refused.stderr
    assert feedback_end_offsets(kafka, topic) == before, "nothing of a bad file is sent"

    (tmp_path / "done.json").write_text(json.dumps(annotate(tasks, truth)))
    imported = run_cli("curate", "import", str(tmp_path / "done.json"), env=env)
    assert imported.returncode == 0, imported.stdout + imported.stderr
    assert "40 labels checked, 40 sent" in imported.stdout and "10 rows not labelled yet" in imported.stdout

    def annotated() -> dict:
        labelled = store.labelled("churn")  # read once: the writer may store more between two reads
        rows = labelled.filter(pa.compute.equal(labelled["feedback_source"], "annotator"))
        return dict(zip(rows["request_id"].to_pylist(), rows["true_label"].to_pylist(), strict=True))

    assert wait_until(lambda: annotated() == truth, 30), "the labels appear joined to their predictions"
    again = run_cli("curate", "import", str(tmp_path / "done.json"), env=env)
    assert again.returncode == 0
    assert wait_until(lambda: stored_counts(store, "feedback")[0] == 100 + 80, 30)
    assert len(store.feedback()) == 140, "a file imported twice is read once"

    _, second = select(env, 1000)
    assert not set(second) & set(chosen), "a batch is never selected twice"
    assert len(second) == 600 - 100 - 50

    (tmp_path / "labels.csv").write_text("request_id,label\n" + "".join(f"{r},1\n" for r in second[:5]) + f"{second[5]},\n")
    from_csv = run_cli("curate", "import", str(tmp_path / "labels.csv"), env=env)
    assert from_csv.returncode == 0 and "5 labels checked, 5 sent" in from_csv.stdout
    stray = tmp_path / "stray.csv"
    stray.write_text("request_id,label\nnever-sent,1\n")
    refused = run_cli("curate", "import", str(stray), env=env)
    assert refused.returncode == 1 and "row 1" in refused.stderr and "'request_id'" in refused.stderr


def test_snapshot_ids_are_stable_and_change_with_any_input(traffic, kafka, kafka_settings, data_dir, tmp_path):
    store, predictions = traffic
    reference = store.predictions("churn", START, START + timedelta(seconds=2))  # 200 rows, as if training data
    reference = reference.select([c for c in reference.column_names if c.startswith("feature.")])
    reference = reference.append_column("label", pa.array(["0", "1"] * 100))
    folder = data_dir / "snapshots"
    spec = SnapshotSpec(model="churn")

    first = build_snapshot(store, spec, folder, reference)
    assert first.manifest["rows"] == 300 and first.manifest["rows_per_source"] == {"reference": 200, "user": 100}
    assert build_snapshot(store, spec, tmp_path / "elsewhere", reference).snapshot_id == first.snapshot_id
    assert first.read().num_rows == 300 and first.manifest["features"][0] == "f00"

    flipped = reference.set_column(reference.schema.get_field_index("label"), "label", pa.array(["1", "0"] * 100))
    assert build_snapshot(store, spec, folder, flipped).snapshot_id != first.snapshot_id, "a label changed"
    balanced = build_snapshot(store, SnapshotSpec(model="churn", balance="undersample"), folder, reference)
    assert balanced.snapshot_id != first.snapshot_id, "a setting changed"
    assert len(set(balanced.manifest["rows_per_class"].values())) == 1
    recent = build_snapshot(store, SnapshotSpec(model="churn", since=START + timedelta(seconds=0.5)), folder, reference)
    assert recent.manifest["rows_per_source"]["user"] == 50, "the recency window keeps the last 50 labelled rows"

    produce(kafka, kafka_settings.topic("feedback"), [{**f, "event_id": "late-" + f["event_id"]}
                                                      for f in feedback_for(predictions[100:101])])
    assert wait_until(lambda: stored_counts(store, "feedback")[0] == 101, 30)
    assert build_snapshot(store, spec, folder, reference).snapshot_id != first.snapshot_id, "a new label arrived"
    with pytest.raises(ValueError, match="same features"):
        build_snapshot(store, spec, folder, reference.drop_columns(["feature.f03"]))
