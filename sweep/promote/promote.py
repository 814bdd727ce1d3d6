"""Promotion: read a sweep's jobs from MLflow, take its verdict (``sweep/verdict.py``),
register the recommended engine as a model version with an alias, install it into a Triton
model repository (``install.py``), or roll the newest installed version back out."""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from sweep import units
from sweep.errors import PromoteError
from sweep.infra.files import PROJECT_ROOT
from sweep.promote import install
from sweep.tracking import describe
from sweep.tracking import tags as tag
from sweep.tracking.records import JobRecord, sweep_records, utterance_errors
from sweep.verdict import Constraints, Objective, Verdict, decide, format_delta, format_value

TEMPLATES = PROJECT_ROOT / "triton_templates"
# Metrics copied onto the model version as tags, so the registry alone tells what it is.
TAGGED_METRICS = ("wer", "cer", "latency_p50_ms", "latency_p99_ms", "throughput_chunks_s",
                  "build_seconds")
# The python backend needs its model.py next to the emulated engine (TensorRT plans are
# served by Triton's tensorrt backend and need nothing else).
SERVING_FILES = {"model.py": TEMPLATES / "model" / "model.py",
                 "batched.py": TEMPLATES / "common" / "batched.py"}


# --- the store ---------------------------------------------------------------------------

