//! A Raven's progressive matrices generator following RAVEN (Zhang et al. 2019) and I-RAVEN
//! (Hu et al. 2021), with the originals' known bugs fixed (`../shared/specs/scl-and-raven.md` §5):
//! one seeded stream per (seed, configuration, index) — so splits never share problems and runs
//! are byte-identical and parallel —, bounded retries, distinct candidate values, and no two
//! candidates that look the same (symbolically or in pixels).

pub mod candidates;
pub mod grammar;
pub mod render;
pub mod rules;
pub mod xml;

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

pub use candidates::{CandidateMode, ModAttr, Modifiable};
pub use grammar::{Attr, ConfigSpec, Entity, Layout, Panel, Range, CONFIG_SPECS, SIZE_VALUES};
pub use rules::{EntityRule, NpRule, RuleGroup};

use crate::data::npz::{AvrProblem, Packing, PANELS, PANEL_SIZE};
use crate::data::Split;
use crate::rng::Rng;
use crate::{Error, Result};
use grammar::{LayoutSpec, Ranges};
use render::Renderer;
use rules::{Component, RuleState, Stuck};

/// Attempts per problem before giving up (each a fresh draw of rules and panels).
const MAX_ATTEMPTS: usize = 200;

/// A task dataset: attribute restrictions applied to every configuration (the study's
/// `circles`, `squares`, … sets had one shape type only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preset {
    /// The preset's name (a shape in its canonical spelling, e.g. `pentagons`).
    pub name: String,
    /// Allowed Type levels (1 triangle, 2 square, 3 pentagon, 4 hexagon, 5 circle).
    pub types: Range,
    /// Size values by level (the `big` preset replaces the list, as the study did).
    pub sizes: Vec<f64>,
    /// Allowed Color levels (0 white … 9 black).
    pub colors: Range,
}

impl Preset {
    /// Names accepted by [`Preset::named`] (the shapes also in the study's spelling, e.g.
    /// `pentagon`; see [`crate::data::Shape`]).
    pub const NAMES: [&'static str; 9] = [
        "originals",
        "circles",
        "squares",
        "triangles",
        "pentagons",
        "hexagons",
        "lights",
        "dark",
        "big",
    ];

    /// The preset called `name`.
    pub fn named(name: &str) -> Result<Preset> {
        let mut p = Preset {
            name: name.to_string(),
            types: Range::new(1, 5),
            sizes: SIZE_VALUES.to_vec(),
            colors: Range::new(0, 9),
        };
        if let Ok(shape) = name.parse::<crate::data::Shape>() {
            p.name = shape.name().to_string();
            p.types = Range::new(shape.type_level(), shape.type_level());
            return Ok(p);
        }
        match name {
            "originals" => {}
            "lights" => p.colors = Range::new(0, 0),
            "dark" => p.colors = Range::new(9, 9),
            "big" => p.sizes = vec![0.75, 0.80, 0.85, 0.90],
            _ => {
                return Err(Error::UnknownName(format!(
                    "unknown preset '{name}'; expected one of {}",
                    Preset::NAMES.join(", ")
                )))
            }
        }
        Ok(p)
    }

    /// The attribute ranges of `layout` under this preset. A restriction that contradicts a
    /// layout's own fixed value (the white `Out` frame under `dark`) leaves the layout's value,
    /// otherwise inner shapes would vanish into a black frame.
    pub fn ranges(&self, layout: &LayoutSpec) -> Ranges {
        let size_levels = Range::new(0, self.sizes.len() as i32 - 1);
        let size = layout.size.intersect(size_levels);
        let color = layout.color.intersect(self.colors);
        Ranges {
            number: layout.number,
            ty: self.types,
            size: if size.is_empty() { size_levels } else { size },
            color: if color.is_empty() {
                layout.color
            } else {
                color
            },
        }
    }
}

