//! `RESULTS.md`: the study's questions (spec §6: R1–R4, R6, R7) answered from a run's masks.
//! Every figure is saved as SVG beside the text, every number carries its n and interval, each
//! module measure stands beside its chance level, and each sentence that states a finding comes
//! from a test (it says "no significant …" when the test finds nothing). The study's own
//! numbers are quoted beside ours, with its label swap (spec §7 B1) corrected.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::analysis::ablation::Ablations;
use crate::analysis::chance::{ChanceConfig, SharingChance};
use crate::analysis::development::{Change, Development, MaskRecord};
use crate::analysis::masks::{mask_stats, seed_label, Overlap};
use crate::analysis::replicates::{
    jackknife_over_tasks, mcnemar_exact, means_by_task, p_text, seed_of, two_proportion_test,
    value_range, Interval,
};
use crate::display::Figure;
use crate::masking::bits::Decisiveness;
use crate::masking::engine::ALPHA_TOLERANCE;
use crate::plot::sharing_chance_heatmap;
use crate::train::eval::wilson_interval;
use crate::{Error, Result};

/// The name of the pooled control mask's task (every shape set at once).
pub(super) const CONTROL_TASK: &str = "all-shapes";

/// What `write_results` wrote.
#[derive(Debug, Clone)]
pub struct ResultsSummary {
    /// Masks read.
    pub masks: usize,
    /// Checkpoints they belong to.
    pub checkpoints: usize,
    /// The SVG figures written.
    pub figures: Vec<PathBuf>,
}

/// How much work the chance levels and the graph null model get.
#[derive(Debug, Clone, Copy)]
pub struct ResultsConfig {
    /// Draws of the count-matched null behind every chance level (default 1,000).
    pub null_draws: usize,
    /// Layer shuffles of the graph-modularity null model per checkpoint (default 100).
    pub shuffles: usize,
}

impl Default for ResultsConfig {
    fn default() -> Self {
        ResultsConfig {
            null_draws: 1000,
            shuffles: 100,
        }
    }
}

/// A markdown document and the figures it links to, written together.
struct Document {
    text: String,
    figures_dir: PathBuf,
    link_prefix: String,
    figures: Vec<PathBuf>,
}

impl Document {
    /// Saves `figure` as `figures_dir/name.svg` (characters other than letters, digits, `.`,
    /// `-` and `_` become `_`: checkpoint names hold `/`) and links it from the text.
    fn figure(&mut self, name: &str, figure: &Figure) -> Result<()> {
        let name: String = name
            .chars()
            .map(|c| match c.is_ascii_alphanumeric() || "._-".contains(c) {
                true => c,
                false => '_',
            })
            .collect();
        let path = self.figures_dir.join(format!("{name}.svg"));
        figure.save_svg(&path)?;
        let _ = writeln!(self.text, "![{name}]({}{name}.svg)\n", self.link_prefix);
        self.figures.push(path);
        Ok(())
    }

    fn para(&mut self, text: &str) {
        let _ = writeln!(self.text, "{text}\n");
    }
}

/// Writes `out` (markdown) and its figures under `figures_dir` from the masks under `masks_dir`
/// and the checkpoints their sidecars name.
pub fn write_results(
    out: &Path,
    figures_dir: &Path,
    masks_dir: &Path,
    cfg: &ResultsConfig,
) -> Result<ResultsSummary> {
    let dev = Development::from_dir(masks_dir)?;
    std::fs::create_dir_all(figures_dir).map_err(|e| Error::io(figures_dir, e))?;
    let mut doc = Document {
        text: String::new(),
        figures_dir: figures_dir.to_path_buf(),
        link_prefix: link_prefix(out, figures_dir),
        figures: Vec::new(),
    };
    let chance = ChanceConfig::default().with_draws(cfg.null_draws);
    provenance(&mut doc, &dev, masks_dir)?;
    module_size(&mut doc, &dev, &chance)?;
    sharing(&mut doc, &dev, &chance)?;
    development(&mut doc, &dev, &chance)?;
    ablation(&mut doc, &dev)?;
    if let Some(text) = alpha_and_accuracy(&masks_dir.join("alpha.json"))? {
        doc.para(&text);
    }
    differences(&mut doc, &dev);
    let (rows, unreadable) = super::modularity_rows(&dev, cfg.shuffles)?;
    doc.para("## Graph modularity of the vision stack");
    doc.para(
        "Not one of the study's questions: the toumei study's measure, on the vision stack's \
         weights (spectral clustering, k = 4, Newman Q), against shuffles of each layer's \
         weights, which keep every layer's weights and break only their arrangement.",
    );
    doc.para(&super::modularity_rows_table(&rows, cfg.shuffles)?.to_markdown()?);
    for finding in super::modularity_findings(&rows, cfg.shuffles) {
        let _ = writeln!(doc.text, "- {finding}");
    }
    doc.text.push('\n');
    for line in unreadable {
        doc.para(&format!("⚠ no graph modularity for {line}"));
    }
    crate::checkpoint::write_atomic(out, doc.text.as_bytes())?;
    Ok(ResultsSummary {
        masks: dev.records.len(),
        checkpoints: dev.checkpoints().len(),
        figures: doc.figures,
    })
}

/// The figures folder as the markdown file links it: relative to the file's folder when it
/// lies below it.
fn link_prefix(out: &Path, figures_dir: &Path) -> String {
    let base = out.parent().unwrap_or(Path::new(""));
    let rel = figures_dir.strip_prefix(base).unwrap_or(figures_dir);
    let text = rel.to_string_lossy().replace('\\', "/");
    match text.is_empty() {
        true => String::new(),
        false => format!("{}/", text.trim_end_matches('/')),
    }
}

