"""Half-price deliveries of the openai kind (`options.delivery`) and what they cost, through
the official `openai` client against the loopback server of tests/support/batch_servers.py
(real HTTP, nothing patched): Flex with its fallback when shed, the dry run's cost per tier,
the cost marts built by dbt, and the budget cap (refuse, stop, keep every answer)."""

from __future__ import annotations

import duckdb
import pandas as pd
import pytest

from inference.batch_ledger import WarehouseLedger
from inference.config import ModelConfig
from support.openai_server import rate_limited
from support.delivery_fixtures import (  # noqa: F401  (images, server: fixtures)
    LONDON, N_IMAGES, SLICE, adapter, images, rounds, server,
)


# ----------------------------------------------------------------------------- flex


def test_flex_asks_for_the_flex_tier_and_falls_back_to_standard_when_shed(server, images, tmp_path):
    server.shed_flex = 5  # five flex requests meet "429 Resource Unavailable"
    model = adapter(server, tmp_path, delivery="flex")
    answers = model.predict(images)
    tiers = pd.Series([a.preprocessing["service_tier"] for a in answers]).value_counts().to_dict()
    assert tiers == {"flex": 3 * N_IMAGES - 5, "standard": 5}
    sent = [r.body.get("service_tier") for r in server.generation_requests]
    assert sent.count("flex") == 3 * N_IMAGES and sent.count(None) == 5  # each shed one once more, standard
    assert server.flex_shed == 5 and len(answers) == 3 * N_IMAGES
    # the run's cost prices each answer at the tier that served it
    by_tier: dict[str, list[int]] = {}
    for a in answers:
        by_tier.setdefault(a.preprocessing["service_tier"], []).append(a)
    expected = sum((a.input_tokens * 2.5 + a.output_tokens * 10) * (0.5 if tier == "flex" else 1.0)
                   for tier, group in by_tier.items() for a in group) / 1e6
    assert model.usage["cost_usd"] == pytest.approx(expected, abs=1e-6)


def test_an_accounts_rate_limit_on_flex_is_waited_out_not_sent_at_standard(server, images, tmp_path):
    server.enqueue(rate_limited(retry_after="0.05"))
    answers = adapter(server, tmp_path, delivery="flex", max_retries=0).predict(images[:1])
    assert {a.preprocessing["service_tier"] for a in answers} == {"flex"}
    assert [r.body.get("service_tier") for r in server.generation_requests] == ["flex"] * 4


# ----------------------------------------------------------------------------- dry run and prices