/// One generated problem before rendering: what the rules, panels and candidates are.
#[derive(Debug, Clone)]
pub struct SymbolicProblem {
    /// The configuration it was drawn for (e.g. `center_single`).
    pub config: &'static ConfigSpec,
    /// The rules, one group per component (layout) of the configuration.
    pub rules: Vec<RuleGroup>,
    /// The 8 context panels, row-major.
    pub context: Vec<Panel>,
    /// The 8 candidates in file order.
    pub candidates: Vec<Panel>,
    /// Per candidate, the attributes changed from the answer (empty for the answer).
    pub modified: Vec<Vec<Modifiable>>,
    /// Index of the correct candidate in `candidates` (0..8).
    pub target: usize,
    /// The heuristic solver's choice.
    pub predict: usize,
    /// Per candidate, how many rules its completed third row satisfies.
    pub scores: Vec<usize>,
    /// Per context row (0, 1, 2 with the answer), how many rules hold, and how many there are.
    pub row_scores: [usize; 3],
    /// Rules in the problem: 4 per component (Number/Position, Type, Size, Color).
    pub n_rules: usize,
    /// Retries used (0 when the first draw was accepted).
    pub retries: usize,
    /// Uniformity level (0..3, uniform at 3) per component.
    pub uniformity: Vec<i32>,
}

impl SymbolicProblem {
    /// `meta_matrix` (8×9) and `meta_target` (9) as the originals encode the rules.
    pub fn meta(&self) -> (Vec<u8>, Vec<u8>) {
        let attr_col = |a: &str| {
            4 + ["Number", "Position", "Type", "Size", "Color"]
                .iter()
                .position(|n| *n == a)
                .expect("attribute")
        };
        let mut m = vec![0u8; 72];
        for (c, g) in self.rules.iter().enumerate() {
            let (np_rule, np_attr) = g.np.names();
            let mut rows: Vec<(&str, Vec<usize>)> = vec![(
                np_rule,
                if np_attr == "Number/Position" {
                    vec![4, 5]
                } else {
                    vec![attr_col(np_attr)]
                },
            )];
            rows.extend(
                Attr::ALL
                    .iter()
                    .map(|&a| (g.entity(a).name(), vec![attr_col(a.name())])),
            );
            for (f, (rule, cols)) in rows.into_iter().enumerate() {
                let row = &mut m[(c * 4 + f) * 9..(c * 4 + f + 1) * 9];
                row[rules::rule_column(rule)] = 1;
                cols.into_iter().for_each(|col| row[col] = 1);
            }
        }
        let target = (0..9)
            .map(|j| (0..8).map(|i| m[i * 9 + j]).max().unwrap_or(0))
            .collect();
        (m, target)
    }
}

/// Builds one problem of `config` with a fresh draw from `rng`.
fn draw(
    config: &'static ConfigSpec,
    preset: &Preset,
    mode: CandidateMode,
    rng: &mut Rng,
) -> std::result::Result<SymbolicProblem, Stuck> {
    let mut comps = Vec::new();
    for layout in config.layouts {
        let orig = preset.ranges(layout);
        let (group, pruned) = RuleGroup::sample(&orig, rng).ok_or(Stuck)?;
        comps.push(Component {
            rules: group,
            orig,
            pruned,
            n_slots: layout.n_slots(),
            state: RuleState::default(),
        });
    }
    let uniformity: Vec<i32> = comps.iter().map(|_| rng.below(4) as i32).collect();
    let uniform: Vec<bool> = uniformity.iter().map(|&u| u == 3).collect();
    let mut grid: Vec<[Panel; 3]> = Vec::new();
    for row in 0..3 {
        let mut cols: [Panel; 3] = Default::default();
        for (comp, &uni) in comps.iter_mut().zip(&uniform) {
            let mut c1 = comp.sample_start(uni, rng);
            let (c2, c3) = comp.build_row(row, &mut c1, rng)?;
            cols[0].push(c1);
            cols[1].push(c2);
            cols[2].push(c3);
        }
        grid.push(cols);
    }
    let answer = grid[2][2].clone();
    let mut cands = match mode {
        CandidateMode::Iraven => candidates::iraven(&comps, &answer, rng)?,
        CandidateMode::Raven => candidates::raven(&comps, &answer, rng)?,
    };
    if cands.len() != 8
        || (0..8).any(|i| (0..i).any(|j| candidates::same_picture(&cands[i].0, &cands[j].0)))
    {
        return Err(Stuck);
    }
    let order = rng.permutation(8);
    cands = order.iter().map(|&i| cands[i].clone()).collect();
    let target = order.iter().position(|&i| i == 0).expect("answer");
    let score = |row: usize, p: &Panel| {
        comps
            .iter()
            .enumerate()
            .map(|(l, c)| c.score(row, &grid[row][0][l], &grid[row][1][l], &p[l]))
            .sum::<usize>()
    };
    let scores: Vec<usize> = cands.iter().map(|(p, _)| score(2, p)).collect();
    let best = *scores.iter().max().expect("8 candidates");
    let tied: Vec<usize> = (0..8).filter(|&i| scores[i] == best).collect();
    let predict = tied[rng.below(tied.len())];
    let row_scores = [
        score(0, &grid[0][2]),
        score(1, &grid[1][2]),
        score(2, &answer),
    ];
    let context = grid
        .iter()
        .flat_map(|cols| cols.iter().cloned())
        .take(8)
        .collect();
    Ok(SymbolicProblem {
        config,
        rules: comps.iter().map(|c| c.rules).collect(),
        context,
        modified: cands.iter().map(|(_, m)| m.clone()).collect(),
        candidates: cands.into_iter().map(|(p, _)| p).collect(),
        target,
        predict,
        scores,
        row_scores,
        n_rules: 4 * comps.len(),
        retries: 0,
        uniformity,
    })
}

