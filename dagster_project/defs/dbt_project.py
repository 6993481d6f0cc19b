"""The one cached DbtProject.

`prepare_if_dev` keeps the manifest fresh under `dagster dev`; a fresh clone without any
manifest gets one parsed here, so every entry point (UI, demo, tests) can load definitions.
"""


from dagster_dbt import DbtProject

from dagster_project.settings import DBT_PROJECT_DIR

dbt_project = DbtProject(project_dir=DBT_PROJECT_DIR, profiles_dir=DBT_PROJECT_DIR)
dbt_project.prepare_if_dev()
if not dbt_project.manifest_path.exists():
    dbt_project.preparer.prepare(dbt_project)
