//! The Raven generator against the spec's measured properties: the solver agrees with the
//! target, the context-blind shortcut is at chance in I-RAVEN mode and strong in RAVEN mode,
//! no duplicate candidates, rule frequencies, byte-identical reruns, and the originals' file
//! metadata per configuration (compared with the fixtures made by the original generators).

use avr_modularity::data::generate::grammar::{Ranges, COLOR_VALUES};
use avr_modularity::data::generate::*;
use avr_modularity::data::{AvrProblem, Packing, CONFIGURATIONS};
use avr_modularity::fixtures::require_fixtures;
use avr_modularity::rng::Rng;

const PER_CONFIG: usize = 100;

fn problems(mode: CandidateMode, preset: &str) -> Vec<GeneratedProblem> {
    let preset = Preset::named(preset).unwrap();
    CONFIG_SPECS
        .iter()
        .flat_map(|c| (0..PER_CONFIG).map(move |k| (c, k)))
        .map(|(c, k)| generate_problem(c, &preset, mode, 7, k).unwrap())
        .collect()
}

fn modal_accuracy(ps: &[GeneratedProblem]) -> f64 {
    let mut rng = Rng::new(1);
    ps.iter()
        .filter(|p| modal_candidate(&p.symbolic.candidates, &mut rng) == p.symbolic.target)
        .count() as f64
        / ps.len() as f64
}

fn assert_sound(ps: &[GeneratedProblem]) {
    for (i, p) in ps.iter().enumerate() {
        let s = &p.symbolic;
        assert_eq!(
            s.predict, s.target,
            "problem {i} ({}): solver scores {:?}, target {}",
            s.config.folder, s.scores, s.target
        );
        assert_eq!(
            s.row_scores, [s.n_rules; 3],
            "problem {i} ({}): rows break rules {:?}",
            s.config.folder, s.rules
        );
        let n = 160 * 160;
        for a in 0..8 {
            for b in 0..a {
                assert_ne!(
                    p.problem.image[(8 + a) * n..(9 + a) * n],
                    p.problem.image[(8 + b) * n..(9 + b) * n],
                    "problem {i}: candidates {a} and {b} look the same"
                );
            }
        }
    }
}

#[test]
fn iraven_problems_are_solvable_unique_and_have_no_context_blind_shortcut() {
    let ps = problems(CandidateMode::Iraven, "originals");
    assert_eq!(ps.len(), 7 * PER_CONFIG);
    assert_sound(&ps);
    let acc = modal_accuracy(&ps);
    let retries: usize = ps.iter().map(|p| p.symbolic.retries).sum();
    eprintln!(
        "I-RAVEN: modal guess {acc:.3} over {} problems, {retries} re-draws",
        ps.len()
    );
    assert!(
        acc < 0.20,
        "context-blind modal guess scores {acc:.3} on I-RAVEN candidates"
    );
    // The answer index is spread over all 8 positions.
    let mut counts = [0usize; 8];
    ps.iter().for_each(|p| counts[p.symbolic.target] += 1);
    assert!(
        counts.iter().all(|&c| c > 50),
        "answer positions {counts:?}"
    );
}

#[test]
fn raven_candidates_keep_the_modal_shortcut() {
    let ps = problems(CandidateMode::Raven, "originals");
    assert_sound(&ps);
    let acc = modal_accuracy(&ps);
    eprintln!("RAVEN: modal guess {acc:.3} over {} problems", ps.len());
    assert!(
        acc > 0.80,
        "context-blind modal guess scores only {acc:.3} on RAVEN candidates"
    );
}