/// A generated problem: its symbolic description and the file content.
#[derive(Debug, Clone)]
pub struct GeneratedProblem {
    /// Rules, panels and candidates as attribute values.
    pub symbolic: SymbolicProblem,
    /// The rendered problem, as written to `RAVEN_<k>_<split>.npz`.
    pub problem: AvrProblem,
}

/// Generates problem `k` of `config`: deterministic in `(seed, preset, mode, config, k)`.
/// Problems with pixel-identical candidates (e.g. the originals' 0.6/0.7 square collision in
/// `In_Distribute_Four`) are re-drawn.
pub fn generate_problem(
    config: &'static ConfigSpec,
    preset: &Preset,
    mode: CandidateMode,
    seed: u64,
    k: usize,
) -> Result<GeneratedProblem> {
    let base = Rng::new(seed).fork(&format!("{}/{}/{:?}/{k}", config.folder, preset.name, mode));
    for attempt in 0..MAX_ATTEMPTS {
        let mut rng = base.fork(&attempt.to_string());
        let Ok(mut symbolic) = draw(config, preset, mode, &mut rng) else {
            continue;
        };
        let image = render_problem(&symbolic, &preset.sizes);
        let n = PANEL_SIZE * PANEL_SIZE;
        let cand = |i: usize| &image[(8 + i) * n..(9 + i) * n];
        if (0..8).any(|i| (0..i).any(|j| cand(i) == cand(j))) {
            continue;
        }
        symbolic.retries = attempt;
        let (meta_matrix, meta_target) = symbolic.meta();
        let problem = AvrProblem {
            image,
            side: PANEL_SIZE,
            target: symbolic.target as i64,
            predict: symbolic.predict as i64,
            meta_matrix,
            meta_target,
            structure: config.structure_tokens(),
            meta_structure: config.meta_structure(),
        };
        return Ok(GeneratedProblem { symbolic, problem });
    }
    Err(Error::Generation(format!(
        "{} problem {k}: no valid problem in {MAX_ATTEMPTS} draws under preset '{}'",
        config.folder, preset.name
    )))
}

/// The 16 panels (8 context + 8 candidates), `16 × 160 × 160` bytes.
pub fn render_problem(p: &SymbolicProblem, sizes: &[f64]) -> Vec<u8> {
    let n = PANEL_SIZE * PANEL_SIZE;
    let mut image = vec![0u8; PANELS * n];
    let mut renderer = Renderer::new(p.config, sizes);
    for (i, panel) in p.context.iter().chain(&p.candidates).enumerate() {
        renderer.render(panel, &mut image[i * n..(i + 1) * n]);
    }
    image
}