def client_for(uri: str) -> Any:
    """An MlflowClient on an existing store; a missing SQLite file is "no sweep", not a new
    empty store (which MLflow would otherwise create silently)."""
    from mlflow.tracking import MlflowClient

    from sweep.tracking.store import check_tracking_server

    check_tracking_server(uri)  # a server that is down: seconds, not MLflow's 4 minutes
    prefix = "sqlite:///"
    if uri.startswith(prefix):
        path = Path(uri[len(prefix):])
        path = path if path.is_absolute() else Path.cwd() / path
        if not path.is_file():
            raise PromoteError(
                f"no sweep found: there is no MLflow store at {path}. Run a sweep first, or "
                "point --tracking-uri (or tracking.uri=..., with the sweep's --config-dir) at "
                "the sweep's store."
            )
        uri = prefix + str(path.resolve())
    import mlflow

    # The registry resolves a models:/<LoggedModel id> source through the global URI.
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def find_sweep(client: Any, parent_run_id: str | None, experiment: str) -> Any:
    """The sweep's parent run: the one named, else the experiment's latest FINISHED sweep."""
    from mlflow.exceptions import MlflowException

    if parent_run_id:
        try:
            run = client.get_run(parent_run_id)
        except MlflowException as exc:
            raise PromoteError(f"no sweep found: no run {parent_run_id} in this store.") from exc
        kind = run.data.tags.get(tag.KIND)
        if kind != "sweep":
            raise PromoteError(
                f"run {parent_run_id} is not a sweep's parent run ({tag.KIND}={kind!r}); "
                "pass the parent run's id (the run named 'sweep ...'), or --experiment."
            )
        return run
    found = client.get_experiment_by_name(experiment)
    if found is None:
        raise PromoteError(f"no sweep found: the store has no experiment {experiment!r}. "
                           "Pass --experiment (tracking.experiment of the sweep).")
    runs = client.search_runs([found.experiment_id],
                              filter_string=f"tags.`{tag.KIND}` = 'sweep' and "
                                            "attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=1)
    if not runs:
        raise PromoteError(f"no sweep found: experiment {experiment!r} has no FINISHED sweep "
                           "parent run. Wait for the sweep to end, or pass --parent-run-id.")
    return runs[0]


def load_records(client: Any, parent: Any) -> list[JobRecord]:
    records = sweep_records(client, parent.info.experiment_id, parent.info.run_id)
    if not records:
        raise PromoteError(f"no sweep found: sweep {parent.info.run_id} has no job runs "
                           f"(tagged {tag.KIND}=job) to choose from.")
    return records


# --- printing ----------------------------------------------------------------------------

def make_console() -> Console:
    # CI logs are not terminals: a fixed width keeps the reasons column readable there.
    # Prose is never hard-wrapped, so a message stays one greppable line.
    console = Console(soft_wrap=True)
    return console if console.is_terminal else Console(width=160, soft_wrap=True)


def print_verdict(console: Console, parent: Any, verdict: Verdict,
                  records: list[JobRecord]) -> None:
    target, objective = verdict.target, verdict.objective
    assert target is not None  # promote resolves it or refuses first
    ref = target.reference
    console.print(f"sweep [bold]{parent.info.run_id}[/] ({parent.info.run_name}, "
                  f"{parent.info.status}), {len(records)} jobs")
    console.print("fp32 reference: " + (
        f"{ref.label} ({ref.short_id}), WER {units.percent(ref.metric('wer'))}"
        if ref else "none in this sweep"))
    console.print(f"constraints: {target.budget_reason}; device {target.device}, builder "
                  f"{target.builder_version} ({target.target_reason}); FINISHED runs only")
    console.print(f"objective: {objective.describe()}; a winner only where its interval "
                  "clears the others', else the simplest flag set of those it cannot be told "
                  "apart from; ties -> lower WER, then earlier job, then smaller run id")
    console.print("\\[brackets]: WER's 95 % bootstrap interval over utterances; ΔWER's "
                  "paired interval against fp32, in points; a latency's range over the "
                  "eval.repeats passes")
    table = Table(title="promotion candidates")
    columns = ["rank", "flag set", "run", "status", "WER %", "ΔWER pts"]
    if objective.metric != "wer":
        columns.append(objective.metric)
    for name in (*columns, "verdict"):
        table.add_column(name, justify="right" if name in columns[4:] or name == "rank"
                         else "left", overflow="fold")
    for row in verdict.rows:
        r = row.record
        table.add_row(str(row.rank or ""), escape(r.label), r.short_id, r.status,
                      escape(format_value(r, "wer").replace(" %", "")),
                      escape(format_delta(row).replace(" pts", "")),
                      *([escape(format_value(r, objective.metric))]
                        if objective.metric != "wer" else []),
                      "[bold green]recommended[/]" if row.rank == 1 else
                      escape(describe.verdict_words(row)))
    console.print(table)
    if verdict.decision:
        console.print(f"decision: {escape(verdict.decision)}")
    console.print(f"verdict: {escape(verdict.sentence)}")
    chosen = verdict.chosen
    if chosen is not None:
        console.print(f"choice: [bold]{escape(chosen.label)}[/] (run {chosen.run_id}), "
                      f"{objective.metric} {format_value(chosen, objective.metric)}, "
                      f"WER {format_value(chosen, 'wer')}")
        recorded = chosen.tags.get(tag.ENGINE_SHA256)
        console.print(f"engine: {chosen.engine_artifact}" + (
            f" of run {chosen.artifact_run}" if chosen.artifact_run != chosen.run_id else "")
            + "; " + (
            f"sha256 {recorded[:16]}… recorded by the sweep, checked before registering"
            if recorded else "no engine_sha256 recorded by the sweep: its hash is recorded on "
                             "the model version when registered"))


# --- register ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Bundle:
    """What a model version will hold, laid out in a local folder."""

    path: Path
    engine_file: str
    engine_sha256: str
    record: dict[str, Any]


@dataclass(frozen=True)
class Registered:
    name: str
    version: str
    engine_file: str
    engine_sha256: str
    # Where the bundle lies inside the version's source (a LoggedModel's artifacts hold
    # the engine as the job logged it and one folder per promotion); "" for the root.
    bundle_path: str = ""


def _download(client: Any, run_id: str, path: str, dst: Path) -> Path | None:
    from mlflow.exceptions import MlflowException

    try:
        return Path(client.download_artifacts(run_id, path, str(dst)))
    except (MlflowException, OSError):
        return None


def prepare_bundle(client: Any, selection: Verdict, sweep_id: str, dst: Path) -> Bundle:
    """Download the chosen job's engine, configs and flag set into ``dst`` and check the
    engine against the sweep's record (its run's ``engine_sha256`` tag) when there is one."""
    chosen = selection.chosen
    assert chosen is not None and chosen.engine_artifact is not None  # selection.reasons
    target = selection.target
    assert target is not None
    record: dict[str, Any] = {
        "source_run_id": chosen.run_id, "sweep_parent_run_id": sweep_id,
        "flags_label": chosen.label, "flags_digest": chosen.tags.get("flags_digest", ""),
        "device": chosen.device, "builder": chosen.tags.get("builder", ""),
        "builder_version": chosen.builder_version, "model": chosen.tags.get("model", ""),
        "objective": asdict(selection.objective), "constraint": target.budget_reason,
        "reference_run_id": target.reference.run_id if target.reference else None,
        "metrics": {k: chosen.metric(k) for k in TAGGED_METRICS},
        "flags": (chosen.flags.as_dict() if chosen.flags is not None else
                  {k.removeprefix("trt."): v for k, v in chosen.params.items()
                   if k.startswith("trt.")}),
    }
    engine_dir = _download(client, chosen.artifact_run, "engine", dst)
    engine_name = Path(chosen.engine_artifact).name
    if engine_dir is None or not (engine_dir / engine_name).is_file():
        raise PromoteError(f"run {chosen.artifact_run}: its {chosen.engine_artifact} artifact "
                           "cannot be read from the artifact store.")
    digest = install.sha256(engine_dir / engine_name)
    recorded = chosen.tags.get("engine_sha256")
    if recorded and recorded != digest:
        raise PromoteError(
            f"run {chosen.artifact_run}: {chosen.engine_artifact} has sha256 {digest}, but the "
            f"sweep recorded {recorded} (tag engine_sha256). The artifact changed after the job "
            "ran; nothing was registered or installed. Re-run that job to rebuild and re-log it."
        )
    # The Triton config of the engine (render() logs one folder per model of the job's
    # repository): without it a version would be installed that Triton loads with the
    # previous version's config, or not at all.
    repository = _download(client, chosen.artifact_run, "model_repository", dst)
    if repository is None or not (repository / "model" / "config.pbtxt").is_file():
        raise PromoteError(
            f"run {chosen.artifact_run} has no model_repository/model/config.pbtxt artifact (the "
            "Triton config the job served its engine with), or it cannot be read from the "
            "artifact store; nothing was registered or installed. Re-run the job (+force=true "
            "if its configuration FINISHED before) so that it logs its model_repository/ "
            "again, or promote another run (--parent-run-id, --objective).")
    if engine_name == "model.onnx":
        (dst / "serving").mkdir()
        for name, src in SERVING_FILES.items():
            (dst / "serving" / name).write_bytes(src.read_bytes())
    record |= {"engine_file": engine_name, "engine_sha256": digest}
    (dst / "promotion.json").write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")
    return Bundle(dst, engine_name, digest, record)


def live_version(client: Any, name: str, alias: str, digest: str,
                 folder: Path | None) -> str | None:
    """The registered version already in production with this very engine: the alias points
    at it and (when installing) it is the newest installed version. Promoting it again would
    only add an identical version, so promote stops there and a re-run is harmless."""
    from mlflow.exceptions import MlflowException

    try:
        current = client.get_model_version_by_alias(name, alias)
    except MlflowException:
        return None
    if current.tags.get("engine_sha256") != digest:
        return None
    if folder is not None:
        versions = install.installed_versions(folder)
        manifest = versions[-1].manifest if versions else None
        if not manifest or str(manifest.get("registered_version")) != str(current.version) \
                or manifest.get("registered_model") != name:
            return None
    return str(current.version)


def register(client: Any, selection: Verdict, name: str, bundle: Bundle) -> Registered:
    """A new version of registered model ``name`` holding the bundle; metrics, hashes and the
    choice as tags. The alias is set by the caller once the install (if any) succeeded."""
    from mlflow.exceptions import MlflowException

    chosen = selection.chosen
    assert chosen is not None
    record = bundle.record
    # A fresh folder per registration: a model version must never see its files change
    # when the same run is promoted again under other constraints.
    artifact_path = f"promotions/{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}"
    # The job's engine is an MLflow LoggedModel: the version is registered from it (the
    # registry shows it as the version's source model), the bundle among its artifacts.
    model_id = chosen.tags.get("logged_model_id")
    logged = None
    if model_id:
        try:
            logged = client.get_logged_model(model_id)
        except MlflowException:
            logged = None
    if logged is not None:
        client.log_model_artifacts(logged.model_id, str(bundle.path), artifact_path)
        source = f"models:/{logged.model_id}"  # the registry's source: the LoggedModel
    else:  # a run logged before engines were LoggedModels
        client.log_artifacts(chosen.run_id, str(bundle.path), artifact_path)
    try:
        client.create_registered_model(name, tags={tag.MODEL: record["model"]},
                                       description="Engines promoted by trt-sweep "
                                                   "(python -m sweep.promote).")
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    run = client.get_run(chosen.run_id)
    if logged is None:
        source = f"{run.info.artifact_uri}/{artifact_path}"
    tags = {"engine_sha256": bundle.engine_sha256, "engine_file": bundle.engine_file,
            "engine_format": ("tensorrt_plan" if bundle.engine_file == "model.plan"
                              else "onnx_emulated"),
            "flags_label": chosen.label, "flags_digest": record["flags_digest"],
            "flags": json.dumps(record["flags"], sort_keys=True)[:5000],
            "device": chosen.device, "builder": record["builder"],
            "builder_version": chosen.builder_version,
            "source_run_id": chosen.run_id, "sweep_parent_run_id": record["sweep_parent_run_id"],
            "objective": selection.objective.describe(), "constraint": record["constraint"],
            **{f"metric.{k}": f"{v:.6g}" for k, v in record["metrics"].items() if v is not None}}
    if logged is not None:
        tags |= {"logged_model_id": logged.model_id, "bundle_path": artifact_path}
    version = client.create_model_version(
        name, source=source, run_id=chosen.run_id,
        model_id=logged.model_id if logged is not None else None, tags=tags,
        description=f"{chosen.label} from sweep {record['sweep_parent_run_id']}: "
                    f"{selection.objective.describe()}, {record['constraint']}.")
    if logged is not None:
        # As mlflow.register_model does: the LoggedModel lists its registered versions (the
        # Models tab's "Registered models" column).
        listed = json.loads(logged.tags.get("mlflow.modelVersions") or "[]")
        client.set_logged_model_tags(logged.model_id, {"mlflow.modelVersions": json.dumps(
            [*listed, {"name": name, "version": str(version.version)}])})
    return Registered(name, str(version.version), bundle.engine_file, bundle.engine_sha256,
                      artifact_path if logged is not None else "")


def _install(client: Any, registered: Registered, root: Path, model_name: str,
             tracking_uri: str) -> install.InstalledVersion:
    """Install what the registry holds (downloaded back, so production gets exactly the
    registered bytes, checked against the version's engine_sha256 tag)."""
    import mlflow.artifacts

    uri = client.get_model_version_download_uri(registered.name, registered.version)
    if registered.bundle_path:
        uri = f"{uri.rstrip('/')}/{registered.bundle_path}"
    with tempfile.TemporaryDirectory(prefix="trt-sweep-install-") as tmp:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp,
                                                         tracking_uri=tracking_uri))
        files = {registered.engine_file: local / "engine" / registered.engine_file}
        if registered.engine_file == "model.onnx":
            files |= {name: local / "serving" / name for name in SERVING_FILES}
        config = local / "model_repository" / "model" / "config.pbtxt"
        config_text = None
        if config.is_file():
            # Triton requires the config's name to match its folder.
            config_text = re.sub(r'(?m)^name: ".*"$', f'name: "{model_name}"',
                                 config.read_text(encoding="utf-8"), count=1)
        manifest = {"registered_model": registered.name,
                    "registered_version": registered.version,
                    **json.loads((local / "promotion.json").read_text()),
                    "installed_at": datetime.now(UTC).isoformat(timespec="seconds")}
        repository = local / "model_repository"
        if (repository / "ensemble" / "config.pbtxt").is_file():
            return _install_unit(repository, local, registered, root, model_name, manifest)
        return install.install(root, model_name, files, registered.engine_file,
                               registered.engine_sha256, config_text, manifest)