def test_dry_run_prints_each_tiers_cost(images, tmp_path, capsys):
    from dagster_project.cli import main

    config = tmp_path / "benchmark.yaml"
    config.write_text(f"""
warehouse: {tmp_path / 'none.duckdb'}
cache_dir: {tmp_path / 'cache'}
datasets:
  faces: {{kind: london_set, location: {LONDON}, allow_external_apis: true}}
models:
  gpt:
    kind: openai
    version: gpt-x
    options:
      protocol: {{name: maj_at_k, k: 5, temperature: 1}}
      price_per_million_tokens: {{input: 2.5, output: 10, flex: {{input: 1.5, output: 6}}}}
      delivery: auto
      deliver_within_h: 48
""")
    assert main(["dry-run", "--config", str(config)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.strip().startswith("gpt@gpt-x")).split()
    header = next(line for line in out.splitlines() if "cost_standard_usd" in line).split()
    values = dict(zip(header, row))
    standard, flex, batch = (float(values[f"cost_{t}_usd"]) for t in ("standard", "flex", "batch"))
    assert values["delivery"] == "batch"  # 48 h allow the 24 h batch window
    assert batch == pytest.approx(standard / 2, abs=1e-4) and float(values["projected_cost_usd"]) == batch
    assert flex == pytest.approx(standard * 0.6, abs=1e-4)  # its own configured price


def test_auto_without_a_deadline_and_flex_on_gemini_are_refused_naming_the_key(tmp_path):
    from inference.config import ConfigError
    from inference.models.vlm_options import vlm_options
    from inference.vlm.delivery import resolve_delivery

    def auto(kind: str, hours: float) -> str:
        cfg = ModelConfig(name="g", kind=kind, version="x", options={"delivery": "auto", "deliver_within_h": hours})
        return resolve_delivery(kind, vlm_options(cfg))

    assert (auto("openai", 24), auto("openai", 23.9), auto("gemini", 48), auto("gemini", 2)) == (
        "batch", "flex", "batch", "standard")  # the 24 h batch window; gemini has no flex here

    with pytest.raises(ConfigError, match=r"models.g.options.delivery: auto picks the tier by a deadline"):
        vlm_options(ModelConfig(name="g", kind="openai", version="x", options={"delivery": "auto"}))
    with pytest.raises(ConfigError, match=r"models.g.options.delivery: kind gemini has no flex tier"):
        vlm_options(ModelConfig(name="g", kind="gemini", version="x", options={"delivery": "flex"}))


# ----------------------------------------------------------------------------- budget cap


def test_a_run_whose_estimate_exceeds_the_budget_refuses_to_start_naming_it(server, images, tmp_path):
    from inference.models.vlm import BudgetExceeded

    model = adapter(server, tmp_path, budget_usd=0.001)
    estimate = model.plan(images)["projected_cost_usd"]
    with pytest.raises(BudgetExceeded, match=rf"dry-run estimate for {N_IMAGES} images is \${estimate:.2f} at the "
                                             rf"standard tier .* over budget_usd 0.001: the run is not started"):
        model.predict(images)
    assert server.requests == []  # nothing sent, nothing uploaded
    with pytest.raises(BudgetExceeded):
        adapter(server, tmp_path, budget_usd=0.001, delivery="batch").predict(
            images, batch_ledger=WarehouseLedger(tmp_path / "wh.duckdb", SLICE))
    assert server.requests == [] and not (tmp_path / "wh.duckdb").exists()


def test_a_run_whose_billed_tokens_reach_the_budget_stops_sending_and_keeps_every_answer(server, images, tmp_path):
    # retries of invalid answers are not in the estimate (first tries only): the billed cost can reach it
    server.answer_fn = lambda r: "I cannot tell"
    options = dict(protocol={"name": "retry_until_valid", "max_tries": 10, "max_tokens": 16}, max_in_flight=1)
    estimate = adapter(server, tmp_path, **options).plan(images)["projected_cost_usd"]
    model = adapter(server, tmp_path, budget_usd=round(estimate * 1.1, 4), **options)
    answers = model.predict(images)
    budget_failures = [f for f in model.transport_failures if f["kind"] == "budget"]
    assert model.usage["stopped_at_budget"] and budget_failures
    assert "reached budget_usd" in budget_failures[0]["message"]
    assert len(answers) == server.generation_count < 10 * N_IMAGES  # every answer billed is kept
    assert model.usage["cost_usd"] >= model.options.budget_usd
    spent_before_last = model.usage["cost_usd"] - max(
        (a.input_tokens * 2.5 + a.output_tokens * 10) / 1e6 for a in answers)
    assert spent_before_last < model.options.budget_usd  # it stopped at the first answer that reached it
    # a rerun with a larger budget asks only what was never sent: no request goes out twice
    rerun = adapter(server, tmp_path, budget_usd=1.0, **options)
    assert len(rerun.predict(images)) == 10 * N_IMAGES and rerun.transport_failures == []
    assert rerun.usage["cache_hits"] == len(answers) and server.generation_count == 10 * N_IMAGES


def test_batches_stop_being_submitted_once_their_billed_cost_reaches_the_budget(server, images, tmp_path):
    server.answer_fn = lambda r: "I cannot tell"
    options = dict(delivery="batch", protocol={"name": "retry_until_valid", "max_tries": 10, "max_tokens": 16})
    estimate = adapter(server, tmp_path, **options).plan(images[:1])["projected_cost_usd"]
    model = adapter(server, tmp_path, budget_usd=round(estimate * 1.1, 5), **options)
    ledger = WarehouseLedger(tmp_path / "wh.duckdb", SLICE)
    answers, _ = rounds(model, images[:1], ledger, limit=40)
    assert 1 < len(answers) < 10 and [f["kind"] for f in model.transport_failures] == ["budget"]
    assert len(server.batches) == len(answers) == sum(server.batch_submissions.values())  # one try per batch
    billed = sum(a.input_tokens * 1.25 + a.output_tokens * 5 for a in answers) / 1e6
    last = (answers[-1].input_tokens * 1.25 + answers[-1].output_tokens * 5) / 1e6
    assert billed >= model.options.budget_usd > billed - last  # stopped at the first batch that reached it


# ----------------------------------------------------------------------------- cost in SQL


def test_the_cost_marts_price_each_stored_answer_at_its_tier_as_the_run_billed_it(server, images, tmp_path):
    from dbt_support import run_dbt

    from inference import warehouse
    from inference.frames import Discovery, evaluation_rows, utc_now
    from inference.models.base import EvaluationContext

    server.shed_flex = 4
    model = adapter(server, tmp_path, delivery="flex")
    evaluation = model.evaluate(images, EvaluationContext())
    cfg = model.cfg
    rows = evaluation_rows(evaluation, run_id="run-flex", model=cfg, dataset="faces", n_images=N_IMAGES,
                           started=utc_now(), discovery=Discovery())
    path = tmp_path / "warehouse.duckdb"
    with warehouse.writer(path) as con:
        warehouse.write_evaluation(con, {"model": "gpt", "model_version": "v1", "dataset": "faces"}, rows)
    run_dbt(["run", "--select", "+run_costs"], warehouse=path, target_dir=tmp_path / "target")
    tested = run_dbt(["test", "--select", "answer_costs", "run_costs"], warehouse=path, target_dir=tmp_path / "target")
    assert len(tested["results"]) >= 10 and {r["status"] for r in tested["results"]} == {"pass"}
    con = duckdb.connect(str(path), read_only=True)
    per_tier = dict(con.execute("select service_tier, cost_usd from marts.run_costs").fetchall())
    n_by_tier = dict(con.execute("select service_tier, n_answers from marts.run_costs").fetchall())
    con.close()
    assert n_by_tier == {"flex": 3 * N_IMAGES - 4, "standard": 4, "all": 3 * N_IMAGES}
    assert per_tier["all"] == pytest.approx(evaluation.usage.cost_usd, abs=1e-9)  # SQL = the run's own bill
    standard = [a for a in evaluation.answers if a.preprocessing["service_tier"] == "standard"]
    assert per_tier["standard"] == pytest.approx(
        sum(a.input_tokens * 2.5 + a.output_tokens * 10 for a in standard) / 1e6, abs=1e-9)
    assert per_tier["flex"] == pytest.approx(per_tier["all"] - per_tier["standard"], abs=1e-9)
