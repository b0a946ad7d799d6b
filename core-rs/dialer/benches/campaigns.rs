//! Pacers side by side on the same simulated campaign days (same seeds):
//! `cargo bench -p ccorch-dialer --bench campaigns` (DAYS=n to change the days per run,
//! default 200 for the predictive pacer; the references run DAYS/10, and the best fixed
//! ratio is searched over 1.0 to 6.0 in steps of 0.2).
//!
//! Scenarios: 50 operators, 8-hour days; live-answer probability 0.25 with 120 s mean talk,
//! 0.15 with 60 s, 0.40 with 300 s; each also with the answer rate drifting ±50% hourly.

#![allow(clippy::unwrap_used)] // bench code: a panic is a failed run

use std::time::Instant;

use ccorch_dialer::pacer::{CampaignPacer, Mode, PacerConfig, VicidialAdaptive};
use ccorch_dialer::sim::{simulate, Report, Scenario};

fn row(scenario: &str, pacer: &str, days: u32, r: &Report, secs: f64) {
    let (w24, w30) = r.windows_over(0.03);
    let (m24, m30) = r.max_rates();
    println!(
        "| {scenario} | {pacer} | {days} | {:.1}% | {:.2}% | {:.2}% | {w24} / {w30} | {:.2}% / {:.2}% | {:.1} | {secs:.1} s |",
        100.0 * r.occupancy(),
        100.0 * r.abandon_rate(),
        100.0 * r.abandon_rate_with_false_positives(),
        100.0 * m24,
        100.0 * m30,
        r.calls_per_agent_hour(),
    );
}

fn main() {
    let days: u32 = std::env::var("DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let ref_days = (days / 10).max(1);
    println!("| scenario | pacer | days | talk occupancy | abandoned / live | incl. AMD false positives | 24 h / 30 d windows > 3% | worst 24 h / 30 d | connects per operator-hour | run time |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    let scenarios = [
        ("0.25, 120 s", Scenario::standard(0.25, 120.0)),
        ("0.15, 60 s", Scenario::standard(0.15, 60.0)),
        ("0.40, 300 s", Scenario::standard(0.40, 300.0)),
        (
            "0.25, 120 s, drift",
            Scenario::standard(0.25, 120.0).with_drift(),
        ),
        (
            "0.15, 60 s, drift",
            Scenario::standard(0.15, 60.0).with_drift(),
        ),
        (
            "0.40, 300 s, drift",
            Scenario::standard(0.40, 300.0).with_drift(),
        ),
    ];
    for (name, s) in &scenarios {
        let t = Instant::now();
        let config = |mode| {
            let mut c = PacerConfig::new(mode);
            c.amd_false_positive_share = s.amd_false_positive_share();
            c
        };
        let mut p = CampaignPacer::new(config(Mode::Predictive)).unwrap();
        let r = simulate(s, &mut p, 1, days).unwrap();
        row(
            name,
            "ccorch predictive",
            days,
            &r,
            t.elapsed().as_secs_f64(),
        );

        let t = Instant::now();
        let mut p = CampaignPacer::new(config(Mode::Progressive)).unwrap();
        let r = simulate(s, &mut p, 1, ref_days).unwrap();
        row(
            name,
            "progressive 1:1",
            ref_days,
            &r,
            t.elapsed().as_secs_f64(),
        );

        let t = Instant::now();
        let mut p = VicidialAdaptive::new(s.amd_false_positive_share());
        let r = simulate(s, &mut p, 1, ref_days).unwrap();
        row(
            name,
            "VICIdial adaptive",
            ref_days,
            &r,
            t.elapsed().as_secs_f64(),
        );

        // Best fixed ratio in hindsight: the highest-occupancy ratio with no window over 3%,
        // without the budget fallback (a plain fixed ratio).
        let t = Instant::now();
        let mut best: Option<(f64, Report)> = None;
        for step in 0..=25 {
            let ratio = 1.0 + 0.2 * f64::from(step);
            let mut cfg = config(Mode::Power { ratio });
            cfg.budget_fallback = false;
            let mut p = CampaignPacer::new(cfg).unwrap();
            let r = simulate(s, &mut p, 1, ref_days).unwrap();
            if r.windows_over(0.03) == (0, 0)
                && best
                    .as_ref()
                    .is_none_or(|(_, b)| r.occupancy() > b.occupancy())
            {
                best = Some((ratio, r));
            }
        }
        if let Some((ratio, r)) = best {
            row(
                name,
                &format!("best fixed ratio in hindsight ({ratio:.1})"),
                ref_days,
                &r,
                t.elapsed().as_secs_f64(),
            );
        }
    }
}