fn provenance(doc: &mut Document, dev: &Development, masks_dir: &Path) -> Result<()> {
    let first = &dev.records[0].sidecar.config;
    doc.para("# Results of the study run");
    doc.para(&format!(
        "Written by `avr results --masks {}` from {} mask(s) at {} checkpoint(s); do not edit by \
         hand, re-run it. Settings of every mask: α = {:e}, at most {} steps, lr {}, seeds {}.",
        masks_dir.display(),
        dev.records.len(),
        dev.checkpoints().len(),
        first.alpha,
        first.steps,
        first.lr,
        seeds(dev)
    ));
    if let Some(w) = dev.mixed_settings_warning() {
        doc.para(&format!("⚠ {w}"));
    }
    if !dev.x_is_test() {
        doc.para(
            "⚠ some checkpoints have no held-out test reading: their x-axis value is the \
             validation reading that chose them.",
        );
    }
    let settled = dev
        .records
        .iter()
        .filter(|r| r.sidecar.converged_at.is_some())
        .count();
    let total = dev.records.len();
    let rest = match total - settled {
        0 => String::new(),
        capped => format!("; {capped} stopped at the cap (the table below says which)"),
    };
    let rule = match first.convergence {
        Some(c) => format!(
            " (kept and undecided fractions, read every {} steps, each within {} points over {} \
             readings)",
            c.every,
            100.0 * c.tolerance,
            c.window
        ),
        None => String::new(),
    };
    doc.para(&format!(
        "{settled} of {total} masks met the stopping rule{rule} before the step cap{rest}."
    ));
    if let Some(text) = settledness(dev)? {
        doc.para(&text);
    }
    Ok(())
}

/// What the stopping rule leaves undecided, from the sidecars' decisiveness and the readings'
/// last 500 steps: every mask is read where the rule stopped it, and this says how far from
/// decided that is. The intervals are over tasks (each the mean of its masks over checkpoints
/// and seeds): a task's masks share its problems, so they are not independent readings.
fn settledness(dev: &Development) -> Result<Option<String>> {
    let decisiveness: Vec<(&str, &Decisiveness)> = dev
        .records
        .iter()
        .filter_map(|r| Some((r.task(), r.sidecar.decisiveness.as_ref()?)))
        .collect();
    // How far a mask still moved, whichever way: opposite moves must not cancel.
    let moved = dev.kept_change_at_stop(500)?;
    if decisiveness.is_empty() || moved.is_empty() {
        return Ok(None);
    }
    let over_tasks = |readings: Vec<(&str, f64)>| {
        let means: Vec<f64> = means_by_task(readings)
            .into_iter()
            .map(|(_, v)| v)
            .collect();
        Interval::t95(&means)
    };
    let percent_of = |f: &dyn Fn(&Decisiveness) -> f64| {
        over_tasks(
            decisiveness
                .iter()
                .map(|(t, d)| (*t, 100.0 * f(d)))
                .collect(),
        )
        .summary(1)
    };
    let decided = decisiveness.iter().filter(|(_, d)| d.converged).count();
    let moved = over_tasks(moved.iter().map(|(t, m)| (t.as_str(), m.abs())).collect());
    Ok(Some(format!(
        "The rule says that a mask stopped moving, not that its bits are decided. By the \
         sampling criterion (one sample of the mask changes at most {:.0} % of its kept set) \
         {decided} of {} masks are decided: one sample is expected to change {} % of a mask's \
         kept set, and {} % of its logits lie in |l| < 2 (σ between 0.12 and 0.88). Over its \
         last 500 steps a mask's kept fraction still moved by {} points (either way). The \
         intervals are over tasks, each the mean of its masks. Every mask is read as the same \
         rule left it; R3 also reads module size at a step every mask reached.",
        100.0 * Decisiveness::CONVERGED_FLIPS_PER_KEPT,
        decisiveness.len(),
        percent_of(&|d| d.flips_per_kept),
        percent_of(&|d| d.undecided_fraction),
        moved.summary(2)
    )))
}

fn seeds(dev: &Development) -> String {
    let mut seeds: Vec<u64> = dev.records.iter().map(|r| r.sidecar.config.seed).collect();
    seeds.sort_unstable();
    seeds.dedup();
    let list: Vec<String> = seeds.iter().map(|s| s.to_string()).collect();
    list.join(", ")
}

/// The masks of the most accurate checkpoint (the last on the x-axis).
fn best_checkpoint(dev: &Development) -> Option<(String, Option<f64>)> {
    dev.checkpoints().last().cloned()
}

fn kept_percent(r: &MaskRecord) -> f64 {
    100.0 * mask_stats(&r.mask).kept_fraction
}

/// R1: module size, per checkpoint and shape, with dispersity beside its chance level.
fn module_size(doc: &mut Document, dev: &Development, chance: &ChanceConfig) -> Result<()> {
    doc.para("## R1 — How large is a shape module?");
    doc.para(
        "The study: \"these modules comprise only ten percent of the total weights\"; most of \
         its masks keep 6.5–15 % (spec §6 R1), at α chosen per mask.",
    );
    doc.para(&dev.table()?.to_markdown()?);
    doc.para(&dev.module_table(chance)?.to_markdown()?);
    for (ckpt, excess) in dev.shape_modules().dispersity_against_chance(chance) {
        let finding = match (excess.excludes(0.0), excess.mean < 0.0) {
            (true, true) => "significantly less dispersed than its chance level",
            (true, false) => "significantly more dispersed than its chance level",
            (false, _) => "no significant difference from its chance level",
        };
        let _ = writeln!(
            doc.text,
            "- {ckpt}: a shape module's dispersity minus its count-matched chance level is {} \
             (n shapes, each the mean over its seeds; 95 % t interval): {finding}.",
            excess.summary(4)
        );
    }
    doc.text.push('\n');
    if let Some((ckpt, _)) = best_checkpoint(dev) {
        // Seeds of one shape share its task and its unmasked reference: the interval is over
        // shapes (each its mean over seeds), not over masks.
        let kept: Vec<f64> = dev
            .shape_modules()
            .per_task_means(&ckpt, kept_percent)
            .into_iter()
            .map(|(_, kept)| kept)
            .collect();
        if !kept.is_empty() {
            let interval = Interval::t95(&kept);
            let verdict = study_range_verdict(&interval, 6.5, 15.0);
            doc.para(&format!(
                "At the most accurate checkpoint ({ckpt}) a shape module keeps {} of the \
                 weights (n shapes, each the mean over its seeds; 95 % t interval); {verdict} \
                 A module's size \
                 follows from α and the stopping rule (as the study's followed from its α, \
                 chosen per mask): the agreement says our settings sit where the study's did, \
                 not that size was found independently of them. R3 compares sizes at one α.",
                percent(&interval)
            ));
        }
        let control: Vec<f64> = dev
            .records
            .iter()
            .filter(|r| r.checkpoint() == ckpt && r.task() == CONTROL_TASK)
            .map(kept_percent)
            .collect();
        if !control.is_empty() {
            doc.para(&format!(
                "For reference, the pooled control mask (all shapes at once) keeps {}.",
                percent(&Interval::t95(&control))
            ));
        }
    }
    Ok(())
}

