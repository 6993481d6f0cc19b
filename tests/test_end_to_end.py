"""The whole graph, in-process, on the session fixture (a London Set subset, both models).

Runs through the same jobs as `fer-warehouse demo`, into a temporary warehouse and Dagster
instance, then checks what a user would look at: raw tables, marts, statistics, figures,
asset checks, idempotent re-materialization, SQL while a writer holds the file, sensors.
"""

from __future__ import annotations

import time

import dagster as dg
import duckdb
import pytest

from dagster_project.defs.partitions import MODEL_DIMENSION
from dagster_project.orchestration import load_definitions
from dagster_project.settings import benchmark_config
from dagster_project.sql_shell import run_sql
from inference import warehouse
from tests.support.lock_holder import hold_write_lock

pytestmark = pytest.mark.slow


def query(sql: str, params=None):
    con = warehouse.connect(benchmark_config().warehouse, read_only=True)
    try:
        return con.execute(sql, params or []).df()
    finally:
        con.close()


def test_raw_tables_hold_every_image_and_answer(demo):
    images = query("select * from raw.dataset_images where dataset = 'london_subset'")
    answers = query("select * from raw.predictions where dataset = 'london_subset'")
    n_images = len(images)
    assert n_images > 30 and images["image_hash"].str.len().eq(64).all()
    assert set(images["source_label"]) == {"neutral", "smiling"}
    # One answer per image and model (single-pass classifiers), full distribution when a face was found.
    assert len(answers) == 2 * n_images
    assert set(answers["model"]) == {"mini_xception", "big_xception"}
    found = answers[answers["parse_status"] == "ok"]
    assert found["probabilities"].notna().all() and found["face_box"].notna().all()
    not_found = answers[answers["parse_status"] == "no_face"]
    assert not_found["predicted_label"].isna().all() and (~not_found["face_found"]).all()
    assert answers["preprocessing"].str.contains("x/255").all()
    runs = query("select * from raw.model_runs")
    # Xception on the London subset; the two imported models and the loopback VLM on the Tae-shaped set.
    assert sorted(zip(runs["model"], runs["dataset"])) == [
        ("big_xception", "london_subset"), ("fer_sim", "tae_sim"), ("gemma_sim", "tae_sim"),
        ("loopback_vlm", "tae_sim"), ("mini_xception", "london_subset")
    ]
    assert runs["weights_sha256"].str.len().eq(64).all()


def test_marts_cover_groups_and_agree_with_raw(demo):
    acc = query(
        "select * from marts.group_accuracy where grouping = 'all' and true_emotion = 'all' order by model"
    )
    answered = query(
        "select model, count(*) as n from raw.predictions where parse_status = 'ok' and step_name = 'emotion' "
        "group by model order by model"
    )
    assert acc["n"].tolist() == answered["n"].tolist()
    races = set(query("select distinct group_value from marts.group_accuracy where grouping = 'race'")["group_value"])
    assert {"white", "black", "east_asian", "west_asian", "east_asian/white"} <= races
    ratios = query("select * from marts.misclassification_ratios where grouping = 'race' and dataset = 'london_subset'")
    # the London Set's two expressions, and 'all' (any true emotion) for the pooled error rows
    assert len(ratios) > 0 and set(ratios["true_emotion"]) <= {"happy", "neutral", "all"}
    confusion = query("select sum(n) as n from marts.confusion_counts where grouping = 'all'")
    assert int(confusion["n"].iloc[0]) == int(answered["n"].sum())


def test_statistics_table_records_families_and_holm(demo):
    tests = query("select * from stats.error_rate_ztests")
    assert len(tests) > 0
    assert set(tests["correction"]) == {"holm"}
    assert set(tests["grouping"]) <= {"race", "gender", "race_gender"}
    sizes = tests.groupby("family").size()
    assert (tests.set_index("family")["family_size"].groupby(level=0).first() == sizes).all()
    assert (tests["p_adjusted"].dropna() >= tests.loc[tests["p_adjusted"].notna(), "p_value"] - 1e-12).all()


