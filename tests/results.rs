//! `RESULTS.md` from the shipped study masks (`binary_masks/study/`): known answers that the
//! shipped artifacts fix, whatever masks the study run adds later.

use avr_modularity::files::crate_root;
use avr_modularity::report::{write_results, ResultsConfig};

#[test]
fn the_shipped_study_answers_its_questions_with_tests_and_chance_levels() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("RESULTS.md");
    let cfg = ResultsConfig {
        null_draws: 20,
        shuffles: 2,
    };
    let masks = crate_root().join("binary_masks/study");
    write_results(&out, &dir.path().join("figures"), &masks, &cfg).unwrap();
    let text = std::fs::read_to_string(&out).unwrap();
    let section = |from: &str| {
        let start = text
            .find(from)
            .unwrap_or_else(|| panic!("no '{from}' in:\n{text}"));
        let rest = &text[start + from.len()..];
        &rest[..rest
            .find("\n### ")
            .or_else(|| rest.find("\n## "))
            .unwrap_or(rest.len())]
    };
    // The best milestone has 5 shapes × 2 seeds: the pooled test enumerates all 113,400
    // labellings, and only the observed grouping reaches its difference (p = 1/945).
    let best = section("### study/scl_official_val80.2");
    assert!(
        best.contains("Two masks of different tasks share significantly fewer weights")
            && best.contains("permutation p = 0.001, 113400 labellings, exact; in 10 of 10"),
        "{best}"
    );
    assert!(
        best.contains("Between different shapes (40 pairs of masks)"),
        "{best}"
    );
    // The sizes are read at the rule's stop and at a step every mask reached.
    assert!(
        text.contains("the last step every shape mask reached"),
        "{text}"
    );
    assert!(
        text.contains("0 of ") && text.contains("masks are decided"),
        "{text}"
    );
    // The α stage's record: 87.5 % at the smallest α against 60.0 % at the largest.
    assert!(
        text.contains("87.5 % [82.2, 91.4] (n = 200) at α = 3.1622777e-7")
            && text.contains("two-proportion z = 6.25"),
        "{text}"
    );
    assert!(text.contains("Ours: 112 masked tensors"), "{text}");
    // R1 over the 5 shapes (each the mean of its 2 seeds), as the reviewer recomputed it.
    assert!(
        text.contains(
            "(study/scl_official_val80.2) a shape module keeps 9.9 % [9.7, 10.2] (n = 5)"
        ),
        "{text}"
    );
    // Modules are more concentrated in few tensors than random masks of their size.
    let dispersity = section("- study/scl_official_val80.2: a shape module's dispersity");
    assert!(
        dispersity.contains("significantly less dispersed than its chance level"),
        "{dispersity}"
    );
    // A module's removal collapses the model, and the text says so instead of a finding.
    assert!(text.contains("which here measures a collapse"), "{text}");
}