/// `12.3 % [10.1, 14.5] (n = 3)`: an interval of percentages.
fn percent(interval: &Interval) -> String {
    match interval.n < 2 {
        true => format!("{:.1} % (n = {}, no interval)", interval.mean, interval.n),
        false => format!(
            "{:.1} % [{:.1}, {:.1}] (n = {})",
            interval.mean, interval.low, interval.high, interval.n
        ),
    }
}

/// Where an interval lies against the study's range `[low, high]` (percent).
fn study_range_verdict(interval: &Interval, low: f64, high: f64) -> String {
    if interval.n < 2 {
        return "with one mask there is no interval to set against the study's range.".into();
    }
    if interval.high < low {
        format!("smaller than the study's {low}–{high} % (the whole interval lies below it).")
    } else if interval.low > high {
        format!("larger than the study's {low}–{high} % (the whole interval lies above it).")
    } else if interval.low >= low && interval.high <= high {
        format!("inside the study's {low}–{high} % (the whole interval lies within it).")
    } else {
        format!(
            "no significant difference from the study's {low}–{high} % (the interval overlaps it)."
        )
    }
}

/// R2 and R7: sharing between shape modules against chance, and against replicates.
fn sharing(doc: &mut Document, dev: &Development, chance: &ChanceConfig) -> Result<()> {
    doc.para("## R2, R7 — Do shape modules share weights?");
    doc.para(&format!(
        "The study: \"a significant degree of parameter sharing\" (R2), with IoMin 28.1–72.5 % \
         between its shapes over its three stages (R7; its sharing figures are labelled \
         correctly), and no chance level or replicate. Ours, per checkpoint, over its shape masks (the pooled \
         control is another task and is left out): IoMin % after the study's preprocessing, \
         per seed. Two masks of one seed (the study's design: one set of shape masks) are \
         read after both lose what every shape mask of that seed keeps, the study's rule; two \
         masks of different seeds after both lose what every mask of either seed keeps, so \
         both sides of a pair are always cut alike (counted below). Beneath each value its \
         count-matched chance level and z ({} draws, the removal redone in each). Then the \
         replicate test, one per checkpoint over all shapes, relabelling shapes within each \
         seed: do two masks of different shapes share fewer weights than two seeds of one \
         shape? All labellings are enumerated and relabelling keeps every pair's kind and \
         value, so the test is exact; pairs of one seed are pairs of different shapes in every \
         labelling, so its p is that of comparing the same-shape pairs with the cross-seed \
         pairs of different shapes alone. The means it quotes, and its count of task pairs, \
         mix pair kinds (less is removed from a pair of one seed).",
        chance.draws
    ));
    let shapes = dev.without_task(CONTROL_TASK);
    for (ckpt, _) in shapes.checkpoints() {
        let _ = writeln!(doc.text, "### {ckpt}\n");
        if shapes.masks_at(&ckpt) < 2 {
            doc.para("Fewer than two shape masks: no sharing matrix.");
            continue;
        }
        // Asked once: the answer picks the matrix and, when it is no, says why.
        let preprocessable = shapes.preprocessable(&ckpt);
        if let Err(why) = &preprocessable {
            doc.para(&format!(
                "Raw IoMin, not preprocessed ({why}), and so no comparison with the study's \
                 preprocessed values."
            ));
        }
        let preprocess = preprocessable.is_ok();
        let (m, accuracy) = shapes.sharing_chance(&ckpt, Overlap::IoMin, preprocess, chance)?;
        doc.figure(
            &format!("sharing-{ckpt}"),
            &sharing_chance_heatmap(&m, accuracy)?,
        )?;
        doc.para(&against_chance_after_bonferroni(&m));
        if m.preprocessed {
            doc.para(&removed_before_overlaps(&shapes, &ckpt, &m));
            if let Some(text) = between_shapes_against_the_study(&m, accuracy) {
                doc.para(&text);
            }
        }
        match m.replicate_test() {
            Ok(test) => doc.para(&test.verdict(0.05, "IoMin")),
            Err(_) => doc.para("Fewer than two shapes with two seeds here: no replicate test."),
        }
    }
    Ok(())
}

/// What every mask of each seed keeps at `ckpt` (what the preprocessing removes), against the
/// seed's smallest mask, and what every mask of every seed keeps.
fn removed_before_overlaps(shapes: &Development, ckpt: &str, m: &SharingChance) -> String {
    let smallest_of_seed = |seed: &str| {
        shapes
            .records
            .iter()
            .filter(|r| r.checkpoint() == ckpt && seed_of(&r.mask.name) == seed)
            .map(|r| r.mask.kept().0)
            .min()
            .unwrap_or(0)
    };
    let per_seed: Vec<String> = m
        .shared_within_seed
        .iter()
        .map(|g| {
            let smallest = smallest_of_seed(&g.seed);
            format!(
                "{}, {} weights kept by all {} of its masks ({:.1} % of its smallest mask's \
                 {smallest})",
                seed_label(&g.seed),
                g.shared,
                g.masks,
                100.0 * g.shared as f64 / smallest.max(1) as f64
            )
        })
        .collect();
    // With two seeds the sets meet exactly in what every mask keeps.
    let across = match m.shared_within_seed.as_slice() {
        [a, b] => format!(
            " A pair of masks of the two seeds loses the union of their sets, {} weights (the \
             {} that all {} masks keep are in both).",
            a.shared + b.shared - m.shared_by_all,
            m.shared_by_all,
            m.names.len()
        ),
        _ => format!(
            " All {} masks together keep {} weights in common.",
            m.names.len(),
            m.shared_by_all
        ),
    };
    format!(
        "Removed before the overlaps: {}.{across}",
        per_seed.join("; ")
    )
}

