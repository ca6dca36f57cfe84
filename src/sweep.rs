//! Sweeps as data: a spec of stages (generate → train → masks over checkpoints × shapes × α ×
//! seeds → report) expands into a job table, and every job is one `avr` command with its
//! inputs, outputs and the stage it waits for. The same table runs on a laptop
//! ([`run_local`], `avr sweep local`) and on a Slurm cluster (`avr sweep slurm`: one job array
//! per stage, chained with `afterok`), so both run one plan and write the same bytes.
//!
//! A job is idempotent: [`run_job`] skips it when its outputs exist and are whole, and the
//! commands write atomically, so a killed job leaves either its old outputs or none. Its log
//! and its state marker (`running` / `done` / `failed`) sit in the sweep folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::files::write_atomic;
use crate::{Error, Result};

/// A sweep spec (JSON): named stages in order, each a command template over a grid.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSpec {
    /// The sweep's name (job names on the cluster).
    pub name: String,
    /// The stages, run in this order; a stage starts when every job of the one before is done.
    pub stages: Vec<StageSpec>,
}

/// One stage: `avr` arguments and output paths with `{name}` placeholders, expanded over every
/// combination of `grid` values (one job when the grid is empty). `{dir}` is the sweep folder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// The stage's name (`generate`, `train`, `masks`, `report`, …).
    pub name: String,
    /// Values of each placeholder; the jobs are their Cartesian product (keys in order).
    #[serde(default)]
    pub grid: BTreeMap<String, Vec<String>>,
    /// Arguments of `avr` (without the program name).
    pub args: Vec<String>,
    /// Files that exist and are whole when the job is done.
    pub outputs: Vec<String>,
    /// Files the job reads (listed in the table; checked before it runs).
    #[serde(default)]
    pub inputs: Vec<String>,
}

/// One job of the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    /// Position in the table.
    pub id: usize,
    /// Its stage's name.
    pub stage: String,
    /// Its index within the stage (`SLURM_ARRAY_TASK_ID`).
    pub index: usize,
    /// `avr` arguments.
    pub args: Vec<String>,
    /// Files it reads.
    pub inputs: Vec<PathBuf>,
    /// Files it writes.
    pub outputs: Vec<PathBuf>,
    /// Jobs that must be done first (every job of the previous stage).
    pub after: Vec<usize>,
}

/// The expanded sweep: what `avr sweep plan` writes to `DIR/jobs.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobTable {
    /// The sweep's name.
    pub name: String,
    /// Where every relative path of the jobs is resolved (the folder the plan was made in).
    pub workdir: PathBuf,
    /// Stage names in order.
    pub stages: Vec<String>,
    /// Every job.
    pub jobs: Vec<Job>,
}

/// A job's state as the sweep folder records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Outputs whole (whether run here or found).
    Done,
    /// Started and not finished (or killed before it could say so).
    Running,
    /// Its command failed.
    Failed,
    /// Not started.
    Pending,
}

fn table_path(dir: &Path) -> PathBuf {
    dir.join("jobs.json")
}

fn state_path(dir: &Path, id: usize, state: &str) -> PathBuf {
    dir.join("state").join(format!("{id}.{state}"))
}

/// The log of job `id`.
pub fn log_path(dir: &Path, id: usize) -> PathBuf {
    dir.join("logs").join(format!("{id}.log"))
}

fn substitute(template: &str, values: &BTreeMap<&str, &str>) -> Result<String> {
    let mut out = template.to_string();
    for (key, value) in values {
        out = out.replace(&format!("{{{key}}}"), value);
    }
    if let Some(start) = out.find('{') {
        if let Some(len) = out[start..].find('}') {
            return Err(Error::Config(format!(
                "sweep: `{template}` names {} that no grid of its stage defines",
                &out[start..start + len + 1]
            )));
        }
    }
    Ok(out)
}

/// Every combination of the grid's values, keys in order.
fn combinations(grid: &BTreeMap<String, Vec<String>>) -> Vec<BTreeMap<&str, &str>> {
    let mut all = vec![BTreeMap::new()];
    for (key, values) in grid {
        all = all
            .into_iter()
            .flat_map(|partial| {
                values.iter().map(move |v| {
                    let mut next = partial.clone();
                    next.insert(key.as_str(), v.as_str());
                    next
                })
            })
            .collect();
    }
    all
}