def _install_unit(repository: Path, local: Path, registered: Registered, root: Path,
                  model_name: str, manifest: dict[str, Any]) -> install.InstalledVersion:
    """An ensemble's every model (preprocessing, model, the ensemble) as one unit."""
    members: dict[str, tuple[dict[str, Path], str]] = {}
    for folder in sorted(p for p in repository.iterdir() if p.is_dir()):
        if folder.name == "ensemble" or not (folder / "config.pbtxt").is_file():
            continue
        files = {f.name: f for f in sorted((folder / "1").glob("*")) if f.is_file()} \
            if (folder / "1").is_dir() else {}
        if folder.name == "model":
            files[registered.engine_file] = local / "engine" / registered.engine_file
            if registered.engine_file == "model.onnx":
                for name in SERVING_FILES:  # runs logged before the sources were
                    files.setdefault(name, local / "serving" / name)
        members[folder.name] = (files, (folder / "config.pbtxt").read_text(encoding="utf-8"))
    if "model" not in members:
        raise PromoteError("the registered version's model_repository/ has an ensemble but no "
                           "model/config.pbtxt; nothing was installed.")
    missing = [m for m, (files, _) in members.items() if not files]
    if missing:
        raise PromoteError(
            f"the registered version holds no files for the ensemble member(s) "
            f"{', '.join(missing)} (model_repository/<member>/1/): the job ran before trt-sweep "
            "logged the whole serving unit. Re-run it (+force=true) and promote again; nothing "
            "was installed.")
    entry = (repository / "ensemble" / "config.pbtxt").read_text(encoding="utf-8")
    return install.install_unit(root, model_name, members, entry, "model",
                                registered.engine_file, registered.engine_sha256,
                                manifest | {"serving_unit": "ensemble"})