/// How many of `m`'s pairs share more than chance once the 5 % level is divided among them
/// (Bonferroni), or, when the draws cannot reach that level, that they cannot (and the z).
fn against_chance_after_bonferroni(m: &SharingChance) -> String {
    let (above, pairs, smallest_z) = m.above_after_bonferroni();
    let level = 0.05 / pairs.max(1) as f64;
    let floor = 1.0 / (m.draws + 1) as f64;
    let masks = m.names.len();
    if floor > level {
        return format!(
            "{masks} masks, {pairs} pairs: {} draws cannot reach the Bonferroni level \
             (one-sided p ≤ {level:.5}; their smallest p is {floor:.5}), so no pair is tested \
             against it; the smallest z is {smallest_z:.1}.",
            m.draws
        );
    }
    format!(
        "{masks} masks: {above} of {pairs} pairs share more than chance at the 5 % level divided \
         among the {pairs} pairs (Bonferroni, one-sided p ≤ {level:.5}); the smallest z is \
         {smallest_z:.1}."
    )
}

/// The study's R7 (spec §6): IoMin % between its five shapes at each stage, and the nominal
/// accuracy of the checkpoint each stage's masks were trained on (the SCL_90 masks work on the
/// file named `SCL_pretrain_80`, spec §2.4; the others are the level's name).
const STUDY_SHARING: [(&str, f64, [f64; 10]); 3] = [
    (
        "SCL_50",
        50.0,
        [28.1, 61.4, 65.7, 58.4, 58.5, 56.1, 63.7, 63.4, 61.1, 60.1],
    ),
    (
        "SCL_70",
        70.0,
        [47.3, 55.7, 58.5, 54.4, 52.4, 50.3, 52.6, 56.2, 57.4, 55.7],
    ),
    (
        "SCL_90",
        80.0,
        [60.6, 64.3, 67.4, 65.3, 68.4, 33.5, 71.5, 72.5, 63.0, 71.4],
    ),
];

/// The shape pairs of [`STUDY_SHARING`]'s values, in its order (circles, triangles, pentagons,
/// hexagons, squares), with our task names.
const STUDY_SHARING_PAIRS: [(&str, &str); 10] = [
    ("circles", "triangles"),
    ("circles", "pentagons"),
    ("circles", "hexagons"),
    ("circles", "squares"),
    ("pentagons", "triangles"),
    ("hexagons", "triangles"),
    ("squares", "triangles"),
    ("hexagons", "pentagons"),
    ("pentagons", "squares"),
    ("hexagons", "squares"),
];

/// The study's stage nearest to a checkpoint of `accuracy` (%), by its nominal accuracy.
fn nearest_study_stage(accuracy: f64) -> &'static (&'static str, f64, [f64; 10]) {
    STUDY_SHARING
        .iter()
        .min_by(|a, b| (a.1 - accuracy).abs().total_cmp(&(b.1 - accuracy).abs()))
        .unwrap_or(&STUDY_SHARING[2])
}

/// R7 between different shapes: per shape pair (the mean over the seeds, each pair of one
/// seed as the study's one set of masks), ours against
/// chance and against the study's stage nearest in accuracy, each a mean over the shape pairs
/// with a jackknife-over-shapes interval (pairs that share a shape are not independent).
fn between_shapes_against_the_study(m: &SharingChance, accuracy: Option<f64>) -> Option<String> {
    let pairs = m.between_task_pairs();
    if pairs.len() < 3 {
        return None;
    }
    let values = |f: &dyn Fn(f64, f64) -> f64| -> Vec<((String, String), f64)> {
        pairs
            .iter()
            .map(|(p, o, c)| (p.clone(), f(*o, *c)))
            .collect()
    };
    let observed = jackknife_over_tasks(&values(&|o, _| o));
    let excess = jackknife_over_tasks(&values(&|o, c| o - c));
    let (low, high) = value_range(pairs.iter().map(|(_, observed, _)| *observed));
    let mut text = format!(
        "Between different shapes, as the study read them: two masks of one seed, averaged \
         over the seeds ({} shape pairs; intervals by the jackknife over shapes, as pairs that \
         share a shape are not independent): IoMin {} (range {low:.1}–{high:.1} %); above its \
         count-matched chance \
         level by {} points — {}.",
        pairs.len(),
        percent(&observed),
        excess.summary(1),
        match (excess.excludes(0.0), excess.mean > 0.0) {
            (true, true) => "significantly more than chance",
            (true, false) => "significantly less than chance",
            (false, _) => "no significant difference from chance",
        }
    );
    let (stage, nominal, study) = nearest_study_stage(100.0 * accuracy?);
    let study_of = |pair: &(String, String)| {
        STUDY_SHARING_PAIRS
            .iter()
            .position(|(a, b)| (*a, *b) == (pair.0.as_str(), pair.1.as_str()))
            .map(|i| study[i])
    };
    let against: Vec<((String, String), f64)> = pairs
        .iter()
        .filter_map(|(p, o, _)| Some((p.clone(), o - study_of(p)?)))
        .collect();
    if against.len() < 3 {
        return Some(text);
    }
    let difference = jackknife_over_tasks(&against);
    let study_mean = study.iter().sum::<f64>() / study.len() as f64;
    let (study_low, study_high) = value_range(study.iter().copied());
    let _ = write!(
        text,
        " The study's stage nearest in nominal accuracy is {stage} (masks on a checkpoint of \
         nominal {nominal:.0} %; one mask a shape, no chance level): mean {study_mean:.1} %, \
         range {:.1}–{:.1} %. Ours minus the study's, paired by shape pair: {} points — {}. \
         This is a comparison in kind, not a test of agreement: the models, their training \
         and their masks' α differ; the pairs and their preprocessing follow the study's rule \
         (two masks of one set of shape masks, less what that set all keeps).",
        study_low,
        study_high,
        difference.summary(1),
        match (difference.excludes(0.0), difference.mean > 0.0) {
            (true, true) => "ours share significantly more",
            (true, false) => "ours share significantly less",
            (false, _) => "no significant difference",
        }
    );
    Some(text)
}