/// Exact rule probabilities from the spec's §2.5 table, checked on 20,000 draws (4σ).
#[test]
fn rule_frequencies_match_the_spec_table() {
    let preset = Preset::named("originals").unwrap();
    let ranges = |config: &str, layout: usize| -> Ranges {
        preset.ranges(&ConfigSpec::by_name(config).unwrap().layouts[layout])
    };
    let draws = 20_000;
    let freq = |r: &Ranges, f: &dyn Fn(&RuleGroup) -> bool| {
        let mut rng = Rng::new(3);
        (0..draws)
            .filter(|_| f(&RuleGroup::sample(r, &mut rng).unwrap().0))
            .count() as f64
            / draws as f64
    };
    let check = |name: &str, got: f64, p: f64| {
        let sigma = (p * (1.0 - p) / draws as f64).sqrt();
        assert!(
            (got - p).abs() <= 4.0 * sigma + 1e-12,
            "{name}: {got:.4} vs {p:.4}"
        );
    };
    let four = ranges("distribute_four", 0);
    check(
        "2x2 Prog·Num",
        freq(&four, &|g| matches!(g.np, NpRule::ProgressionNumber(_))),
        1.0 / 12.0,
    );
    check(
        "2x2 Prog·Pos",
        freq(&four, &|g| matches!(g.np, NpRule::ProgressionPosition(_))),
        1.0 / 12.0,
    );
    check(
        "2x2 Arith·Num",
        freq(&four, &|g| matches!(g.np, NpRule::ArithmeticNumber(_))),
        1.0 / 6.0,
    );
    check(
        "2x2 D3·Pos",
        freq(&four, &|g| g.np == NpRule::DistributeThreePosition),
        1.0 / 6.0,
    );
    check(
        "2x2 Const",
        freq(&four, &|g| g.np == NpRule::Constant),
        1.0 / 6.0,
    );
    let nine = ranges("distribute_nine", 0);
    check(
        "3x3 Arith·Pos",
        freq(&nine, &|g| matches!(g.np, NpRule::ArithmeticPosition(_))),
        1.0 / 7.0,
    );
    check(
        "3x3 Prog·Num +2",
        freq(&nine, &|g| g.np == NpRule::ProgressionNumber(2)),
        1.0 / 28.0,
    );
    let center = ranges("center_single", 0);
    check(
        "center NP Const",
        freq(&center, &|g| g.np == NpRule::Constant),
        1.0,
    );
    check(
        "center Type D3",
        freq(&center, &|g| g.ty == EntityRule::DistributeThree),
        1.0 / 3.0,
    );
    check(
        "center Size Arith",
        freq(&center, &|g| matches!(g.size, EntityRule::Arithmetic(_))),
        1.0 / 4.0,
    );
    check(
        "center Size Prog -2",
        freq(&center, &|g| g.size == EntityRule::Progression(-2)),
        1.0 / 16.0,
    );
    check(
        "center Color Const",
        freq(&center, &|g| g.color == EntityRule::Constant),
        1.0 / 4.0,
    );
    let inner = ranges("in_distribute_four_out_center_single", 1);
    check(
        "O-IG in Size Prog",
        freq(&inner, &|g| matches!(g.size, EntityRule::Progression(_))),
        1.0 / 7.0,
    );
    check(
        "O-IG in Size Arith",
        freq(&inner, &|g| matches!(g.size, EntityRule::Arithmetic(_))),
        2.0 / 7.0,
    );
    let out = ranges("in_distribute_four_out_center_single", 0);
    check(
        "Out Size Prog",
        freq(&out, &|g| matches!(g.size, EntityRule::Progression(_))),
        1.0 / 5.0,
    );
    check(
        "Out Size D3",
        freq(&out, &|g| g.size == EntityRule::DistributeThree),
        2.0 / 5.0,
    );
    check(
        "Out Color Const",
        freq(&out, &|g| g.color == EntityRule::Constant),
        1.0,
    );
}

/// The rules as written to `meta_matrix` in generated files follow the same table.
#[test]
fn generated_meta_matrix_encodes_the_rules_like_the_originals() {
    let preset = Preset::named("originals").unwrap();
    let spec = ConfigSpec::by_name("distribute_nine").unwrap();
    let n = 300;
    let mut constant = 0;
    for k in 0..n {
        let p = generate_problem(spec, &preset, CandidateMode::Iraven, 11, k)
            .unwrap()
            .problem;
        let rows: Vec<&[u8]> = p.meta_matrix.chunks(9).collect();
        assert!(
            rows[..4].iter().all(|r| r[..4].iter().sum::<u8>() == 1),
            "one rule bit per row: {:?}",
            p.meta_matrix
        );
        assert!(
            rows[4..].iter().all(|r| r.iter().all(|&b| b == 0)),
            "one component: rows 4-7 are zero"
        );
        let or: Vec<u8> = (0..9)
            .map(|j| rows.iter().map(|r| r[j]).max().unwrap())
            .collect();
        assert_eq!(p.meta_target, or);
        constant += (rows[0][0] == 1) as usize;
    }
    let (p, sigma) = (1.0 / 7.0, (1.0 / 7.0 * 6.0 / 7.0 / n as f64).sqrt());
    let got = constant as f64 / n as f64;
    assert!(
        (got - p).abs() < 4.0 * sigma,
        "3x3 Constant NP rule in {got:.3} of problems, expected {p:.3}"
    );
}