impl SweepSpec {
    /// Reads a spec, naming the file in every error.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let spec: SweepSpec = serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(path, format!("not a sweep spec: {e}")))?;
        if spec.stages.is_empty() {
            return Err(Error::bad_file(path, "a sweep needs at least one stage"));
        }
        if let Some(s) = spec.stages.iter().find(|s| s.outputs.is_empty()) {
            return Err(Error::bad_file(
                path,
                format!(
                    "stage `{}` lists no outputs: a job could never be known done",
                    s.name
                ),
            ));
        }
        Ok(spec)
    }

    /// The job table of this spec with its outputs under `dir` (`{dir}`), paths relative to
    /// `workdir`.
    pub fn plan(&self, dir: &Path, workdir: &Path) -> Result<JobTable> {
        let dir_text = dir.display().to_string();
        let mut jobs: Vec<Job> = Vec::new();
        let mut previous: Vec<usize> = Vec::new();
        for stage in &self.stages {
            let mut this_stage = Vec::new();
            for (index, mut values) in combinations(&stage.grid).into_iter().enumerate() {
                values.insert("dir", &dir_text);
                let expand = |items: &[String]| -> Result<Vec<String>> {
                    items.iter().map(|t| substitute(t, &values)).collect()
                };
                let id = jobs.len();
                jobs.push(Job {
                    id,
                    stage: stage.name.clone(),
                    index,
                    args: expand(&stage.args)?,
                    inputs: expand(&stage.inputs)?
                        .into_iter()
                        .map(PathBuf::from)
                        .collect(),
                    outputs: expand(&stage.outputs)?
                        .into_iter()
                        .map(PathBuf::from)
                        .collect(),
                    after: previous.clone(),
                });
                this_stage.push(id);
            }
            previous = this_stage;
        }
        Ok(JobTable {
            name: self.name.clone(),
            workdir: workdir.to_path_buf(),
            stages: self.stages.iter().map(|s| s.name.clone()).collect(),
            jobs,
        })
    }
}

impl JobTable {
    /// Writes the table to `DIR/jobs.json` (atomically) and creates the log and state folders.
    pub fn save(&self, dir: &Path) -> Result<PathBuf> {
        for sub in ["logs", "state"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| Error::io(dir.join(sub), e))?;
        }
        let path = table_path(dir);
        write_atomic(&path, serde_json::to_string_pretty(self)?.as_bytes())?;
        Ok(path)
    }

    /// Reads `DIR/jobs.json`.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = table_path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        serde_json::from_str(&text)
            .map_err(|e| Error::bad_file(&path, format!("not a job table: {e}")))
    }

    /// The jobs of `stage`, in index order.
    pub fn stage_jobs(&self, stage: &str) -> Vec<&Job> {
        self.jobs.iter().filter(|j| j.stage == stage).collect()
    }

    /// Job `index` of `stage`.
    pub fn job_at(&self, stage: &str, index: usize) -> Result<&Job> {
        self.stage_jobs(stage).get(index).copied().ok_or_else(|| {
            Error::Config(format!(
                "sweep {}: stage `{stage}` has no job {index}",
                self.name
            ))
        })
    }

    /// A path of a job, resolved against the plan's working folder.
    pub fn resolve(&self, path: &Path) -> PathBuf {
        match path.is_absolute() {
            true => path.to_path_buf(),
            false => self.workdir.join(path),
        }
    }
}

/// Whether `path` exists and is whole: a non-empty file; JSON that parses; a `.safetensors`
/// whose JSON sidecar exists and parses (our writers put the sidecar in place before the
/// weights, so weights without one were never finished).
pub fn is_whole(path: &Path) -> bool {
    let Ok(meta) = std::fs::metadata(path) else {
        return false;
    };
    if !meta.is_file() || meta.len() == 0 {
        return false;
    }
    let parses = |p: &Path| {
        std::fs::read(p)
            .ok()
            .is_some_and(|b| serde_json::from_slice::<serde_json::Value>(&b).is_ok())
    };
    match path.extension().and_then(|e| e.to_str()) {
        Some("json") => parses(path),
        Some("safetensors") => parses(&path.with_extension("json")),
        _ => true,
    }
}