/// R3 and R6: module size and dispersity over training, each change decided by a test.
fn development(doc: &mut Document, dev: &Development, chance: &ChanceConfig) -> Result<()> {
    doc.para("## R3, R6 — How do modules change over training?");
    doc.para(
        "The study's README: modules \"become increasingly sparse and less dispersed\" (R3). \
         That reading comes from swapped labels (spec §7 B1); paired by folder, its masks \
         become less sparse and more dispersed from SCL_50 to SCL_90 (R6), e.g. circles keep \
         6.2 → 8.3 → 25.0 % and dispersity 0.237 → 0.291 → 0.303, with no chance level. \
         Those masks' α differed between stages (spec §7 B2); the study's same-α `lights` \
         masks keep 10.7 → 14.9 → 20.6 %. Ours, by held-out accuracy, every mask at one α; the \
         third test below asks whether dispersity changes beyond what size alone brings (a \
         larger mask placed at random is more dispersed too):",
    );
    // The shape modules, as the tests below: the pooled control is another task.
    doc.figure("module-size", &dev.shape_modules().sparsity_plot()?)?;
    doc.figure("dispersity", &dev.shape_modules().dispersity_plot()?)?;
    // Over the shape modules, as R1 and R4: the pooled control is a different task.
    let changes = dev.shape_modules().changes(chance);
    for c in &changes {
        let _ = writeln!(doc.text, "- {}", c.sentence);
    }
    if changes.is_empty() {
        doc.para("- No change can be tested yet: masks of at least two checkpoints are needed.");
    }
    doc.text.push('\n');
    let steps = dev.shape_modules().consecutive_development(chance);
    if let Some(verdict) = development_against_the_study(&changes, &steps) {
        doc.para(&verdict);
    }
    consecutive_steps(doc, &steps);
    if let Some((step, change)) = dev.shape_modules().size_change_at_common_step()? {
        doc.para(&format!(
            "The stopping rule stops masks at different steps, so the size is also read at \
             step {step}, the last step every shape mask reached (its logged kept fraction): {} \
             {}",
            change.sentence,
            size_readings_compared(changes.first(), &change)
        ));
    }
    Ok(())
}

/// Between neighbouring checkpoints, module size and dispersity above chance, each measure's
/// steps one Holm family (where the largest change happens, which the first-to-last test
/// cannot say).
fn consecutive_steps(doc: &mut Document, steps: &[Change]) {
    // Two measures: a single step per measure repeats the first-to-last test.
    if steps.len() < 4 {
        return;
    }
    doc.para(&format!(
        "Between neighbouring checkpoints among those with masks ({} steps per measure; each \
         measure's steps adjusted together by Holm's method):",
        steps.len() / 2
    ));
    for step in steps {
        let _ = writeln!(doc.text, "- {}", step.sentence);
    }
    doc.text.push('\n');
}

/// Our first-to-last changes ([`Development::changes`]: size, dispersity, dispersity above
/// chance) read against the study's two contradicting claims: its README's R3 (sparser and less
/// dispersed with training) and its figures paired by folder, R6 (less sparse and more
/// dispersed); with `steps` ([`Development::consecutive_development`]: size steps, then
/// dispersity-above-chance steps), where along training the size changes. `None` without the
/// first-to-last tests.
fn development_against_the_study(changes: &[Change], steps: &[Change]) -> Option<String> {
    let direction = |c: &Change| match (c.significant, c.interval.mean > 0.0) {
        (false, _) => 0,
        (true, true) => 1,
        (true, false) => -1,
    };
    let (size, dispersity, above) = match changes {
        [size, dispersity, above, ..] => (direction(size), direction(dispersity), direction(above)),
        _ => return None,
    };
    let claim = |d: i32, measure: &str| match d {
        1 => format!("{measure} rises (as in R6, against R3)"),
        -1 => format!("{measure} falls (as R3 says, against R6)"),
        _ => format!("{measure} shows no significant difference (neither R3 nor R6)"),
    };
    let lights = match size {
        1 => "as the study's same-α lights masks grew",
        _ => "whereas the study's same-α lights masks grew",
    };
    let beyond_chance = match (dispersity, above) {
        (0, _) => String::new(),
        (_, 0) => ", but not beyond its count-matched chance level (no significant difference): \
                   the rise is what a larger module placed at random would show"
            .to_string(),
        (d, a) if d == a => {
            ", and so does its excess over the count-matched chance level".to_string()
        }
        _ => {
            ", while its excess over the count-matched chance level moves the other way".to_string()
        }
    };
    let mut text = format!(
        "Against the study, from our least to our most accurate checkpoint: {}, {lights}; {}{}.",
        claim(size, "module size"),
        claim(dispersity, "dispersity"),
        beyond_chance
    );
    let size_steps = &steps[..steps.len() / 2];
    if size_steps.len() >= 2 && size != 0 {
        let (decided, undecided): (Vec<&Change>, Vec<&Change>) =
            size_steps.iter().partition(|c| c.significant);
        let spans = |v: &[&Change]| {
            v.iter()
                .map(|c| c.span.as_str())
                .collect::<Vec<_>>()
                .join("; ")
        };
        if !undecided.is_empty() {
            let _ =
                write!(
                text,
                " The size change is significant only from {} (Holm-adjusted), not from {}; the \
                 study's masks grew most at their last stage (lights 14.9 → 20.6 %).",
                if decided.is_empty() { "no step".to_string() } else { spans(&decided) },
                spans(&undecided)
            );
        }
    }
    Some(text)
}