/// The context-blind shortcut: the candidate whose attribute values are most common among the
/// candidates (ties broken at random). Near chance on I-RAVEN, near perfect on RAVEN.
pub fn modal_candidate(candidates: &[Panel], rng: &mut Rng) -> usize {
    let features = |p: &Panel| -> Vec<Vec<i32>> {
        p.iter()
            .flat_map(|l| {
                let sorted = |a: Attr| {
                    let mut v: Vec<i32> = l.entities.iter().map(|e| e.get(a)).collect();
                    v.sort_unstable();
                    v
                };
                [
                    vec![l.count() as i32],
                    l.slot_set().into_iter().map(i32::from).collect(),
                    sorted(Attr::Type),
                    sorted(Attr::Size),
                    sorted(Attr::Color),
                ]
            })
            .collect()
    };
    let feats: Vec<Vec<Vec<i32>>> = candidates.iter().map(features).collect();
    let score = |i: usize| -> usize {
        (0..feats[i].len())
            .map(|f| feats.iter().filter(|o| o[f] == feats[i][f]).count())
            .sum()
    };
    let scores: Vec<usize> = (0..candidates.len()).map(score).collect();
    let best = *scores.iter().max().unwrap_or(&0);
    let tied: Vec<usize> = (0..candidates.len())
        .filter(|&i| scores[i] == best)
        .collect();
    tied[rng.below(tied.len())]
}

/// Settings of `avr generate` and [`generate_dataset`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GeneratorConfig {
    /// Task preset (default `originals`), see [`Preset::NAMES`].
    pub preset: String,
    /// Configurations to generate (default: all 7).
    pub configs: Vec<String>,
    /// Problems per configuration (default 10; split by `k % 10`: 0–5 train, 6–7 val, 8–9 test).
    pub per_config: usize,
    /// Candidate sets (default I-RAVEN).
    pub mode: CandidateMode,
    /// The one seed behind every problem (default 0).
    pub seed: u64,
    /// Worker threads (default 0 = one per core).
    pub threads: usize,
    /// Also write `RAVEN_<k>_<split>.xml` annotations (default false).
    pub xml: bool,
    /// Write only `generator.json`: readers then generate each problem from the seed when a
    /// batch needs it, pixel-identical to the written file (default false). 70,000 problems
    /// cost no disk instead of 29 GB, for about 1.5 ms of one core per problem.
    pub on_the_fly: bool,
    /// How the pixels are kept in each `.npz` (default [`Packing::Stored`], the originals'
    /// layout). [`Packing::Deflated`] writes 10–16× fewer bytes, which numpy reads too, and
    /// takes generation off the disk's limit.
    pub packing: Packing,
}

impl Default for GeneratorConfig {
    fn default() -> Self {
        GeneratorConfig {
            preset: "originals".into(),
            configs: crate::data::CONFIGURATIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
            per_config: 10,
            mode: CandidateMode::Iraven,
            seed: 0,
            threads: 0,
            xml: false,
            on_the_fly: false,
            packing: Packing::Stored,
        }
    }
}

impl GeneratorConfig {
    /// Reads a `generator.json`; errors name the file.
    pub fn read(path: &Path) -> Result<GeneratorConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| Error::bad_file(path, e.to_string()))
    }

    /// The configurations to generate; unknown names are an error.
    pub(crate) fn specs(&self) -> Result<Vec<&'static ConfigSpec>> {
        self.configs
            .iter()
            .map(|c| {
                ConfigSpec::by_name(c).ok_or_else(|| {
                    Error::UnknownName(format!(
                        "unknown configuration '{c}'; expected one of {}",
                        crate::data::CONFIGURATIONS.join(", ")
                    ))
                })
            })
            .collect()
    }

    fn threads(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        }
    }
}

/// What [`generate_dataset`] did.
#[derive(Debug, Clone, Serialize)]
pub struct GenerateReport {
    /// The dataset folder written to.
    pub out: PathBuf,
    /// Problem files written by this run.
    pub written: usize,
    /// Files already present (a resumed run skips them: they were written atomically).
    pub skipped: usize,
    /// Wall-clock time of the run, in seconds.
    pub seconds: f64,
    /// `(written + skipped) / seconds`: throughput over all problems handled.
    pub problems_per_s: f64,
}