def test_figures_written_and_shown_as_metadata(demo, instance):
    reports = benchmark_config().reports_dir
    pngs = sorted(p.name for p in reports.glob("*.png"))
    assert len([p for p in pngs if p.startswith("confusion")]) == 5
    # per race, gender and race x gender group: one grid per slice and grouping
    assert len([p for p in pngs if p.startswith("group_confusion_")]) == 5 * 3
    assert len([p for p in pngs if p.startswith("accuracy_heatmap")]) == 5
    assert len([p for p in pngs if p.startswith("forest")]) == 5
    # statistics figures: Bland-Altman per model x dimension, bias bars, strength inversion, forest of ratios
    assert len([p for p in pngs if p.startswith("bland_altman")]) == 6
    assert any(p.startswith("bias_bars") for p in pngs) and any(p.startswith("strength") for p in pngs)
    assert any(p.startswith("disparity_forest") for p in pngs)
    event = instance.get_latest_materialization_event(dg.AssetKey(["reports", "confusion_matrices"]))
    preview = event.asset_materialization.metadata["preview"].value
    assert "data:image/png;base64," in preview


def test_figures_are_drawn_after_the_statistics_of_their_run(demo, instance):
    """A refresh commits every statistics table before it draws (the figures' dagster/priority):
    the tables a researcher queries do not wait for hundreds of PNGs."""
    refreshes = [run_id for run_id in demo.run_ids
                 if instance.get_run_by_id(run_id).job_name in ("refresh_slice", "refresh_cross_slice")]
    assert refreshes
    for run_id in refreshes:
        started, finished = {}, {}
        for position, entry in enumerate(instance.all_logs(run_id)):
            event = entry.dagster_event
            if event is not None and event.step_key and event.event_type == dg.DagsterEventType.STEP_START:
                started[event.step_key] = position
            elif event is not None and event.step_key and event.event_type == dg.DagsterEventType.STEP_SUCCESS:
                finished[event.step_key] = position
        statistics = [key for key in finished if key.startswith("stats__")]
        drawn = [key for key in started if key.startswith("reports__") and key != "reports__html_report"]
        assert statistics and drawn, run_id
        assert max(finished[key] for key in statistics) < min(started[key] for key in drawn), run_id


def test_asset_checks_passed(demo, instance):
    for key, check in [
        (["raw", "dataset_images"], "quarantine_share_is_small"),
        (["raw", "predictions"], "every_image_answered_or_recorded"),
        (["raw", "predictions"], "probabilities_are_distributions"),
    ]:
        records = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(dg.AssetKey(key), check), limit=1
        )
        assert records and records[0].status.value == "SUCCEEDED", (key, check)


def test_rematerializing_a_partition_replaces_its_slice(demo, instance):
    before = query("select count(*) as n from raw.predictions")["n"].iloc[0]
    defs = load_definitions()
    cfg = benchmark_config()
    key = dg.MultiPartitionKey(
        {MODEL_DIMENSION: cfg.models["mini_xception"].partition_key, "dataset": next(iter(cfg.datasets))}
    )
    defs.resolve_job_def("evaluate_model_on_dataset").execute_in_process(instance=instance, partition_key=key)
    after = query("select count(*) as n, count(distinct run_id) as runs from raw.predictions")
    assert after["n"].iloc[0] == before
    assert after["runs"].iloc[0] == 5  # four earlier runs and the new mini run