/// Whether the size change at the rule's stop and at a common step agree, in words.
fn size_readings_compared(at_stop: Option<&Change>, at_step: &Change) -> String {
    let Some(at_stop) = at_stop else {
        return String::new();
    };
    let (a, b) = (&at_stop.interval, &at_step.interval);
    let direction = |i: &Interval| match (i.excludes(0.0), i.mean > 0.0) {
        (false, _) => 0,
        (true, true) => 1,
        (true, false) => -1,
    };
    let agreement = match (direction(a), direction(b)) {
        (0, 0) => "Neither reading changes significantly.".to_string(),
        (x, y) if x == y => format!(
            "Both readings change in the same direction ({:.1} points at the rule's stop, {:.1} \
             at the common step).",
            a.mean, b.mean
        ),
        _ => format!(
            "The two readings disagree ({:.1} points at the rule's stop, {:.1} at the common \
             step): the size change depends on when the masks are read, and no direction is \
             claimed.",
            a.mean, b.mean
        ),
    };
    format!(
        "{agreement} At the common step most masks are still shrinking, so that reading mixes \
         a module's size with how far its training got; the rule's stop reads each mask \
         settled, at a step that differs between checkpoints."
    )
}

/// R4: what removing the weights outside a module costs (the mask's task accuracy against the
/// unmasked model on the same problems), and what removing the module itself costs against
/// removing as many random weights (`avr mask ablate`'s records beside the masks).
fn ablation(doc: &mut Document, dev: &Development) -> Result<()> {
    doc.para("## R4 — Does ablating the weights outside a module hurt?");
    doc.para(
        "The study: zero-ablating the non-module weights \"does not affect the performance of \
         the model significantly\" (R4), without an interval. Ours: the task-accuracy drop of \
         the masked model from the unmasked one (points, same problems). Then the other side, \
         which the study did not measure against chance: the module removed (the inverted \
         mask) against two chance levels of an ablation, paired per mask: as many weights \
         removed at random from all masked tensors, and as many removed from each tensor as \
         the module keeps there, at random places (its layer profile). Accuracies count tied scores as a fair coin \
         breaks them (chance is 12.5 %): a model that scores every candidate alike has no \
         answer, whatever index `argmax` returns.",
    );
    let shapes = dev.shape_modules();
    // Each record read once, for the figure and the tests below.
    let read = shapes.ablation_records()?;
    doc.figure("ablation", &shapes.ablation_plot_of(&read)?)?;
    let per_checkpoint: Vec<_> = dev
        .checkpoints()
        .into_iter()
        .map(|(ckpt, _)| (shapes.ablations_in(&ckpt, &read), ckpt))
        .collect();
    doc.para(&format!(
        "Each line is a shape, the mean over its seeds, with their range shaded; the removals \
         are read for the {} of {} shape masks with an ablation record (the layer-matched \
         removal: the mean over its draws).",
        per_checkpoint
            .iter()
            .map(|(a, _)| a.records.len())
            .sum::<usize>(),
        shapes.records.len()
    ));
    let mut measured = Vec::new();
    for (ablations, ckpt) in per_checkpoint {
        // Per shape (the mean over its seeds): the seeds share the shape's problems and the
        // unmasked model, so the shapes are the replicates.
        let drops: Vec<f64> = shapes
            .per_task_means(&ckpt, |r| r.task_drop_points().unwrap_or(f64::NAN))
            .into_iter()
            .map(|(_, drop)| drop)
            .collect();
        if drops.is_empty() {
            continue;
        }
        let drop = Interval::t95(&drops);
        let verdict = match (drop.n >= 2, drop.excludes(0.0)) {
            (false, _) => "one shape: no test",
            (true, true) if drop.mean > 0.0 => "a significant loss",
            (true, true) => "a significant gain",
            (true, false) => "no significant difference",
        };
        let _ = writeln!(
            doc.text,
            "- {ckpt}: drop {} points (n shapes, each the mean over its seeds; 95 % t \
             interval) — {verdict}.",
            drop.summary(1)
        );
        if let Some(differs) = drop_against_the_study(&drop, 100.0 * ALPHA_TOLERANCE) {
            let _ = writeln!(doc.text, "  {differs}");
        }
        // Counted as the records are read: shape modules (the sidecar names a shape).
        let shape_modules = shapes.masks_at(&ckpt);
        let _ = writeln!(doc.text, "  {}", ablations.against_chance(shape_modules));
        measured.extend(ablations.records);
    }
    doc.text.push('\n');
    if !measured.is_empty() {
        doc.para(&Ablations { records: measured }.collapse());
    }
    Ok(())
}

/// Where our design differs from the study's, with our side computed from the masks: the
/// reasons our numbers need not equal its numbers, in one place.
fn differences(doc: &mut Document, dev: &Development) {
    let Some(first) = dev.records.first() else {
        return;
    };
    let stats = mask_stats(&first.mask);
    let checkpoints = dev.checkpoints().len();
    doc.para("## Why our numbers differ from the study's");
    let _ = writeln!(
        doc.text,
        "- **The model.** Ours: {} masked tensors, {} weights (the SCL of the paper, with a ReLU \
         after every convolution). The study's: lucidrains' SCL, 44 tensors, 199,838 weights, \
         no ReLU between its convolutions (spec §1, §7 A8). Module size and dispersity are \
         fractions of different totals over different layers, so agreement in kind, not in \
         value, is what can be compared: the study's dispersities of 0.24–0.32 are not ours \
         to match.\n\
         - **One training run.** Our {checkpoints} checkpoints are snapshots of one training \
         run; the seeds replicate the masks, not the model. A difference between checkpoints \
         is a difference over one model's training, as in the study.\n\
         - **One α.** Every mask here uses α = {:e}; the study's masks used α from 1e-6 to \
         4.68e-6 across the stages it compared, which confounds its size trends (spec §7 B2).\n\
         - **Deterministic masks.** We read every mask as `l > 0`; the study drew one unseeded \
         Gumbel sample for each evaluation (spec §7 B3).\n\
         - **Chance levels and replicates.** Every sharing and dispersity value here stands \
         beside a count-matched chance level, and sharing is tested against seeds of one \
         shape; the study had neither. Its preprocessing (removing what its 5 masks all \
         kept) is applied per seed here, and its pairs are compared with our pairs of one \
         seed.\n",
        stats.per_tensor.len(),
        stats.total,
        first.sidecar.config.alpha
    );
}