# --- rollback ----------------------------------------------------------------------------

def rollback(console: Console, tracking_uri: str, root: Path, model_name: str,
             alias: str) -> None:
    from mlflow.exceptions import MlflowException

    folder = install.model_dir(root, model_name)
    versions = install.installed_versions(folder)
    manifest = versions[-1].manifest if versions else None
    client = None
    if manifest and manifest.get("registered_model"):
        # Reach the registry before touching any file, so a dead store cannot leave the
        # files rolled back and the alias still on the removed version.
        client = client_for(tracking_uri)
        client.get_registered_model(manifest["registered_model"])
    removed, current = install.rollback(root, model_name)
    console.print(f"removed {removed.path} (registered "
                  f"{(removed.manifest or {}).get('registered_model')} version "
                  f"{(removed.manifest or {}).get('registered_version')}); the newest version of "
                  f"{model_name} is now {current.number}")
    if client is None or removed.manifest is None:
        return
    name, old = removed.manifest["registered_model"], str(removed.manifest["registered_version"])
    client.set_model_version_tag(name, old, tag.ROLLED_BACK,
                                 datetime.now(UTC).isoformat(timespec="seconds"))
    try:
        aliased = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        aliased = None
    if aliased != old:
        console.print(f"alias {alias!r} of {name} points at version {aliased}, not the removed "
                      f"{old}: left as it is.")
        return
    back = _registered_match(client, name, current)
    if back is not None and back != old:
        client.set_registered_model_alias(name, alias, back)
        console.print(f"alias {alias!r} of {name} moved back to version {back}")
    else:
        client.delete_registered_model_alias(name, alias)
        console.print(f"alias {alias!r} of {name} removed: no version of {name} in this "
                      f"registry matches what {current.path} holds")


