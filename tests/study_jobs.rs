//! The study's masks stage (`scripts/study_jobs.sh`): the order in which masks are trained, and
//! the pool that trains several at once, stops on the first failure and leaves nothing running.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// Runs `body` in bash with `scripts/study_jobs.sh` sourced, in folder `dir`.
fn with_study_jobs(dir: &Path, body: &str) -> Output {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/study_jobs.sh");
    Command::new("bash")
        .args([
            "-c",
            &format!("set -euo pipefail; source \"$0\"\n{body}"),
            script,
        ])
        .current_dir(dir)
        .output()
        .unwrap()
}

fn stdout_lines(out: &Output) -> Vec<String> {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

#[test]
fn masks_come_seed_by_seed_over_the_low_to_high_span_first_and_finished_ones_are_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let ckpts = dir.path().join("ckpts");
    std::fs::create_dir_all(ckpts.join("..").join("masks/scl_val80.2")).unwrap();
    std::fs::create_dir_all(&ckpts).unwrap();
    for stem in ["scl_val36.1", "scl_val53.2", "scl_val70.0", "scl_val80.2"] {
        std::fs::write(ckpts.join(format!("{stem}.safetensors")), b"").unwrap();
    }
    // One finished mask; an unfinished one (only its `.resume`) is still a job.
    let done = dir.path().join("masks/scl_val80.2/a-s0.safetensors");
    std::fs::write(&done, b"").unwrap();
    std::fs::write(done.with_extension("safetensors.resume"), b"").unwrap();
    std::fs::write(
        dir.path().join("masks/scl_val80.2/b-s0.safetensors.resume"),
        b"",
    )
    .unwrap();
    let out = with_study_jobs(
        dir.path(),
        "ckpts=ckpts masks=masks SHAPES='a b' MASK_SEEDS='0 1'; mask_jobs",
    );
    let jobs: Vec<String> = stdout_lines(&out)
        .iter()
        .map(|l| l.replace("ckpts/scl_", "").replace(".safetensors", ""))
        .collect();
    let mut expected = vec!["val80.2 b 0".to_string(), "val80.2 all-shapes 0".into()];
    let span_and_seed = |ck: &str, r: u32| {
        ["a", "b", "all-shapes"]
            .iter()
            .map(move |t| format!("{ck} {t} {r}"))
            .collect::<Vec<_>>()
    };
    for ck in ["val36.1", "val70.0"] {
        expected.extend(span_and_seed(ck, 0));
    }
    for ck in ["val80.2", "val36.1", "val70.0"] {
        expected.extend(span_and_seed(ck, 1));
    }
    expected.extend(span_and_seed("val53.2", 0));
    expected.extend(span_and_seed("val53.2", 1));
    assert_eq!(jobs, expected);
}

#[test]
fn the_pool_runs_every_job_in_order_never_more_than_its_width_at_once() {
    let dir = tempfile::tempdir().unwrap();
    // Each job marks itself running, records how many are running, and finishes after a pause.
    let out = with_study_jobs(
        dir.path(),
        r#"job() {
  echo "$1" >> started; touch "running.$1"
  local now=(running.*); echo "${#now[@]}" >> widths; sleep 0.3
  rm "running.$1"; echo "$1" >> finished
}
pool_run 2 job <<< "$(printf 'j%s\n' 1 2 3 4 5)"
head -n 2 started | sort; echo --; sort -u widths; echo --; sort finished"#,
    );
    let lines = stdout_lines(&out);
    let jobs: Vec<String> = (1..=5).map(|i| format!("j{i}")).collect();
    let parts: Vec<&[String]> = lines.split(|l| l == "--").collect();
    assert_eq!(parts[0], &jobs[..2], "the first two lines started first");
    assert_eq!(parts[1], ["1", "2"], "two at once, never three");
    assert_eq!(parts[2], jobs.as_slice(), "every job finished");
    let bad = with_study_jobs(dir.path(), "job() { :; }; pool_run 0 job <<< j1");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("not a positive count"));
}