/// The study's second R4 claim (a larger α costs accuracy) from the α stage's record beside the
/// masks (`alpha.json`: every candidate's validation task accuracy on n problems), and how the
/// study's one α was chosen. `None` without a record; a record that cannot be read is an error
/// naming the file.
fn alpha_and_accuracy(record: &Path) -> Result<Option<String>> {
    if !record.is_file() {
        return Ok(None);
    }
    let text = std::fs::read_to_string(record).map_err(|e| Error::io(record, e))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::bad_file(record, e.to_string()))?;
    let bad = |what: &str| Error::bad_file(record, format!("α record: {what}"));
    let runs: Vec<AlphaReading> = value["runs"]
        .as_array()
        .ok_or_else(|| bad("no `runs` list"))?
        .iter()
        .map(|run| AlphaReading::from_record(run).map_err(|what| bad(&what)))
        .collect::<Result<_>>()?;
    let smallest = runs.iter().min_by(|a, b| a.alpha.total_cmp(&b.alpha));
    let largest = runs.iter().max_by(|a, b| a.alpha.total_cmp(&b.alpha));
    let (Some(small), Some(large)) = (smallest, largest) else {
        return Err(bad("an empty `runs` list"));
    };
    let chosen_alpha = value["chosen_alpha"]
        .as_f64()
        .ok_or_else(|| bad("no `chosen_alpha`"))?;
    let steps: Vec<usize> = runs.iter().map(|r| r.steps).collect();
    let mut text = format!(
        "The study's second R4 claim, that a larger α costs accuracy: our α stage (`{}`, {} \
         candidates on {}, {} steps each at most, {} of them meeting the stopping rule) reads \
         {} at α = {:e} and {} at α = {:e}: {}.",
        crate::files::shown_path(record),
        runs.len(),
        value["checkpoint"].as_str().unwrap_or("its checkpoint"),
        steps.iter().max().unwrap_or(&0),
        runs.iter().filter(|r| r.settled).count(),
        small.reading(),
        small.alpha,
        large.reading(),
        large.alpha,
        large.against(small, "the largest α")
    );
    let chosen = runs.iter().find(|r| r.alpha == chosen_alpha);
    if let Some(chosen) = chosen.filter(|c| c.alpha != small.alpha) {
        let _ = write!(
            text,
            " This run's one α, {:e}, reads {}: against the smallest α, {}; these are the \
             problems that chose it, and the rule admits only a gap under its tolerance, so this \
             test is not independent of the choice.",
            chosen.alpha,
            chosen.reading(),
            chosen.against(small, "the chosen α")
        );
    }
    let _ = write!(
        text,
        " The α was chosen from these readings by the rule: {}.",
        value["rule"].as_str().unwrap_or("see the record")
    );
    Ok(Some(text))
}

/// One candidate of the α stage.
struct AlphaReading {
    alpha: f64,
    accuracy: f64,
    problems: usize,
    steps: usize,
    settled: bool,
    /// Whether each validation problem was solved, when the record keeps it (`val_outcomes`).
    outcomes: Option<Vec<bool>>,
}

impl AlphaReading {
    /// One row of the record's `runs`; `Err` says what is wrong with it.
    fn from_record(run: &serde_json::Value) -> std::result::Result<AlphaReading, String> {
        let number = |key: &str| {
            run[key]
                .as_f64()
                .ok_or_else(|| format!("a run without `{key}`"))
        };
        let problems = number("val_problems")? as usize;
        let reading = AlphaReading {
            alpha: number("alpha")?,
            accuracy: number("val_task_accuracy")?,
            problems,
            steps: number("steps_done")? as usize,
            settled: !run["converged_at"].is_null(),
            outcomes: match run["val_outcomes"].as_str() {
                None => None,
                Some(bits)
                    if bits.len() == problems && bits.bytes().all(|b| b == b'0' || b == b'1') =>
                {
                    Some(bits.bytes().map(|b| b == b'1').collect())
                }
                Some(_) => {
                    return Err(format!(
                        "`val_outcomes` must be {problems} characters `0` or `1`, one per \
                         validation problem"
                    ))
                }
            },
        };
        match &reading.outcomes {
            Some(o) if o.iter().filter(|&&hit| hit).count() != reading.correct().0 => Err(format!(
                "the run at α = {:e} has `val_outcomes` that disagree with its `val_task_accuracy`",
                reading.alpha
            )),
            _ => Ok(reading),
        }
    }

    fn correct(&self) -> (usize, usize) {
        (
            (self.accuracy * self.problems as f64).round() as usize,
            self.problems,
        )
    }