#[test]
fn structure_metadata_matches_the_original_generator_per_configuration() {
    let fixtures = require_fixtures().unwrap();
    let preset = Preset::named("originals").unwrap();
    for config in CONFIGURATIONS {
        let original = AvrProblem::read(
            fixtures
                .join("iraven")
                .join(config)
                .join("RAVEN_0_train.npz"),
        )
        .unwrap();
        let ours = generate_problem(
            ConfigSpec::by_name(config).unwrap(),
            &preset,
            CandidateMode::Iraven,
            0,
            0,
        )
        .unwrap()
        .problem;
        assert_eq!(ours.structure, original.structure, "{config}");
        assert_eq!(ours.meta_structure, original.meta_structure, "{config}");
        assert_eq!(ours.configuration(), Some(config));
        // Same file layout: the written bytes re-read identically.
        let bytes = ours.to_npz_bytes();
        assert_eq!(
            bytes.len(),
            original.to_npz_bytes().len(),
            "{config}: file size differs from the original's"
        );
        assert_eq!(
            AvrProblem::from_bytes(std::path::Path::new(config), &bytes).unwrap(),
            ours
        );
    }
}

#[test]
fn same_seed_gives_byte_identical_files_and_indices_give_distinct_problems() {
    let preset = Preset::named("originals").unwrap();
    let spec = ConfigSpec::by_name("distribute_four").unwrap();
    let a = generate_problem(spec, &preset, CandidateMode::Iraven, 5, 3)
        .unwrap()
        .problem
        .to_npz_bytes();
    let b = generate_problem(spec, &preset, CandidateMode::Iraven, 5, 3)
        .unwrap()
        .problem
        .to_npz_bytes();
    assert_eq!(a, b);
    let images: Vec<Vec<u8>> = (0..20)
        .map(|k| {
            generate_problem(spec, &preset, CandidateMode::Iraven, 5, k)
                .unwrap()
                .problem
                .image
        })
        .collect();
    for i in 0..images.len() {
        for j in 0..i {
            assert_ne!(images[i], images[j], "problems {i} and {j} are identical");
        }
    }
    let other_seed = generate_problem(spec, &preset, CandidateMode::Iraven, 6, 3)
        .unwrap()
        .problem
        .to_npz_bytes();
    assert_ne!(a, other_seed);
}

#[test]
fn rendering_uses_the_original_greys_and_separator_lines() {
    let preset = Preset::named("originals").unwrap();
    let mut checked = 0;
    for k in 0..30 {
        let g = generate_problem(
            ConfigSpec::by_name("center_single").unwrap(),
            &preset,
            CandidateMode::Iraven,
            2,
            k,
        )
        .unwrap();
        let e = g.symbolic.context[0][0].entities[0];
        if e.ty == 5 || e.color == 0 {
            continue;
        }
        // The centre pixel of a filled, centred polygon is its fill grey.
        assert_eq!(
            g.problem.panel(0)[80 * 160 + 80],
            COLOR_VALUES[e.color as usize],
            "problem {k}: {e:?}"
        );
        checked += 1;
    }
    assert!(checked > 5);
    let lr = generate_problem(
        ConfigSpec::by_name("left_center_single_right_center_single").unwrap(),
        &preset,
        CandidateMode::Iraven,
        2,
        0,
    )
    .unwrap();
    assert!(
        (0..160).all(|y| lr.problem.panel(3)[y * 160 + 80] == 0),
        "L-R separator at column 80"
    );
    let ud = generate_problem(
        ConfigSpec::by_name("up_center_single_down_center_single").unwrap(),
        &preset,
        CandidateMode::Iraven,
        2,
        0,
    )
    .unwrap();
    assert!(
        ud.problem.panel(3)[80 * 160..81 * 160]
            .iter()
            .all(|&v| v == 0),
        "U-D separator at row 80"
    );
    // Background is white away from the shapes.
    assert_eq!(lr.problem.panel(0)[0], 255);
}

