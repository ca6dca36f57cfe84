//! `RESULTS.md` from the shipped study masks: known answers that the shipped artifacts fix. The
//! test reads a copy of two complete milestones (the lowest and the best of 2026-12-06, 5 shapes
//! × 2 seeds and the pooled control each) and the α record, so masks that the study run adds
//! later do not move them.

use std::path::Path;

use avr_modularity::files::crate_root;
use avr_modularity::report::{write_results, ResultsConfig};

/// Copies the files of `from` (one milestone's masks and their sidecars) into `to`.
fn copy_folder(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if !name.ends_with(".resume") {
            std::fs::copy(&path, to.join(name)).unwrap();
        }
    }
}

/// The text from `from` up to the next heading.
fn section<'a>(text: &'a str, from: &str) -> &'a str {
    let start = text
        .find(from)
        .unwrap_or_else(|| panic!("no '{from}' in:\n{text}"));
    let rest = &text[start + from.len()..];
    let end = ["\n### ", "\n## "]
        .iter()
        .filter_map(|h| rest.find(h))
        .min()
        .unwrap_or(rest.len());
    &rest[..end]
}

#[test]
fn the_shipped_study_answers_its_questions_with_tests_and_chance_levels() {
    let dir = tempfile::tempdir().unwrap();
    let (shipped, masks) = (
        crate_root().join("binary_masks/study"),
        dir.path().join("masks"),
    );
    for milestone in ["scl_official_val36.1", "scl_official_val80.2"] {
        copy_folder(&shipped.join(milestone), &masks.join(milestone));
    }
    std::fs::copy(shipped.join("alpha.json"), masks.join("alpha.json")).unwrap();
    let out = dir.path().join("RESULTS.md");
    let cfg = ResultsConfig {
        null_draws: 20,
        shuffles: 2,
    };
    write_results(&out, &dir.path().join("figures"), &masks, &cfg).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    // 5 shapes × 2 seeds: shapes relabelled within each seed give (5!)² labellings, 5! of which
    // regroup the masks as observed; only those reach the observed difference (p = 1/120).
    let best = section(&text, "### study/scl_official_val80.2");
    assert!(
        best.contains("Two masks of different tasks share significantly fewer weights")
            && best.contains(
                "permutation p = 0.008, 14400 labellings, exact, the smallest p this design can \
                 give; in 10 of 10"
            ),
        "{best}"
    );
    // R7 per shape pair as the study read it: two masks of one seed, less what all 5 shape
    // masks of that seed keep, the mean over the 2 seeds; against the study's SCL_90 (its masks
    // are on the 80 % checkpoint), intervals by the jackknife over the 5 shapes. Mean and
    // range checked with numpy on the mask files (50.10 %, 39.43–60.47 %).
    assert!(
        best.contains("two masks of one seed, averaged over the seeds (10 shape pairs")
            && best.contains("IoMin 50.1 % [37.9, 62.3] (n = 5) (range 39.4–60.5 %)")
            && best.contains("The study's stage nearest in nominal accuracy is SCL_90")
            && best.contains(
                "paired by shape pair: -13.7 [-25.5, -1.9] (n = 5) points — ours share \
                 significantly less"
            ),
        "{best}"
    );
    // What each seed's 5 masks keep in common (numpy: 7906 and 8209) is more than what all 10
    // keep (7101). Replicates against different shapes, every pair less what every mask of
    // either seed keeps (numpy: 71.40 % against 48.79 %).
    assert!(
        best.contains("seed 0, 7906 weights kept by all 5 of its masks")
            && best.contains("seed 1, 8209 weights kept by all 5 of its masks")
            && best.contains(
                "A pair of masks of the two seeds loses the union of their sets, 9014 weights \
                 (the 7101 that all 10 masks keep are in both)"
            )
            && best.contains("same task 71.4 % vs different tasks 48.8 % IoMin"),
        "{best}"
    );
    let lowest = section(&text, "### study/scl_official_val36.1");
    assert!(
        lowest.contains("The study's stage nearest in nominal accuracy is SCL_50"),
        "{lowest}"
    );
    // 20 draws cannot reach the Bonferroni level of 45 pairs, and the text says so.
    assert!(
        best.contains("10 masks, 45 pairs: 20 draws cannot reach"),
        "{best}"
    );
    // The sizes are read where the rule stopped each mask and at the last step all reached:
    // 2,850, where the lowest milestone's triangles-s1 settled.
    assert!(
        text.contains("read at step 2850, the last step every shape mask reached"),
        "{text}"
    );
    assert!(text.contains("0 of 24 masks are decided"), "{text}");
    // The α stage's record: 87.5 % at the smallest α against 60.0 % at the largest, paired on
    // the same 200 problems (62 solved only at the smallest α, 7 only at the largest); the
    // chosen α's 84.0 % is 21 against 14 discordant problems: no significant difference.
    let alpha = section(&text, "The study's second R4 claim");
    assert!(
        alpha.contains("87.5 % [82.2, 91.4] (n = 200) at α = 3.1622777e-7")
            && alpha.contains(
                "the largest α costs accuracy significantly (exact McNemar test on the same 200 \
                 problems: 7 solved only at the largest α, 62 only at α = 3.1622777e-7; \
                 p = 4.1e-12)"
            )
            && alpha.contains(
                "against the smallest α, no significant difference (exact McNemar test on the \
                 same 200 problems: 14 solved only at the chosen α, 21 only at α = \
                 3.1622777e-7; p = 0.311)"
            ),
        "{alpha}"
    );
    assert!(text.contains("Ours: 112 masked tensors"), "{text}");
    // R1 over the 5 shapes (each the mean of its 2 seeds).
    assert!(
        text.contains(
            "(study/scl_official_val80.2) a shape module keeps 9.9 % [9.7, 10.2] (n = 5)"
        ),
        "{text}"
    );
    // Modules are more concentrated in few tensors than random masks of their size.
    let dispersity = section(
        &text,
        "- study/scl_official_val80.2: a shape module's dispersity",
    );
    assert!(
        dispersity.contains("(n = 5)")
            && dispersity.contains("significantly less dispersed than its chance level"),
        "{dispersity}"
    );
    // A module's removal collapses the model, and the text says so instead of a finding.
    assert!(text.contains("which here measures a collapse"), "{text}");
    // R4 over shapes (each the mean of its 2 seeds): at the lowest milestone the drop is no
    // longer significant (over the 10 masks it read 5.5 [2.0, 8.9]); against the study's claim
    // of no effect, the 5-point margin is inconclusive at both.
    assert!(
        text.contains("study/scl_official_val36.1: drop 5.5 [-0.8, 11.7] (n = 5) points")
            && text.contains("study/scl_official_val80.2: drop 4.8 [2.8, 6.7] (n = 5) points"),
        "{text}"
    );
    assert!(
        text.contains(
            "(n shapes, each the mean over its seeds; 95 % t interval) — no significant difference"
        ) && text.contains("inconclusive against a margin of 5 points"),
        "{text}"
    );
    // Both the module's removal and the layer-matched removal collapse: no verdict between them.
    assert!(text.contains("both removals collapse the model"), "{text}");
    // Size and dispersity rise from the lowest to the best milestone, as in the study's R6.
    assert!(
        text.contains(
            "module size rises (as in R6, against R3), as the study's same-α lights masks grew"
        ),
        "{text}"
    );
}