    /// Whether this reading differs from `base`'s, in words with its test: the exact McNemar
    /// test when both keep their outcomes on the same problems, else a two-proportion test
    /// that treats them as independent (and says so).
    fn against(&self, base: &AlphaReading, this: &str) -> String {
        let paired = match (&self.outcomes, &base.outcomes) {
            (Some(a), Some(b)) => mcnemar_exact(a, b),
            _ => None,
        };
        let (p, test) = match paired {
            Some(m) => (
                m.p,
                format!(
                    "exact McNemar test on the same {} problems: {} solved only at {this}, {} \
                     only at α = {:e}; p = {}",
                    self.problems,
                    m.only_a,
                    m.only_b,
                    base.alpha,
                    p_text(m.p)
                ),
            ),
            None => {
                let (z, p) = two_proportion_test(base.correct(), self.correct());
                (
                    p,
                    format!(
                        "two-proportion z = {z:.2}, p = {}; both read the same problems, and \
                         the record keeps no per-problem outcomes for a paired test, so this \
                         test treats them as independent",
                        p_text(p)
                    ),
                )
            }
        };
        let verdict = match (p <= 0.05, self.accuracy < base.accuracy) {
            (true, true) => format!("{this} costs accuracy significantly"),
            (true, false) => format!("{this} reads significantly higher"),
            (false, _) => "no significant difference".to_string(),
        };
        format!("{verdict} ({test})")
    }

    /// `87.5 % [82.2, 91.4] (n = 200)`: the reading with its Wilson interval.
    fn reading(&self) -> String {
        let (correct, n) = self.correct();
        let (low, high) = wilson_interval(correct, n);
        format!(
            "{:.1} % [{:.1}, {:.1}] (n = {n})",
            100.0 * self.accuracy,
            100.0 * low,
            100.0 * high
        )
    }
}

/// The study's R4 claims an absence of effect, which a test against zero cannot show: the drop
/// set against a margin of `margin` points instead (equivalence when the 95 % interval lies
/// inside ±margin, a two one-sided tests reading at 2.5 % each). `None` for fewer than 2 shapes.
fn drop_against_the_study(drop: &Interval, margin: f64) -> Option<String> {
    if drop.n < 2 {
        return None;
    }
    let reading = if drop.low > -margin && drop.high < margin {
        format!(
            "equivalent to no effect within ±{margin:.0} points (its 95 % interval lies inside: \
             two one-sided tests at 2.5 % each)"
        )
    } else if drop.low >= margin {
        format!("larger than {margin:.0} points (its interval lies above): the study's claim does not hold here")
    } else if drop.high <= -margin {
        format!("a gain beyond {margin:.0} points (its interval lies below −{margin:.0})")
    } else {
        format!(
            "inconclusive against a margin of {margin:.0} points (its interval reaches past it)"
        )
    };
    Some(format!(
        "Against the study's claim of no effect: {reading}. The margin is the α rule's \
         tolerance, fixed before these masks were trained; the rule compared candidate masks \
         with the smallest α's mask on validation problems, not with the unmasked model, so it \
         is a yardstick here, not a bound the rule guarantees."
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reading follows the interval against the margin, and needs two shapes.
    #[test]
    fn a_drop_is_read_against_the_study_claim_of_no_effect() {
        let read = |values: &[f64]| drop_against_the_study(&Interval::t95(values), 5.0);
        assert!(read(&[2.0, 2.5, 3.0])
            .unwrap()
            .contains("equivalent to no effect within ±5"));
        assert!(read(&[9.0, 9.5, 10.0])
            .unwrap()
            .contains("larger than 5 points"));
        assert!(read(&[-9.0, -9.5, -10.0])
            .unwrap()
            .contains("a gain beyond 5 points"));
        let wide = read(&[7.0, 4.5, 4.5, 1.5, 4.0]).unwrap();
        assert!(
            wide.contains("inconclusive against a margin of 5"),
            "{wide}"
        );
        assert!(read(&[4.0]).is_none());
    }

    /// A record of two candidates on 4 problems: the larger α solves problem 0 only.
    fn alpha_record(outcomes: [&str; 2], accuracies: [f64; 2]) -> serde_json::Value {
        let run = |alpha: f64, outcomes: &str, accuracy: f64| {
            serde_json::json!({"alpha": alpha, "val_task_accuracy": accuracy, "val_problems": 4,
                "steps_done": 100, "converged_at": null, "val_outcomes": outcomes})
        };
        serde_json::json!({"checkpoint": "c.safetensors", "chosen_alpha": 1e-5, "rule": "r",
            "runs": [run(1e-6, outcomes[0], accuracies[0]), run(1e-5, outcomes[1], accuracies[1])]})
    }

    fn alpha_text(record: &serde_json::Value) -> Result<Option<String>> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("alpha.json");
        std::fs::write(&path, record.to_string()).unwrap();
        alpha_and_accuracy(&path)
    }

    /// Outcomes kept: a paired test on the discordant problems; without them, the unpaired test
    /// says it is one; outcomes that contradict the accuracy are refused, naming the file.
    #[test]
    fn the_alpha_record_is_tested_paired_when_it_keeps_outcomes() {
        let paired = alpha_text(&alpha_record(["0111", "1000"], [0.75, 0.25]))
            .unwrap()
            .unwrap();
        assert!(
            paired.contains("3 only at α = 1e-6")
                && paired.contains(
                    "exact McNemar test on the same 4 problems: 1 solved only at the largest α"
                )
                && paired.contains("p = 0.625")
                && paired.contains("no significant difference"),
            "{paired}"
        );
        let mut unpaired = alpha_record(["0111", "1000"], [0.75, 0.25]);
        for run in unpaired["runs"].as_array_mut().unwrap() {
            run.as_object_mut().unwrap().remove("val_outcomes");
        }
        let unpaired = alpha_text(&unpaired).unwrap().unwrap();
        assert!(
            unpaired.contains("two-proportion z = 1.41")
                && unpaired.contains("treats them as independent"),
            "{unpaired}"
        );
        let wrong = alpha_text(&alpha_record(["0111", "1100"], [0.75, 0.25]));
        let message = wrong.unwrap_err().to_string();
        assert!(
            message.contains("alpha.json")
                && message.contains("disagree with its `val_task_accuracy`"),
            "{message}"
        );
        let short = alpha_text(&alpha_record(["011", "1000"], [0.75, 0.25]));
        assert!(short
            .unwrap_err()
            .to_string()
            .contains("must be 4 characters"));
    }
}