/// The state of job `id` in `dir`. A `failed` marker, or a `running` one whose process is gone
/// (killed: same host, no such pid), reads as failed; a live `running` one as running — even
/// when outputs exist, as a killed `generate` leaves some. Otherwise the job is done when its
/// outputs are whole (with a `done` marker, or none: outputs made by hand count) and pending when not.
pub fn job_state(table: &JobTable, dir: &Path, job: &Job) -> JobState {
    if state_path(dir, job.id, "failed").exists() {
        return JobState::Failed;
    }
    if let Ok(marker) = std::fs::read_to_string(state_path(dir, job.id, "running")) {
        return match process_is_gone(&marker) {
            true => JobState::Failed,
            false => JobState::Running,
        };
    }
    match job.outputs.iter().all(|o| is_whole(&table.resolve(o))) {
        true => JobState::Done,
        false => JobState::Pending,
    }
}

/// This host's name, as markers record it.
fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// Whether a `running` marker (`pid P host H`) names a process of this host that no longer
/// exists. Another host's process cannot be checked from here: it counts as alive.
fn process_is_gone(marker: &str) -> bool {
    let words: Vec<&str> = marker.split_whitespace().collect();
    match (
        words.get(1).and_then(|p| p.parse::<u32>().ok()),
        words.get(3),
    ) {
        (Some(pid), Some(host)) if *host == host_name() => {
            !Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

/// What [`run_job`] did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobOutcome {
    /// The job.
    pub id: usize,
    /// Whether its outputs were already whole (nothing run).
    pub skipped: bool,
    /// The final state.
    pub state: JobState,
    /// Seconds it ran.
    pub seconds: f64,
}

fn mark(dir: &Path, id: usize, state: &str, text: &str) -> Result<()> {
    for other in ["running", "done", "failed"] {
        let _ = std::fs::remove_file(state_path(dir, id, other));
    }
    write_atomic(&state_path(dir, id, state), text.as_bytes())
}

/// Runs job `id` with the `avr` binary `avr`: skipped when its outputs are whole; otherwise its
/// inputs are checked, the command runs in the plan's working folder with its output appended
/// to the job's log, and the outputs are checked again. A failed command is an error naming the
/// job and its log.
pub fn run_job(avr: &Path, dir: &Path, id: usize) -> Result<JobOutcome> {
    let table = JobTable::load(dir)?;
    let job = table.jobs.get(id).ok_or_else(|| {
        Error::Config(format!(
            "sweep {}: no job {id} (it has {})",
            table.name,
            table.jobs.len()
        ))
    })?;
    let started = std::time::Instant::now();
    if job_state(&table, dir, job) == JobState::Done {
        mark(dir, id, "done", "outputs found whole\n")?;
        return Ok(JobOutcome {
            id,
            skipped: true,
            state: JobState::Done,
            seconds: 0.0,
        });
    }
    if let Some(missing) = job.inputs.iter().find(|i| !table.resolve(i).exists()) {
        mark(
            dir,
            id,
            "failed",
            &format!("missing input {}\n", missing.display()),
        )?;
        return Err(Error::bad_file(
            table.resolve(missing),
            format!("input of sweep job {id} ({}) is missing", job.stage),
        ));
    }
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    mark(
        dir,
        id,
        "running",
        &format!("pid {} host {}", std::process::id(), host.trim()),
    )?;
    let log = log_path(dir, id);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .map_err(|e| Error::io(&log, e))?;
    let err = file.try_clone().map_err(|e| Error::io(&log, e))?;
    let status = std::process::Command::new(avr)
        .args(&job.args)
        .current_dir(&table.workdir)
        .stdout(file)
        .stderr(err)
        .status()
        .map_err(|e| Error::io(avr, e))?;
    let seconds = started.elapsed().as_secs_f64();
    let whole = job.outputs.iter().all(|o| is_whole(&table.resolve(o)));
    if !status.success() || !whole {
        let why = match status.success() {
            true => "its outputs are not all there".to_string(),
            false => format!("exit {status}"),
        };
        mark(dir, id, "failed", &format!("{why}\n"))?;
        return Err(Error::bad_file(
            &log,
            format!("sweep job {id} ({}) failed: {why}", job.stage),
        ));
    }
    mark(dir, id, "done", &format!("{seconds:.1} s\n"))?;
    Ok(JobOutcome {
        id,
        skipped: false,
        state: JobState::Done,
        seconds,
    })
}

/// Every job's state, for `avr sweep status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SweepStatus {
    /// The sweep's name.
    pub name: String,
    /// `(id, stage, index, state)` of every job.
    pub jobs: Vec<(usize, String, usize, JobState)>,
    /// Jobs per state.
    pub counts: BTreeMap<String, usize>,
}

/// The state of every job in `dir`.
pub fn status(dir: &Path) -> Result<SweepStatus> {
    let table = JobTable::load(dir)?;
    let jobs: Vec<(usize, String, usize, JobState)> = table
        .jobs
        .iter()
        .map(|j| (j.id, j.stage.clone(), j.index, job_state(&table, dir, j)))
        .collect();
    let mut counts = BTreeMap::new();
    for (_, _, _, s) in &jobs {
        *counts.entry(format!("{s:?}").to_lowercase()).or_insert(0) += 1;
    }
    Ok(SweepStatus {
        name: table.name,
        jobs,
        counts,
    })
}

/// One output of a sweep, for `avr sweep gather`: its size and CRC-32, so two runs of one plan
/// compare byte for byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatheredOutput {
    /// The job that writes it.
    pub job: usize,
    /// Its stage.
    pub stage: String,
    /// The path as the plan names it, with the sweep folder written `{dir}`.
    pub path: String,
    /// Bytes (0 when missing).
    pub bytes: u64,
    /// CRC-32 of the content (`None` when missing).
    pub crc32: Option<u32>,
}