def _registered_match(client: Any, name: str, installed: install.InstalledVersion
                      ) -> str | None:
    """The registered version whose files ``installed`` holds. The manifest's version number
    alone is not enough: the folder may have been promoted from another store, where the
    same name and number mean another engine; the run id and the hash must agree too."""
    from mlflow.exceptions import MlflowException

    m = installed.manifest or {}
    if m.get("registered_model") != name or m.get("registered_version") is None:
        return None
    try:
        version = client.get_model_version(name, str(m["registered_version"]))
    except MlflowException:
        return None
    if version.run_id != m.get("source_run_id") or \
            version.tags.get("engine_sha256") != m.get("engine_sha256"):
        return None
    return str(version.version)


def promote(args: argparse.Namespace, console: Console) -> None:
    objective = Objective.parse(args.objective)
    client = client_for(args.tracking_uri)
    parent = find_sweep(client, args.parent_run_id, args.experiment)
    constraints = Constraints(max_wer_delta=args.max_wer_delta, max_wer=args.max_wer,
                              device=args.device, builder_version=args.builder_version,
                              min_streams_at_slo=args.min_streams_at_slo,
                              allow_mismatch=args.allow_precision_mismatch,
                              max_gpu_memory_mib=args.max_gpu_memory_mib,
                              allow_reused=parent.data.tags.get(tag.REUSE_ACROSS_SWEEPS)
                              == "true")
    records = [r for r in load_records(client, parent)
               if (not args.dataset or r.dataset == args.dataset)
               and (not args.model or r.model == args.model)]
    if not records:
        raise PromoteError(f"no job of sweep {parent.info.run_id} has dataset "
                           f"{args.dataset or 'any'} and model {args.model or 'any'}.")
    errors = {r.run_id: e for r in records if (e := utterance_errors(client, r)) is not None}
    selection = decide(records, objective, constraints, errors)
    if selection.target is None:
        raise PromoteError(selection.problem)
    print_verdict(console, parent, selection, records)
    chosen = selection.chosen
    if chosen is None:
        raise PromoteError(selection.refusal())
    model = chosen.tags.get("model") or "model"
    model_name = args.model_name or model
    name = args.name or f"trt-sweep-{model}"
    folder = None
    if args.repository_root is not None:
        # A bad target is refused before anything is registered, and in a dry run too.
        folder = install.model_dir(args.repository_root, model_name)
        versions = install.installed_versions(folder)
        console.print(f"target: {folder}/{versions[-1].number + 1 if versions else 1} "
                      f"(installed now: {', '.join(str(v.number) for v in versions) or 'none'})")
    if args.dry_run:
        console.print(f"dry run: nothing registered ({name}, alias {args.alias!r}) or "
                      "installed.")
        return
    with tempfile.TemporaryDirectory(prefix="trt-sweep-promote-") as tmp:
        bundle = prepare_bundle(client, selection, parent.info.run_id, Path(tmp))
        live = live_version(client, name, args.alias, bundle.engine_sha256, folder)
        if live is not None:
            console.print(f"already in production: {name} version {live} (alias "
                          f"{args.alias!r}) holds this engine; nothing to do.")
            return
        registered = register(client, selection, name, bundle)
    console.print(f"registered [bold]{name}[/] version {registered.version} "
                  f"(engine sha256 {registered.engine_sha256[:16]}…)")
    if args.repository_root is not None:
        try:
            installed = _install(client, registered, args.repository_root, model_name,
                                 client.tracking_uri)
        except BaseException:
            # Nothing reached production: drop the version so the registry does not list
            # an engine that was never installed.
            client.delete_model_version(name, registered.version)
            raise
        for key, value in (("triton.repository_root", str(args.repository_root.resolve())),
                           ("triton.model_name", model_name),
                           ("triton.version", str(installed.number))):
            client.set_model_version_tag(name, registered.version, key, value)
        members = (installed.manifest or {}).get("unit_members")
        console.print(f"installed {installed.path / registered.engine_file} "
                      f"(Triton version {installed.number})" if not members else
                      f"installed the serving unit {model_name} version {installed.number}: "
                      f"ensemble {installed.path.parent}, members "
                      f"{', '.join(members)}")
    client.set_registered_model_alias(name, args.alias, registered.version)
    console.print(f"alias {args.alias!r} -> {name} version {registered.version}")
