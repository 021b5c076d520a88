//! SGDD's two-stage teacher-forcing schedule (seed 000).

use distill_kd::{DecoderInput, Error, Stage, TeacherForcingConfig};

#[test]
fn schedule_is_teacher_only_for_the_first_third_then_half() {
    let total = 3000;
    let sched = TeacherForcingConfig {
        seed: 7,
        ..Default::default()
    }
    .check(total)
    .unwrap();
    assert_eq!(sched.stage1_iterations(), 1000);
    for i in 0..1000 {
        assert_eq!(sched.stage(i), Stage::Pretrain);
        assert_eq!(sched.ratio(i), 1.0);
        assert_eq!(sched.decoder_input(i), DecoderInput::Teacher);
    }
    let teacher = (1000..total)
        .filter(|&i| sched.decoder_input(i) == DecoderInput::Teacher)
        .count();
    assert_eq!(sched.stage(1000), Stage::Joint);
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

#[test]
fn schedule_is_deterministic_resumable_and_seeded() {
    let cfg = TeacherForcingConfig {
        seed: 42,
        ..Default::default()
    };
    let a = cfg.clone().check(300).unwrap();
    let b = cfg.check(300).unwrap();
    let forward: Vec<_> = (0..300).map(|i| a.decoder_input(i)).collect();
    let backward: Vec<_> = (0..300).rev().map(|i| b.decoder_input(i)).collect();
    assert!(
        forward.iter().eq(backward.iter().rev()),
        "a draw depends only on (seed, iteration)"
    );
    let other = TeacherForcingConfig {
        seed: 43,
        ..Default::default()
    }
    .check(300)
    .unwrap();
    assert!((100..300).any(|i| other.decoder_input(i) != a.decoder_input(i)));
    // Ratio 0 is always the student, fraction 0 has no pre-training.
    let never = TeacherForcingConfig {
        stage1_fraction: 0.0,
        stage2_ratio: 0.0,
        ..Default::default()
    }
    .check(10)
    .unwrap();
    assert!((0..10).all(|i| never.decoder_input(i) == DecoderInput::Student));
    assert_eq!(
        TeacherForcingConfig::default()
            .check(10)
            .unwrap()
            .stage1_iterations(),
        3
    );
}

#[test]
fn schedule_rejects_bad_configs() {
    assert!(matches!(
        TeacherForcingConfig {
            stage2_ratio: 1.5,
            ..Default::default()
        }
        .check(10),
        Err(Error::InvalidConfig {
            field: "stage2_ratio",
            ..
        })
    ));
    assert!(matches!(
        TeacherForcingConfig {
            stage1_fraction: f64::NAN,
            ..Default::default()
        }
        .check(10),
        Err(Error::InvalidConfig {
            field: "stage1_fraction",
            ..
        })
    ));
    assert!(matches!(
        TeacherForcingConfig::default().check(0),
        Err(Error::InvalidConfig {
            field: "total_iterations",
            ..
        })
    ));
    let cfg: TeacherForcingConfig = serde_json::from_str(r#"{"seed": 3}"#).unwrap();
    assert_eq!(
        (cfg.stage1_fraction, cfg.stage1_ratio, cfg.stage2_ratio),
        (1.0 / 3.0, 1.0, 0.5)
    );
}