/// Every output of every job (and each `.safetensors` output's sidecar), with size and CRC-32.
pub fn gather(dir: &Path) -> Result<Vec<GatheredOutput>> {
    let table = JobTable::load(dir)?;
    let dir_text = dir.display().to_string();
    let mut out = Vec::new();
    for job in &table.jobs {
        for output in &job.outputs {
            let mut paths = vec![output.clone()];
            if output.extension().is_some_and(|e| e == "safetensors") {
                paths.push(output.with_extension("json"));
            }
            for path in paths {
                let bytes = std::fs::read(table.resolve(&path)).ok();
                out.push(GatheredOutput {
                    job: job.id,
                    stage: job.stage.clone(),
                    path: path.display().to_string().replace(&dir_text, "{dir}"),
                    bytes: bytes.as_ref().map_or(0, |b| b.len() as u64),
                    crc32: bytes.as_deref().map(crate::data::npz::crc32),
                });
            }
        }
    }
    Ok(out)
}

/// Runs the whole table here, stage by stage, up to `parallel` jobs at once (each a child
/// `avr sweep run DIR --task N`); a stage starts when the one before is done. Returns the
/// outcome of every job that ran or was skipped; the first failure stops the sweep after its
/// stage's running jobs end.
pub fn run_local(avr: &Path, dir: &Path, parallel: usize) -> Result<Vec<(usize, bool)>> {
    let table = JobTable::load(dir)?;
    let mut results = Vec::new();
    for stage in &table.stages {
        let ids: Vec<usize> = table.stage_jobs(stage).iter().map(|j| j.id).collect();
        for chunk in ids.chunks(parallel.max(1)) {
            let children = chunk
                .iter()
                .map(|&id| {
                    std::process::Command::new(avr)
                        .args(["sweep", "run"])
                        .arg(dir)
                        .args(["--task", &id.to_string()])
                        .stdout(std::process::Stdio::null())
                        .spawn()
                        .map(|c| (id, c))
                        .map_err(|e| Error::io(avr, e))
                })
                .collect::<Result<Vec<_>>>()?;
            for (id, mut child) in children {
                let ok = child.wait().map_err(|e| Error::io(avr, e))?.success();
                results.push((id, ok));
            }
        }
        if let Some((id, _)) = results.iter().find(|(_, ok)| !ok) {
            return Err(Error::bad_file(
                log_path(dir, *id),
                format!("sweep job {id} failed; stage `{stage}` did not finish"),
            ));
        }
    }
    Ok(results)
}

