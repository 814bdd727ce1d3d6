"""Every MLflow tag name the sweep writes or reads, once. Values are unchanged from earlier
releases: runs logged before still read the same."""

from __future__ import annotations

# What a run is: "sweep" (a multirun's parent), "job", "doctor", "precision_search", "probe",
# "ranking" (a precision search's ranking round).
KIND = "trt-sweep.kind"
# host/boot id/pid/start time of the process that ran it (closing orphaned runs).
OWNER = "trt-sweep.owner"
# The job's identity (flags, ONNX, data, device, settings) that resume matches.
IDENTITY = "trt-sweep.identity"
RESUMED_FROM = "resumed_from"
# The sweep command a run belongs to (a digest of the multirun's overrides): rerunning the
# same command resumes it; a FINISHED job of another sweep is measured again, not copied
# (unless tracking.reuse_across_sweeps=true, and then marked).
SWEEP_KEY = "trt-sweep.sweep_key"
# The flag set a job ran, as JSON (FlagSet.as_dict): read back as a FlagSet, not re-parsed
# from the flattened trt.* params.
FLAGS = "trt-sweep.flags"
# The reason a run ended FAILED or KILLED.
ERROR = "error"
# The job's own folder (Hydra's output dir), tagged at its start: where its results.json is
# kept when the store stops accepting writes (sweep/tracking/failures.py), and where the
# next sweep looks for it before closing the run.
JOB_DIR = "trt-sweep.job_dir"
# A run the store left RUNNING, closed by a later sweep from the results.json its job kept.
RECOVERED_FROM = "trt-sweep.recovered_from"
PARENT_RUN = "mlflow.parentRunId"
# The run's description in the MLflow UI (a job's figures; the sweep's verdict).
NOTE = "mlflow.note.content"
# promote: the run a registered version came from, and a rolled-back version.
MODEL = "trt-sweep.model"
ROLLED_BACK = "trt-sweep.rolled_back"

# The Ray node a job ran on (a launcher that runs jobs on a cluster): its address and id.
RAY_NODE_IP = "ray.node_ip"
RAY_NODE_ID = "ray.node_id"
# A run its Ray worker left RUNNING (the node died), and the run of the job's retry.
RETRIED_BY = "trt-sweep.retried_by"

# What a job records of its flag set and engine.
FLAGS_DIGEST = "flags_digest"
ENGINE_HASH = "engine_hash"
ENGINE_CACHED = "engine_cached"
ENGINE_SHA256 = "engine_sha256"
BUILDER = "builder"
BUILDER_VERSION = "builder_version"
DEVICE = "device"
TRANSPORT = "transport"
# The typed ONNX a flag set realised in the graph was built from, and what made it.
TYPED_SHA256 = "typed_sha256"
TYPED_TOOL = "typed_tool"
# A job whose engine does not run the precision its label says (the reason; sweep/builder/
# layer_info.py): verdicts and promote refuse it unless forced.
PRECISION_MISMATCH = "precision_mismatch"
# A builder.dry_run job: planned, not built or measured.
DRY_RUN = "dry_run"
# The job's engine as an MLflow LoggedModel, and the digest of the test set it measured.
LOGGED_MODEL = "logged_model_id"
DATASET_DIGEST = "dataset_digest"
DATASET = "dataset"
MODEL_NAME = "model"
SERVER = "server"
SWEEP_DIR = "sweep_dir"
# The verdict's words on a job, set at the end of its sweep: on the front, recommended,
# or why it was not judged.
VERDICT = "trt-sweep.verdict"
# On the sweep's parent: the recommended job's run, and whether the sweep compared jobs
# copied from other sweeps (tracking.reuse_across_sweeps).
RECOMMENDED = "trt-sweep.recommended"
REUSE_ACROSS_SWEEPS = "trt-sweep.reuse_across_sweeps"
# The experiment's kind, which picks the MLflow 3 UI's default view: MLflow's UI opens a
# "custom_model_development" experiment on its runs table, a "genai_development" one (or an
# untagged one it infers as such) on the GenAI overview.
EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_VALUE = "custom_model_development"