#[test]
fn shape_presets_draw_only_their_shape_and_stay_solvable() {
    for (preset, ty) in [
        ("circles", 5),
        ("squares", 2),
        ("triangles", 1),
        ("pentagons", 3),
        ("hexagons", 4),
    ] {
        let p = Preset::named(preset).unwrap();
        for spec in &CONFIG_SPECS {
            for k in 0..8 {
                let g = generate_problem(spec, &p, CandidateMode::Iraven, 1, k).unwrap();
                let s = &g.symbolic;
                assert!(
                    s.context
                        .iter()
                        .chain(&s.candidates)
                        .flatten()
                        .flat_map(|l| &l.entities)
                        .all(|e| e.ty == ty),
                    "{preset} {}",
                    spec.folder
                );
                assert_eq!(s.predict, s.target, "{preset} {} problem {k}", spec.folder);
            }
        }
    }
    let lights = Preset::named("lights").unwrap();
    let g = generate_problem(
        ConfigSpec::by_name("distribute_nine").unwrap(),
        &lights,
        CandidateMode::Iraven,
        1,
        0,
    )
    .unwrap();
    assert!(g
        .symbolic
        .context
        .iter()
        .flatten()
        .flat_map(|l| &l.entities)
        .all(|e| e.color == 0));
    let big = Preset::named("big").unwrap();
    let g = generate_problem(
        ConfigSpec::by_name("center_single").unwrap(),
        &big,
        CandidateMode::Iraven,
        1,
        0,
    )
    .unwrap();
    assert!(g
        .symbolic
        .context
        .iter()
        .flatten()
        .flat_map(|l| &l.entities)
        .all(|e| e.size <= 3));
    assert!(Preset::named("giant")
        .unwrap_err()
        .to_string()
        .contains("unknown preset 'giant'"));
}

#[test]
fn generate_dataset_writes_the_original_layout_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = GeneratorConfig {
        configs: vec!["center_single".into(), "distribute_four".into()],
        per_config: 10,
        seed: 4,
        ..Default::default()
    };
    let report = generate_dataset(&cfg, dir.path(), false).unwrap();
    assert_eq!((report.written, report.skipped), (20, 0));
    let ds = avr_modularity::data::AvrDataset::open(dir.path()).unwrap();
    assert_eq!(ds.len(), 20);
    assert!(dir.path().join("center_single/RAVEN_7_val.npz").exists());
    assert!(dir.path().join("distribute_four/RAVEN_9_test.npz").exists());
    let before = std::fs::read(dir.path().join("center_single/RAVEN_3_train.npz")).unwrap();
    std::fs::remove_file(dir.path().join("center_single/RAVEN_3_train.npz")).unwrap();
    let again = generate_dataset(&cfg, dir.path(), false).unwrap();
    assert_eq!((again.written, again.skipped), (1, 19));
    assert_eq!(
        std::fs::read(dir.path().join("center_single/RAVEN_3_train.npz")).unwrap(),
        before
    );
    // Files are written without fsync, so a resumed run checks what it keeps: a damaged file
    // (one flipped image byte, as a power loss could leave) is made again, byte for byte.
    let path = dir.path().join("center_single/RAVEN_3_train.npz");
    let mut damaged = before.clone();
    damaged[before.len() / 2] ^= 0x40;
    std::fs::write(&path, &damaged).unwrap();
    let repaired = generate_dataset(&cfg, dir.path(), false).unwrap();
    assert_eq!((repaired.written, repaired.skipped), (1, 19));
    assert_eq!(std::fs::read(&path).unwrap(), before);
    // The fsync-each writer (the benchmark's reference) writes the same bytes.
    let synced = tempfile::tempdir().unwrap();
    generate_dataset_with(&cfg, synced.path(), false, Durability::Synced).unwrap();
    assert_eq!(
        std::fs::read(synced.path().join("center_single/RAVEN_3_train.npz")).unwrap(),
        before
    );
    // The same folder re-run with --compress packs every file anew (none is kept as stored),
    // into the same problems; a second run keeps them all.
    let deflated = GeneratorConfig {
        packing: Packing::Deflated,
        ..cfg.clone()
    };
    let packed = generate_dataset(&deflated, dir.path(), false).unwrap();
    assert_eq!((packed.written, packed.skipped), (20, 0));
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        bytes.len() * 5 < before.len(),
        "{} bytes deflated",
        bytes.len()
    );
    assert_eq!(
        AvrProblem::from_bytes(&path, &bytes).unwrap(),
        AvrProblem::from_bytes(&path, &before).unwrap()
    );
    let kept = generate_dataset(&deflated, dir.path(), false).unwrap();
    assert_eq!((kept.written, kept.skipped), (0, 20));
    // The fsync-each writer packs as asked too.
    let synced_deflated = tempfile::tempdir().unwrap();
    generate_dataset_with(&deflated, synced_deflated.path(), false, Durability::Synced).unwrap();
    assert_eq!(
        std::fs::read(
            synced_deflated
                .path()
                .join("center_single/RAVEN_3_train.npz")
        )
        .unwrap(),
        bytes
    );
}

