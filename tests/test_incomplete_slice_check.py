"""A request still unanswered at the run's deadline (transport failure kind 'deadline') is no
outcome: the completeness check of raw/predictions fails for its slice until a rerun asks it,
while a request that failed for good (e.g. a safety block, a 5xx after its retries) counts as
recorded."""

from __future__ import annotations

import pytest

from dagster_project.defs.checks import every_image_answered_or_recorded
from dagster_project.defs.resources import WarehouseResource


@pytest.mark.parametrize(("kind", "complete"), [("deadline", False), ("budget", False), ("server_error", True)])
def test_an_image_unanswered_at_the_deadline_leaves_its_slice_incomplete(tmp_path, kind, complete):
    resource = WarehouseResource(database=str(tmp_path / "warehouse.duckdb"))
    with resource.get_connection() as con:
        con.execute("""insert into raw.dataset_images
            (dataset, image_id, image_hash, label_set, source_label, width, height, loaded_at) values
            ('d', 'a.jpg', 'ha', 'canonical', 'happiness', 1, 1, now()),
            ('d', 'b.jpg', 'hb', 'canonical', 'sadness', 1, 1, now())""")
        con.execute("""insert into raw.predictions
            (run_id, model, model_version, model_kind, label_set, dataset, image_id, image_hash, protocol,
             step, step_name, sample_index, attempt, parse_status, created_at) values
            ('r1', 'gpt', 'v1', 'openai', 'canonical', 'd', 'a.jpg', 'ha', 'single', 1, 'emotion', 0, 1, 'ok', now())""")
        con.execute("""insert into raw.transport_failures
            (run_id, model, model_version, dataset, image_id, image_hash, protocol, step, step_name,
             sample_index, attempt, kind, status, message, created_at) values
            ('r1', 'gpt', 'v1', 'd', 'b.jpg', 'hb', 'single', 1, 'emotion', 0, 1, ?, null, 'no answer', now())""",
                    [kind])
    result = every_image_answered_or_recorded(duckdb=resource)
    assert result.passed is complete
    assert ("b.jpg" not in str(result.metadata)) and (("gpt" in str(result.metadata)) is not complete)
