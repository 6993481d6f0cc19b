"""UI vs CLI: the cost of re-running one model on a dataset and of the refresh that follows.

CLI: `evaluate_model_on_dataset` then `refresh_slice` for the slice, `execute_in_process` in
this process after the definitions are loaded (what `fer-warehouse demo` times per step); and
the same two runs as `dg launch --job ... --partition ...` commands (process start-up and the
code location's load included, as for a UI run).
UI: `fer-warehouse ui` on the same warehouse and DAGSTER_HOME; the evaluation is launched through
the UI's GraphQL API (`launchRun`, what the Materialize button sends) and timed from the launch
to its end; the refresh is the run launched for the slice after it (by the sensor
refresh_after_evaluation as soon as the evaluation succeeds, or by declarative automation at its
tick, whichever comes first: the output names it), timed from its launch to its end; the delay
between the evaluation's end and the refresh's launch is reported apart. "click -> results" is
the whole wait a user has, from the click to the slice's marts, statistics and figures, beside
the CLI's evaluate + refresh.

Wall times depend on the machine's load, so CPU seconds are reported beside them: for the CLI
this process's (and its dbt children's) CPU, for the UI the CPU of every process of the UI's
process group (webserver, daemon, code servers, run workers and their children) over the window.

    .venv/bin/python scripts/bench_ui.py [--model mini_xception] [--dataset london_set]
        [--attach http://127.0.0.1:3000,<pgid of dg dev>] [--cli ew,ec,rw,rc]
Needs a warehouse with the dataset ingested and the model evaluated (`make demo`).
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.dagster_ui import DagsterUI, child_group, dagster_ui, group_cpu_s  # noqa: E402

LAUNCH = """mutation($params: ExecutionParams!) { launchRun(executionParams: $params) {
  __typename ... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }"""
RUNS = """query($filter: RunsFilter) { runsOrError(filter: $filter) { ... on Runs { results {
  runId jobName status creationTime startTime endTime tags { key value } } } } }"""
DONE = {"SUCCESS", "FAILURE", "CANCELED"}
TIMED_RUNS = (("evaluate", "evaluate_model_on_dataset"), ("refresh", "refresh_slice"))  # timed, in this order


def self_cpu_s() -> float:
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def cli(model: str, dataset: str) -> dict[str, tuple[float, float]]:
    import dagster as dg

    from dagster_project.defs.partitions import slice_partition
    from dagster_project.orchestration import Step, load_definitions, run_step
    from dagster_project.settings import benchmark_config

    defs, instance = load_definitions(), dg.DagsterInstance.get()
    key = slice_partition(benchmark_config().models[model].partition_key, dataset)
    timings = {}
    for label, job in TIMED_RUNS:
        wall, cpu = time.perf_counter(), self_cpu_s()
        run_step(defs, instance, Step(label, job, key))
        timings[label] = (time.perf_counter() - wall, self_cpu_s() - cpu)
    return timings


def cli_command(model: str, dataset: str) -> dict[str, tuple[float, float]]:
    """The same two runs as `dg launch --job ... --partition ...` from a shell: a process of its
    own that loads the code location, then executes in process (what a CLI user types for one
    run; the UI's run worker pays the same start-up)."""
    import subprocess

    from dagster_project.defs.partitions import slice_partition
    from dagster_project.settings import benchmark_config

    key = str(slice_partition(benchmark_config().models[model].partition_key, dataset))
    dg_cli = str(Path(sys.executable).with_name("dg"))
    env = {**os.environ, "VIRTUAL_ENV": sys.prefix}
    timings = {}
    for label, job in TIMED_RUNS:
        wall, cpu = time.perf_counter(), self_cpu_s()
        subprocess.run([dg_cli, "launch", "--job", job, "--partition", key], cwd=ROOT, env=env, check=True,
                       capture_output=True)
        timings[label] = (time.perf_counter() - wall, self_cpu_s() - cpu)
    return timings


def median_timings(rounds: list[dict[str, tuple[float, float]]]) -> dict[str, tuple[float, float]]:
    """Per measure, the median wall and CPU seconds over the rounds. One UI round can wait in the
    queue behind the refresh runs automation launched (two runs at once) or behind the daemon's
    first automation tick; the median is the cost of a click on a quiet UI."""
    import statistics

    return {name: (statistics.median(r[name][0] for r in rounds), statistics.median(r[name][1] for r in rounds))
            for name in rounds[0]}


def wait_for_run(ui: DagsterUI, run_filter: dict, timeout_s: float, first: bool = False) -> dict:
    """The newest run matching `run_filter` once it is done (`first`: the oldest, e.g. the first
    run of a slice after its evaluation, whoever launched it)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        runs = ui.graphql(RUNS, {"filter": run_filter})["runsOrError"]["results"]
        run = (runs[-1] if first else runs[0]) if runs else None
        if run and run["status"] in DONE:
            return run
        time.sleep(0.5)
    raise TimeoutError(f"no finished run matching {run_filter} in {timeout_s} s")


def ui_timings(model: str, dataset: str, log: Path, timeout_s: float, attach: str | None = None,
               repeat: int = 1) -> dict[str, tuple[float, float]]:
    if attach:  # a UI already running: URL, its `dg dev` process group
        url, pgid = attach.rsplit(",", 1)
        return median_timings([measure_ui(DagsterUI(None, url), int(pgid), model, dataset, timeout_s)
                               for _ in range(repeat)])
    with dagster_ui(dict(os.environ), log, timeout_s=timeout_s) as ui:
        # `dg dev` runs in a process group of its own, as the child of `fer-warehouse ui`
        pgid = child_group(ui.process.pid)
        time.sleep(15)  # let the first automation tick and the webserver settle
        return median_timings([measure_ui(ui, pgid, model, dataset, timeout_s) for _ in range(repeat)])


def measure_ui(ui: DagsterUI, pgid: int, model: str, dataset: str, timeout_s: float) -> dict[str, tuple[float, float]]:
    from dagster_project.defs.partitions import DATASET_DIMENSION, MODEL_DIMENSION, slice_partition
    from dagster_project.settings import benchmark_config

    model_key = benchmark_config().models[model].partition_key
    key = slice_partition(model_key, dataset)
    tags = [{"key": "dagster/partition", "value": str(key)},
            {"key": f"dagster/partition/{MODEL_DIMENSION}", "value": model_key},
            {"key": f"dagster/partition/{DATASET_DIMENSION}", "value": dataset}]
    timings = {}
    wall, cpu = time.perf_counter(), group_cpu_s(pgid)
    launched = ui.graphql(LAUNCH, {"params": {
        "selector": {"repositoryLocationName": "fer_bias_warehouse", "repositoryName": "__repository__",
                     "jobName": "evaluate_model_on_dataset"},
        "executionMetadata": {"tags": tags}}})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise RuntimeError(f"launchRun: {launched}")
    run_id = launched["run"]["runId"]
    run = wait_for_run(ui, {"runIds": [run_id]}, timeout_s)
    timings["evaluate"] = (time.perf_counter() - wall, group_cpu_s(pgid) - cpu)
    print(f"UI evaluate {run_id} {run['status']}: {timings['evaluate']}", flush=True)
    cpu = group_cpu_s(pgid)
    after = {"tags": [{"key": "dagster/partition", "value": str(key)}], "createdAfter": run["endTime"]}
    refresh = wait_for_run(ui, after, timeout_s, first=True)
    timings["refresh"] = (refresh["endTime"] - refresh["creationTime"], group_cpu_s(pgid) - cpu)
    timings["automation delay"] = (refresh["creationTime"] - run["endTime"], 0.0)
    timings["click -> results"] = (refresh["endTime"] - run["creationTime"], 0.0)
    launcher = {tag["key"]: tag["value"] for tag in refresh["tags"]}.get("dagster/sensor_name", "?")
    print(f"UI refresh {refresh['runId']} {refresh['status']} (launched by {launcher}, "
          f"{timings['automation delay'][0]:.1f} s after the evaluation): {timings['refresh']}", flush=True)
    time.sleep(40)  # a tick of automation later: did anything refresh the slice a second time?
    again = [r for r in ui.graphql(RUNS, {"filter": after})["runsOrError"]["results"] if r["runId"] != refresh["runId"]]
    print(f"other runs of the slice since the evaluation: {len(again)} "
          f"{[{t['key']: t['value'] for t in r['tags']}.get('dagster/sensor_name') for r in again]}", flush=True)
    return timings


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="mini_xception")
    parser.add_argument("--dataset", default="london_set")
    parser.add_argument("--timeout-s", type=float, default=1800)
    parser.add_argument("--log", type=Path, default=Path("data/logs/bench_ui.log"))
    parser.add_argument("--attach", help="URL,PGID of a running `fer-warehouse ui` (its dg dev group); skips the CLI")
    parser.add_argument("--repeat", type=int, default=3, help="rounds of each measurement; medians are printed")
    parser.add_argument("--cli", help="CLI numbers measured before, as evaluate_wall,evaluate_cpu,refresh_wall,refresh_cpu")
    parser.add_argument("--launch", help="dg launch numbers measured before, as the same four values")
    args = parser.parse_args()
    args.log.parent.mkdir(parents=True, exist_ok=True)
    from dagster_project.cli import dagster_home

    dagster_home()
    if args.cli:
        ew, ec, rw, rc = map(float, args.cli.split(","))
        cli_t = {"evaluate": (ew, ec), "refresh": (rw, rc)}
    else:
        # Once: a second round in this process would find TensorFlow / torch and the weights
        # loaded, which no UI run (a fresh process each) ever does.
        cli_t = cli(args.model, args.dataset)
    print("CLI (wall s, CPU s):", {name: (round(w, 1), round(c, 1)) for name, (w, c) in cli_t.items()}, flush=True)
    if args.launch:
        ew, ec, rw, rc = map(float, args.launch.split(","))
        command_t = {"evaluate": (ew, ec), "refresh": (rw, rc)}
    else:
        command_t = median_timings([cli_command(args.model, args.dataset) for _ in range(args.repeat)])
    print("dg launch (wall s, CPU s):", {name: (round(w, 1), round(c, 1)) for name, (w, c) in command_t.items()},
          flush=True)
    ui_t = ui_timings(args.model, args.dataset, args.log, args.timeout_s, args.attach, args.repeat)
    print("CLI = in process after the definitions are loaded (a `make demo` step); dg launch = one command "
          "from a shell, start-up included")
    print(f"{'':18} {'CLI wall s':>10} {'CLI CPU s':>10} {'dg launch s':>11} {'UI wall s':>10} {'UI CPU s':>10} "
          f"{'UI/CLI wall':>11} {'UI/CLI CPU':>10} {'UI/dg launch':>12}")
    for name in ("evaluate", "refresh"):
        (cw, cc), (lw, _), (uw, uc) = cli_t[name], command_t[name], ui_t[name]
        print(f"{name:18} {cw:10.1f} {cc:10.1f} {lw:11.1f} {uw:10.1f} {uc:10.1f} {uw / cw:11.2f} {uc / cc:10.2f} "
              f"{uw / lw:12.2f}")
    print(f"{'automation delay':18} {'':10} {'':10} {'':11} {ui_t['automation delay'][0]:10.1f}")
    cli_total = cli_t["evaluate"][0] + cli_t["refresh"][0]
    launch_total = command_t["evaluate"][0] + command_t["refresh"][0]
    clicked = ui_t["click -> results"][0]
    print(f"{'click -> results':18} {cli_total:10.1f} {'':10} {launch_total:11.1f} {clicked:10.1f} {'':10} "
          f"{clicked / cli_total:11.2f} {'':10} {clicked / launch_total:12.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