def test_vlm_answers_reach_the_marts_and_transport_failures_are_counted(demo, instance, vlm_server):
    from tests.conftest import VLM_BLOCKED_IMAGES

    answers = query("select * from raw.predictions where model = 'loopback_vlm'")
    n_images = int(query("select count(*) as n from raw.dataset_images where dataset = 'tae_sim'")["n"].iloc[0])
    blocked = set(VLM_BLOCKED_IMAGES)
    # context carry (Tae): emotion, valence and arousal per answered image, with the prompt's hash
    assert set(answers["protocol"]) == {"context_carry"} and set(answers["model_kind"]) == {"openai"}
    assert answers.groupby("step_name").size().to_dict() == {s: n_images - len(blocked) for s in ("emotion", "valence", "arousal")}
    assert answers["prompt_hash"].str.len().eq(64).all() and answers["raw_text"].notna().all()
    assert set(answers["parse_status"]) == {"ok"} and not blocked & set(answers["image_id"])
    # the safety blocks are transport failures, not answers, and out of the accuracy denominator
    failures = query("select * from raw.transport_failures where model = 'loopback_vlm'")
    assert set(failures["image_id"]) == blocked and set(failures["kind"]) == {"safety_block"}
    assert failures["message"].str.contains("content filter").all()
    acc = query("select * from marts.group_accuracy where model = 'loopback_vlm' and grouping = 'all' and true_emotion = 'all'")
    assert acc[["n_images", "n", "correct"]].iloc[0].tolist() == [n_images - 3] * 3
    dims = query("select dimension, count(value) as n from intermediate.int_model_dimensional_answers "
                 "where model = 'loopback_vlm' group by dimension order by dimension")
    assert dims.values.tolist() == [["arousal", n_images - 3], ["valence", n_images - 3]]
    rates = query("select * from marts.transport_failure_rates where model = 'loopback_vlm'")
    overall = rates[(rates["grouping"] == "all") & (rates["kind"] == "safety_block")].iloc[0]
    assert (overall.n_images_failed, overall.n_images) == (3, n_images)
    assert overall.rate == pytest.approx(3 / n_images)
    by_race = rates[(rates["grouping"] == "race") & (rates["kind"] == "any")].set_index("group_value")["n_images_failed"]
    assert by_race.to_dict() == {"black": 1, "korean": 1, "white": 1}
    # the classifiers have no prompts: no transport rows for them
    assert set(query("select distinct model from marts.transport_failure_rates")["model"]) == {"loopback_vlm"}
    # calls, cache hits, tokens and cost are metadata of the partition's materialization
    event = instance.get_latest_materialization_event(dg.AssetKey(["raw", "predictions"]))
    records = instance.fetch_materializations(dg.AssetKey(["raw", "predictions"]), limit=50).records
    vlm = [r.asset_materialization.metadata for r in records
           if r.asset_materialization.metadata.get("model").value == "loopback_vlm"]
    assert event is not None and vlm
    meta = vlm[0]
    assert meta["calls"].value + meta["cache_hits"].value >= 3 * (n_images - 3) + 3
    assert meta["input_tokens"].value > 0 and meta["cost_usd"].value > 0
    assert meta["n_transport_failures"].value == 3

    # Re-materializing the finished partition makes no call: every answer is in the cache.
    before = vlm_server.generation_count
    key = dg.MultiPartitionKey({MODEL_DIMENSION: benchmark_config().models["loopback_vlm"].partition_key, "dataset": "tae_sim"})
    load_definitions().resolve_job_def("evaluate_model_on_dataset").execute_in_process(instance=instance, partition_key=key)
    # (the blocked images are asked again: failures are never cached)
    assert vlm_server.generation_count - before == len(blocked)
    assert len(query("select * from raw.predictions where model = 'loopback_vlm'")) == len(answers)


def test_sql_waits_for_a_writer_instead_of_failing(demo, capsys):
    # Another process (a materialization) holds the write lock for 1.5 s.
    path = benchmark_config().warehouse
    holder = hold_write_lock(path, 1.5)
    start = time.monotonic()
    assert run_sql("select count(*) as n from marts.group_accuracy", csv=True) == 0
    waited = time.monotonic() - start
    assert holder.wait(timeout=30) == 0
    assert waited >= 0.5
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "n" and int(out[1]) > 0


def test_open_sql_session_does_not_block_writers(demo):
    path = benchmark_config().warehouse
    with warehouse.snapshot_for_reading(path) as snapshot:
        reader = duckdb.connect(str(snapshot), read_only=True)
        # While the reader is open, a writer gets the real file at once.
        start = time.monotonic()
        with warehouse.writer(path, timeout_s=5) as con:
            con.execute("select 1")
        assert time.monotonic() - start < 5
        assert reader.execute("select count(*) from raw.dataset_images").fetchone()[0] > 0
        reader.close()


def test_sensor_registers_new_versions_once(demo, instance):
    defs = load_definitions()
    sensor = defs.resolve_sensor_def("configured_model_versions")
    # Everything configured is already a partition and every dataset ingested: skip.
    result = sensor.evaluate_tick(dg.build_sensor_context(instance=instance, definitions=defs))
    assert not result.run_requests and result.skip_message
    # A fresh instance: datasets are ingested first, then the versions become partitions.
    with dg.instance_for_test() as fresh:
        first = sensor.evaluate_tick(dg.build_sensor_context(instance=fresh, definitions=defs))
        assert [r.job_name for r in first.run_requests] == ["ingest_dataset", "ingest_dataset"]
        assert sorted(r.partition_key for r in first.run_requests) == ["london_subset", "tae_sim"]
        assert not first.dynamic_partitions_requests