/// The file name of problem `k`: `RAVEN_<k>_<split>.npz`.
pub fn file_name(k: usize) -> String {
    format!("RAVEN_{k}_{}.npz", Split::of_index(k).name())
}

/// Writes `out/<config>/RAVEN_<k>_<split>.npz` for every configuration and `k`, plus
/// `out/generator.json` with the settings. Existing files are kept, so a killed run resumes.
pub fn generate_dataset(
    cfg: &GeneratorConfig,
    out: &Path,
    progress: bool,
) -> Result<GenerateReport> {
    generate_dataset_with(cfg, out, progress, Durability::Unsynced)
}

/// How generated problem files reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Renamed into place without `fsync` (the default: a file can be made again from its
    /// seed, and a resumed run checks every file it keeps).
    Unsynced,
    /// Each file `fsync`ed before its rename (the writer before 2026-12-02; kept as the
    /// benchmark's same-run reference).
    Synced,
}

/// [`generate_dataset`] with a choice of [`Durability`].
pub fn generate_dataset_with(
    cfg: &GeneratorConfig,
    out: &Path,
    progress: bool,
    durability: Durability,
) -> Result<GenerateReport> {
    let preset = Preset::named(&cfg.preset)?;
    let specs = cfg.specs()?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    crate::files::write_atomic(
        &out.join("generator.json"),
        serde_json::to_string_pretty(cfg)
            .expect("serialisable")
            .as_bytes(),
    )?;
    let jobs: Vec<(&'static ConfigSpec, usize)> = specs
        .iter()
        .flat_map(|&s| (0..cfg.per_config).map(move |k| (s, k)))
        .collect();
    if cfg.on_the_fly {
        return Ok(GenerateReport {
            out: out.to_path_buf(),
            written: 0,
            skipped: 0,
            seconds: 0.0,
            problems_per_s: 0.0,
        });
    }
    for s in &specs {
        let dir = out.join(s.folder);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    }
    let start = Instant::now();
    let done = std::sync::atomic::AtomicUsize::new(0);
    let threads = cfg.threads().min(jobs.len().max(1));
    let queue = FolderQueue::new(specs.len(), cfg.per_config);
    let results: Vec<Result<(usize, usize)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (jobs, preset, done, queue, specs) = (&jobs, &preset, &done, &queue, &specs);
                scope.spawn(move || -> Result<(usize, usize)> {
                    let (mut written, mut skipped) = (0, 0);
                    let mut folder = t * specs.len() / threads;
                    while let Some((s, k)) = queue.take(&mut folder) {
                        let spec = specs[s];
                        let path = out.join(spec.folder).join(file_name(k));
                        // A kept file must read whole (every member's CRC-32): files are
                        // written without fsync, so a power loss could leave a damaged one. It
                        // must also be packed as asked (a stored set re-run with --compress).
                        if path.exists() && keeps_as(&path, cfg.packing) {
                            skipped += 1;
                        } else {
                            let g = generate_problem(spec, preset, cfg.mode, cfg.seed, k)?;
                            if cfg.xml {
                                let xml = xml::problem_xml(&g.symbolic, &preset.sizes, cfg.mode);
                                crate::files::write_atomic(
                                    &path.with_extension("xml"),
                                    xml.as_bytes(),
                                )?;
                            }
                            match durability {
                                Durability::Unsynced => {
                                    g.problem.write_generated(&path, cfg.packing)?
                                }
                                Durability::Synced => crate::files::write_atomic(
                                    &path,
                                    &g.problem.to_npz_bytes_packed(cfg.packing),
                                )?,
                            }
                            written += 1;
                        }
                        let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                        if progress && (n % 500 == 0 || n == jobs.len()) {
                            let rate = n as f64 / start.elapsed().as_secs_f64();
                            eprintln!(
                                "[generate] {n}/{} problems, {rate:.0}/s, ETA {:.0} s",
                                jobs.len(),
                                (jobs.len() - n) as f64 / rate
                            );
                        }
                    }
                    Ok((written, skipped))
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("generator thread panicked"))
            .collect()
    });
    let (mut written, mut skipped) = (0, 0);
    for r in results {
        let (w, s) = r?;
        written += w;
        skipped += s;
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(GenerateReport {
        out: out.to_path_buf(),
        written,
        skipped,
        seconds,
        problems_per_s: (written + skipped) as f64 / seconds.max(1e-9),
    })
}

/// Whether the problem file at `path` reads whole and its pixels are packed as `packing`.
fn keeps_as(path: &Path, packing: Packing) -> bool {
    let Ok(bytes) = std::fs::read(path) else {
        return false;
    };
    AvrProblem::from_bytes(path, &bytes).is_ok()
        && crate::data::npz::image_packing(path, &bytes).ok() == Some(packing)
}

/// Hands out the problems folder by folder: each thread starts in its own configuration
/// folder and moves on to the next one with problems left, so threads create their files in
/// different directories. (ext4 serialises file creation in a directory: with two threads in
/// one folder, `perf` showed 21 % of the run spinning on that lock.)
struct FolderQueue {
    next: Vec<std::sync::atomic::AtomicUsize>,
    per_folder: usize,
}

impl FolderQueue {
    fn new(folders: usize, per_folder: usize) -> Self {
        FolderQueue {
            next: (0..folders)
                .map(|_| std::sync::atomic::AtomicUsize::new(0))
                .collect(),
            per_folder,
        }
    }

    /// The next problem `(folder, k)`, from `folder` on; `folder` follows the thread.
    fn take(&self, folder: &mut usize) -> Option<(usize, usize)> {
        for _ in 0..self.next.len() {
            let k = self.next[*folder].fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            if k < self.per_folder {
                return Some((*folder, k));
            }
            *folder = (*folder + 1) % self.next.len();
        }
        None
    }
}

/// Generates `n` problems per configuration in memory, on all cores, and returns problems/s
/// (rendering and `.npz` encoding included, disk excluded): the generator benchmark.
pub fn bench_generate(cfg: &GeneratorConfig) -> Result<f64> {
    let preset = Preset::named(&cfg.preset)?;
    let specs = cfg.specs()?;
    let jobs: Vec<(&'static ConfigSpec, usize)> = specs
        .iter()
        .flat_map(|&s| (0..cfg.per_config).map(move |k| (s, k)))
        .collect();
    let threads = cfg.threads();
    let start = Instant::now();
    let bytes: Result<usize> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (jobs, preset) = (&jobs, &preset);
                scope.spawn(move || -> Result<usize> {
                    let mut bytes = 0;
                    for &(spec, k) in jobs.iter().skip(t).step_by(threads) {
                        bytes += generate_problem(spec, preset, cfg.mode, cfg.seed, k)?
                            .problem
                            .to_npz_bytes_packed(cfg.packing)
                            .len();
                    }
                    Ok(bytes)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("generator thread panicked"))
            .sum()
    });
    bytes?;
    Ok(jobs.len() as f64 / start.elapsed().as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::FolderQueue;

    /// Three threads take every problem of 7 folders exactly once, starting in different ones.
    #[test]
    fn the_folder_queue_hands_out_every_problem_once() {
        let queue = FolderQueue::new(7, 50);
        let barrier = std::sync::Barrier::new(3);
        let mut taken: Vec<(usize, usize)> = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..3)
                .map(|t| {
                    let (queue, barrier) = (&queue, &barrier);
                    scope.spawn(move || {
                        let mut folder = t * 7 / 3;
                        barrier.wait();
                        let first = queue.take(&mut folder);
                        barrier.wait();
                        assert_eq!(first, Some((t * 7 / 3, 0)), "thread {t} starts alone");
                        let mut mine: Vec<_> = first.into_iter().collect();
                        mine.extend(std::iter::from_fn(|| queue.take(&mut folder)));
                        mine
                    })
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap())
                .collect()
        });
        taken.sort();
        let all: Vec<(usize, usize)> = (0..7).flat_map(|f| (0..50).map(move |k| (f, k))).collect();
        assert_eq!(taken, all);
        assert_eq!(queue.take(&mut 0), None);
    }
}
