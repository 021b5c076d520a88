//! SGDD's staged teacher-forcing schedule (seed 000; SPEC §4.4, §4.4a).

use distill_kd::{DecoderInput, Error, ForcingStage, TeacherForcingConfig};

#[test]
fn the_paper_schedule_is_teacher_only_for_the_first_third_then_half() {
    let total = 3000;
    let sched = TeacherForcingConfig::paper(7).check(total).unwrap();
    assert_eq!(sched.stage_ends(), [1000, 3000]);
    for i in 0..1000 {
        assert_eq!(sched.stage(i), 0);
        assert_eq!(sched.ratio(i), 1.0);
        assert_eq!(sched.decoder_input(i), DecoderInput::Teacher);
    }
    let teacher = (1000..total)
        .filter(|&i| sched.decoder_input(i) == DecoderInput::Teacher)
        .count();
    assert_eq!(sched.stage(1000), 1);
    assert_eq!(sched.ratio(total + 5), 0.5);
    // 2000 fair draws: 1000 ± 22 (1σ); ±110 is 5σ.
    assert!(
        (890..=1110).contains(&teacher),
        "{teacher} teacher draws of 2000"
    );
    // The draws are not stuck in long runs: both choices appear in every window of 50.
    for w in (1000..total).collect::<Vec<_>>().chunks(50) {
        let t = w
            .iter()
            .filter(|&&i| sched.decoder_input(i) == DecoderInput::Teacher)
            .count();
        assert!(t > 0 && t < 50);
    }
    let (zt, zs) = ("teacher", "student");
    assert_eq!(*sched.select(3, &zt, &zs), "teacher");
}

/// The default ends on the student path: the decoder's last third of training reads what it
/// reads at test time.
#[test]
fn the_default_schedule_ends_on_the_student_path() {
    let total = 300;
    let sched = TeacherForcingConfig::default().check(total).unwrap();
    assert_eq!(sched.stage_ends(), [100, 200, 300]);
    assert!((0..100).all(|i| sched.decoder_input(i) == DecoderInput::Teacher));
    let mixed = (100..200)
        .filter(|&i| sched.decoder_input(i) == DecoderInput::Teacher)
        .count();
    assert!((25..=75).contains(&mixed), "{mixed}");
    assert!((200..total + 10).all(|i| sched.decoder_input(i) == DecoderInput::Student));
    assert_eq!(
        TeacherForcingConfig::default(),
        TeacherForcingConfig::student_end(0)
    );
}

#[test]
fn schedule_is_deterministic_resumable_and_seeded() {
    let cfg = TeacherForcingConfig::paper(42);
    let a = cfg.clone().check(300).unwrap();
    let b = cfg.check(300).unwrap();
    let forward: Vec<_> = (0..300).map(|i| a.decoder_input(i)).collect();
    let backward: Vec<_> = (0..300).rev().map(|i| b.decoder_input(i)).collect();
    assert!(
        forward.iter().eq(backward.iter().rev()),
        "a draw depends only on (seed, iteration)"
    );
    let other = TeacherForcingConfig::paper(43).check(300).unwrap();
    assert!((100..300).any(|i| other.decoder_input(i) != a.decoder_input(i)));
    // Ratio 0 is always the student.
    let never = TeacherForcingConfig {
        stages: vec![ForcingStage {
            fraction: 1.0,
            ratio: 0.0,
        }],
        seed: 0,
    }
    .check(10)
    .unwrap();
    assert!((0..10).all(|i| never.decoder_input(i) == DecoderInput::Student));
    assert_eq!(
        TeacherForcingConfig::paper(0)
            .check(10)
            .unwrap()
            .stage_ends(),
        [3, 10]
    );
}

#[test]
fn schedule_rejects_bad_configs() {
    let stages = |v: &[(f64, f64)]| TeacherForcingConfig {
        stages: v
            .iter()
            .map(|&(fraction, ratio)| ForcingStage { fraction, ratio })
            .collect(),
        seed: 0,
    };
    let field = |c: TeacherForcingConfig| match c.check(10) {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("expected an invalid config, got {other:?}"),
    };
    assert_eq!(field(stages(&[(0.5, 1.0), (0.5, 1.5)])), "stages.ratio");
    assert_eq!(field(stages(&[(f64::NAN, 1.0)])), "stages.fraction");
    assert_eq!(field(stages(&[(0.5, 1.0), (0.4, 0.0)])), "stages.fraction");
    assert_eq!(field(stages(&[])), "stages");
    assert!(matches!(
        TeacherForcingConfig::default().check(0),
        Err(Error::InvalidConfig {
            field: "total_iterations",
            ..
        })
    ));
    let cfg: TeacherForcingConfig = serde_json::from_str(r#"{"seed": 3}"#).unwrap();
    assert_eq!(cfg, TeacherForcingConfig::student_end(3));
}