/// Cluster settings of `avr sweep slurm`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SlurmSettings {
    /// `--partition`.
    pub partition: Option<String>,
    /// `--time` (e.g. `01:00:00`).
    pub time: Option<String>,
    /// `--cpus-per-task`.
    pub cpus: Option<usize>,
    /// `--gres=gpu:N`.
    pub gpus: Option<usize>,
    /// At most this many array tasks at once (`%M`).
    pub max_parallel: Option<usize>,
}

/// `0-3`, `1,4,7`: the array indices of `indices` (sorted).
fn array_spec(indices: &[usize]) -> String {
    let contiguous = indices.windows(2).all(|w| w[1] == w[0] + 1);
    match (contiguous, indices.first(), indices.last()) {
        (true, Some(a), Some(b)) if a != b => format!("{a}-{b}"),
        _ => indices
            .iter()
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(","),
    }
}

/// One `sbatch` script per stage with undone jobs: a job array whose task
/// `SLURM_ARRAY_TASK_ID` runs `avr sweep run DIR --stage S --index ID`. With `only_undone`,
/// stages list only the indices not yet done (resubmitting failed or killed tasks alone).
/// Returns `(stage, script path)` in stage order.
pub fn write_slurm_scripts(
    avr: &Path,
    dir: &Path,
    settings: &SlurmSettings,
    only_undone: bool,
) -> Result<Vec<(String, PathBuf)>> {
    let table = JobTable::load(dir)?;
    let dir = std::path::absolute(dir).map_err(|e| Error::io(dir, e))?;
    let avr = std::path::absolute(avr).map_err(|e| Error::io(avr, e))?;
    let mut scripts = Vec::new();
    for stage in &table.stages {
        let indices: Vec<usize> = table
            .stage_jobs(stage)
            .iter()
            .filter(|j| !only_undone || job_state(&table, &dir, j) != JobState::Done)
            .map(|j| j.index)
            .collect();
        if indices.is_empty() {
            continue;
        }
        let mut lines = vec![
            "#!/bin/bash".to_string(),
            format!("#SBATCH --job-name={}-{stage}", table.name),
            format!(
                "#SBATCH --array={}{}",
                array_spec(&indices),
                settings
                    .max_parallel
                    .map_or(String::new(), |m| format!("%{m}"))
            ),
            format!(
                "#SBATCH --output={}/logs/slurm-{stage}-%A_%a.out",
                dir.display()
            ),
            format!("#SBATCH --chdir={}", table.workdir.display()),
        ];
        if let Some(p) = &settings.partition {
            lines.push(format!("#SBATCH --partition={p}"));
        }
        if let Some(t) = &settings.time {
            lines.push(format!("#SBATCH --time={t}"));
        }
        if let Some(c) = settings.cpus {
            lines.push(format!("#SBATCH --cpus-per-task={c}"));
        }
        if let Some(g) = settings.gpus {
            lines.push(format!("#SBATCH --gres=gpu:{g}"));
        }
        lines.push(String::new());
        lines.push(
            "# The binary carries an rpath to libtorch; threads follow the allocation.".into(),
        );
        lines.push(
            "export OMP_NUM_THREADS=\"${SLURM_CPUS_PER_TASK:-${OMP_NUM_THREADS:-1}}\"".into(),
        );
        lines.push(format!(
            "exec '{}' sweep run '{}' --stage '{stage}' --index \"$SLURM_ARRAY_TASK_ID\"",
            avr.display(),
            dir.display()
        ));
        let path = dir.join("slurm").join(format!("{stage}.sbatch"));
        write_atomic(&path, (lines.join("\n") + "\n").as_bytes())?;
        scripts.push((stage.clone(), path));
    }
    Ok(scripts)
}