#[test]
fn problem_figure_embeds_the_panels_and_frames_the_answer() {
    use avr_modularity::plot::problem::{png_gray, problem_canvas};
    let g = generate_problem(
        ConfigSpec::by_name("distribute_four").unwrap(),
        &Preset::named("originals").unwrap(),
        CandidateMode::Iraven,
        0,
        0,
    )
    .unwrap();
    let fig = avr_modularity::plot::problem_figure(&g.problem, "distribute_four #0");
    assert!(fig.svg.contains("distribute_four #0"));
    assert!(
        fig.svg.contains("data:image/png;base64,iVBORw0KGgo"),
        "embedded PNG"
    );
    assert!(fig.svg.contains(r##"stroke="#d62728""##), "answer frame");
    let (w, h, px) = problem_canvas(&g.problem);
    assert_eq!(px.len(), w * h);
    // Candidate `target` sits in the second block, row-major over 4 columns.
    let png = png_gray(w, h, &px);
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(
        u32::from_be_bytes(png[16..20].try_into().unwrap()) as usize,
        w
    );
    assert_eq!(
        u32::from_be_bytes(png[20..24].try_into().unwrap()) as usize,
        h
    );
    let dir = tempfile::tempdir().unwrap();
    avr_modularity::plot::save_problem_png(&g.problem, dir.path().join("p.png")).unwrap();
    assert_eq!(std::fs::read(dir.path().join("p.png")).unwrap(), png);
}

#[test]
fn a_dataset_generated_on_the_fly_gives_the_pixels_of_the_written_files() {
    use avr_modularity::data::dataset::BatchOptions;
    use avr_modularity::data::AvrDataset;
    let (files, lazy) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let mut cfg = GeneratorConfig {
        configs: vec![
            "center_single".into(),
            "left_center_single_right_center_single".into(),
        ],
        per_config: 12,
        seed: 9,
        ..Default::default()
    };
    generate_dataset(&cfg, files.path(), false).unwrap();
    cfg.on_the_fly = true;
    let report = generate_dataset(&cfg, lazy.path(), false).unwrap();
    assert_eq!(report.written, 0);
    assert_eq!(
        std::fs::read_dir(lazy.path()).unwrap().count(),
        1,
        "only generator.json"
    );
    let (on_disk, generated) = (
        AvrDataset::open(files.path()).unwrap(),
        AvrDataset::open(lazy.path()).unwrap(),
    );
    assert_eq!(generated.len(), 24);
    let names = |d: &AvrDataset| -> Vec<_> {
        d.files
            .iter()
            .map(|f| (f.path.file_name().unwrap().to_owned(), f.split))
            .collect()
    };
    assert_eq!(names(&on_disk), names(&generated));
    // Whole problems too (panels and metadata), and an index past the end is an error.
    for i in [0, 13, 23] {
        assert_eq!(
            generated.problem(i).unwrap(),
            on_disk.problem(i).unwrap(),
            "problem {i}"
        );
    }
    assert!(generated
        .problem(24)
        .unwrap_err()
        .to_string()
        .contains("holds 24"));
    let opts = BatchOptions {
        resize: Some(80),
        ..Default::default()
    };
    let idx: Vec<usize> = (0..24).rev().step_by(3).collect();
    let (a, b) = (
        on_disk.batch(&idx, opts, tch::Device::Cpu).unwrap(),
        generated.batch(&idx, opts, tch::Device::Cpu).unwrap(),
    );
    assert!(a.images.equal(&b.images), "same panels");
    assert!(a.targets.equal(&b.targets), "same answers");
    // The second reading comes from the render cache (block sums): still the files' values, to
    // the bit, also transposed as the study's loader read them.
    let (kept, _) = avr_modularity::data::render_cache::usage();
    assert!(kept >= idx.len(), "the rendered problems were kept");
    let again = generated.batch(&idx, opts, tch::Device::Cpu).unwrap();
    assert!(a.images.equal(&again.images) && a.targets.equal(&again.targets));
    let transposed = BatchOptions {
        transpose_panels: true,
        ..opts
    };
    let (a, b) = (
        on_disk.batch(&idx, transposed, tch::Device::Cpu).unwrap(),
        generated.batch(&idx, transposed, tch::Device::Cpu).unwrap(),
    );
    assert!(a.images.equal(&b.images), "same transposed panels");
    let test = generated.split(avr_modularity::data::Split::Test);
    assert_eq!(
        test.len(),
        4,
        "k mod 10 in 8..=9 for k < 12, per configuration"
    );
    assert!(
        test.is_generated(),
        "a split of a generated set is generated too"
    );
}