#[test]
fn a_failing_job_stops_the_pool_and_the_jobs_still_running() {
    let dir = tempfile::tempdir().unwrap();
    // j1 runs a long child process (as a mask job runs `avr`); j2 fails after a moment.
    let started = Instant::now();
    let out = with_study_jobs(
        dir.path(),
        r#"job() {
  case $1 in
    j1) sleep 60 & echo $! > child; wait ;;
    j2) sleep 0.5; exit 3 ;;
    *) touch "ran.$1" ;;
  esac
}
status=0; pool_run 2 job <<< "$(printf 'j%s\n' 1 2 3)" || status=$?
echo "status $status"
state=$(awk '{print $3}' "/proc/$(cat child)/stat" 2> /dev/null || true)
if [ -n "$state" ] && [ "$state" != Z ]; then echo "child alive"; else echo "child gone"; fi
ls ran.* 2> /dev/null || echo "j3 not started""#,
    );
    let lines = stdout_lines(&out);
    assert_eq!(lines, ["status 3", "child gone", "j3 not started"]);
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "it did not wait for j1"
    );
}

/// Whether process `pid` runs (a zombie has finished).
fn process_runs(pid: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let state = stat.rsplit(") ").next().and_then(|s| s.split(' ').next());
    matches!(state, Some(s) if !s.is_empty() && s != "Z")
}

#[test]
fn stopping_the_stage_stops_every_job_and_what_it_runs() {
    let dir = tempfile::tempdir().unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/study_jobs.sh");
    // Two long jobs, each running a child process (as a mask job runs `avr`).
    let body = r#"source "$0"
job() { sleep 60 & echo $! >> children; wait; }
pool_run 2 job <<< "$(printf 'j%s
' 1 2 3)""#;
    let mut shell = Command::new("bash")
        .args(["-c", body, script])
        .current_dir(dir.path())
        .spawn()
        .unwrap();
    let children = dir.path().join("children");
    let started = Instant::now();
    let pids = loop {
        let text = std::fs::read_to_string(&children).unwrap_or_default();
        let pids: Vec<String> = text.lines().map(str::to_owned).collect();
        if pids.len() == 2 {
            break pids;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "jobs never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(pids.iter().all(|p| process_runs(p)));
    // As `pkill -f scripts/study.sh` does: the stage's shell and the jobs' subshells (which
    // share its command line) all get TERM at once.
    let subshells = Command::new("pgrep")
        .args(["-P", &shell.id().to_string()])
        .output()
        .unwrap();
    let mut targets = vec![shell.id().to_string()];
    targets.extend(
        String::from_utf8_lossy(&subshells.stdout)
            .split_whitespace()
            .map(str::to_owned),
    );
    let term = Command::new("kill").arg("-TERM").args(&targets).status();
    assert!(term.unwrap().success());
    let status = shell.wait().unwrap();
    assert_eq!(status.code(), Some(143), "the stage reports it was stopped");
    for pid in &pids {
        assert!(!process_runs(pid), "job child {pid} still runs");
    }
    let text = std::fs::read_to_string(&children).unwrap();
    assert_eq!(text.lines().count(), 2, "no job started after the stop");
}

#[test]
fn the_alpha_stages_keep_the_milestone_their_record_names_once_it_exists() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("ckpts")).unwrap();
    std::fs::create_dir_all(dir.path().join("masks")).unwrap();
    for stem in ["scl_val36.1", "scl_val80.2"] {
        std::fs::write(dir.path().join(format!("ckpts/{stem}.safetensors")), b"").unwrap();
    }
    let milestone = || {
        stdout_lines(&with_study_jobs(
            dir.path(),
            "ckpts=ckpts masks=masks; alpha_milestone",
        ))
    };
    // Before the α stage has run: the best milestone now.
    assert_eq!(milestone(), ["ckpts/scl_val80.2.safetensors"]);
    std::fs::write(
        dir.path().join("masks/alpha.json"),
        r#"{"checkpoint": "ckpts/scl_val80.2.safetensors", "chosen_alpha": 1e-5}"#,
    )
    .unwrap();
    // Training passes a better milestone later; the study's α stays where it was chosen.
    std::fs::write(dir.path().join("ckpts/scl_val84.9.safetensors"), b"").unwrap();
    assert_eq!(milestone(), ["ckpts/scl_val80.2.safetensors"]);
}

#[test]
fn an_alpha_record_without_its_milestone_is_an_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("masks")).unwrap();
    std::fs::write(
        dir.path().join("masks/alpha.json"),
        r#"{"chosen_alpha": 1e-5}"#,
    )
    .unwrap();
    let out = with_study_jobs(dir.path(), "ckpts=ckpts masks=masks; alpha_milestone");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("masks/alpha.json: the α record names no checkpoint"),
        "{err}"
    );
}