/// Submits the scripts chained (`--dependency=afterok:<previous array>`) with `sbatch`, or
/// with `dry_run` only returns the command lines. Returns the lines and the job ids.
pub fn submit(
    scripts: &[(String, PathBuf)],
    dry_run: bool,
) -> Result<Vec<(String, Option<String>)>> {
    let mut previous: Option<String> = None;
    let mut out = Vec::new();
    for (i, (_, script)) in scripts.iter().enumerate() {
        let mut args = vec!["--parsable".to_string()];
        match (&previous, dry_run) {
            (Some(id), _) => args.push(format!("--dependency=afterok:{id}")),
            (None, true) if i > 0 => args.push(format!("--dependency=afterok:$JOB{i}")),
            _ => {}
        }
        args.push(script.display().to_string());
        let line = format!("sbatch {}", args.join(" "));
        if dry_run {
            out.push((line, None));
            previous = Some(format!("$JOB{}", i + 1));
            continue;
        }
        let output = std::process::Command::new("sbatch")
            .args(&args)
            .output()
            .map_err(|e| Error::io("sbatch", e))?;
        if !output.status.success() {
            return Err(Error::bad_file(
                script,
                format!(
                    "sbatch refused it: {}",
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            ));
        }
        let id = String::from_utf8_lossy(&output.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or("")
            .to_string();
        previous = Some(id.clone());
        out.push((line, Some(id)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> SweepSpec {
        serde_json::from_str(
            r#"{"name": "t", "stages": [
                {"name": "generate", "args": ["generate", "--out", "{dir}/data"],
                 "outputs": ["{dir}/data/generator.json"]},
                {"name": "masks", "grid": {"shape": ["circles", "squares"], "seed": ["0", "1"]},
                 "args": ["mask", "train", "--shape", "{shape}", "--seed", "{seed}",
                          "--out", "{dir}/m/{shape}-s{seed}.safetensors"],
                 "inputs": ["{dir}/data/generator.json"],
                 "outputs": ["{dir}/m/{shape}-s{seed}.safetensors"]}]}"#,
        )
        .unwrap()
    }

    #[test]
    fn a_spec_expands_into_a_chained_job_table() {
        let table = spec().plan(Path::new("sw"), Path::new("/work")).unwrap();
        assert_eq!(table.jobs.len(), 5);
        let masks = table.stage_jobs("masks");
        assert_eq!(masks.len(), 4);
        assert_eq!(masks[3].args[3], "squares");
        assert_eq!(
            masks[3].outputs[0],
            PathBuf::from("sw/m/squares-s1.safetensors")
        );
        assert!(masks.iter().all(|j| j.after == [0]));
        assert_eq!(
            table.resolve(Path::new("sw/x")),
            PathBuf::from("/work/sw/x")
        );
        let mut bad = spec();
        bad.stages[1].args.push("{alpha}".into());
        let e = bad
            .plan(Path::new("sw"), Path::new("/w"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("{alpha}"), "{e}");
    }

    #[test]
    fn array_specs_are_ranges_or_lists() {
        assert_eq!(array_spec(&[0, 1, 2, 3]), "0-3");
        assert_eq!(array_spec(&[1, 4]), "1,4");
        assert_eq!(array_spec(&[2]), "2");
    }

    #[test]
    fn wholeness_needs_content_parsing_json_and_a_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let p = |n: &str| dir.path().join(n);
        assert!(!is_whole(&p("none")));
        std::fs::write(p("empty.bin"), b"").unwrap();
        assert!(!is_whole(&p("empty.bin")));
        std::fs::write(p("a.json"), b"{\"x\":").unwrap();
        assert!(!is_whole(&p("a.json")));
        std::fs::write(p("w.safetensors"), b"weights").unwrap();
        assert!(!is_whole(&p("w.safetensors")), "no sidecar");
        std::fs::write(p("w.json"), b"{}").unwrap();
        assert!(is_whole(&p("w.safetensors")));
    }
}
