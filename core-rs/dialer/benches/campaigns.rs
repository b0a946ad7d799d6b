//! Pacers side by side on the same simulated campaign days (same seeds):
//! `cargo bench -p ccorch-dialer --bench campaigns` (DAYS=n to change the days per run,
//! default 200 for the predictive pacer; the references run DAYS/10, and the best fixed
//! ratio is searched over 1.0 to RATIO_MAX (6.0) in RATIO_STEP (0.2) steps; ONLY=text
//! keeps the scenarios whose name contains it; SEED=n draws other days (default 1);
//! PREDICTIVE=0 runs the references only, REFS=0 ccorch's pacer only, REFS=erlang ccorch's
//! and the Erlang C reference; REF_DAYS=n the references' days).
//!
//! Scenarios: 50 operators, 8-hour days; live-answer probability 0.25 with 120 s mean talk,
//! 0.15 with 60 s, 0.40 with 300 s; each also with the answer rate drifting ±50% hourly.

#![allow(clippy::unwrap_used)] // bench code: a panic is a failed run

use std::time::Instant;

use ccorch_dialer::pacer::{CampaignPacer, Event, Mode, Pacer, PacerConfig};
use ccorch_dialer::reference::{ErlangCPacer, VicidialAdaptive};
use ccorch_dialer::sim::{simulate, Report, Scenario};

fn row(scenario: &str, pacer: &str, days: u32, r: &Report, secs: f64) {
    let (w24, w30) = r.windows_over(0.03);
    let (m24, m30) = r.max_rates();
    println!(
        "| {scenario} | {pacer} | {days} | {:.1}% | {:.2}% | {:.2}% | {w24} / {w30} | {:.2}% / {:.2}% | {:.2}% | {:.1} | {secs:.1} s |",
        100.0 * r.occupancy(),
        100.0 * r.abandon_rate(),
        100.0 * r.abandon_rate_with_false_positives(),
        100.0 * m24,
        100.0 * m30,
        100.0 * r.max_rolling_24h,
        r.calls_per_agent_hour(),
    );
}

/// Cost of one predictive decision for 50 operators (30 talking, 10 in wrap-up, 10 idle)
/// with 150 calls ringing, after a day of history.
fn decision_cost() {
    let s = Scenario::standard(0.25, 120.0);
    let mut p = CampaignPacer::new(PacerConfig::new(Mode::Predictive)).unwrap();
    simulate(&s, &mut p, 9, 1).unwrap(); // history: ring, talk and answer estimates
    let base = 2 * 86_400_000;
    for a in 1000..1050u64 {
        p.handle(base, Event::AgentJoined(a));
    }
    for a in 1000..1040u64 {
        p.handle(base, Event::CallConnected { call: a, agent: a });
    }
    for a in 1030..1040u64 {
        p.handle(base + 60_000, Event::TalkEnded(a));
    }
    // the day's first live answers (before them a day dials one call per free operator)
    for c in 0..40u64 {
        p.handle(base + 1_000, Event::CallPlaced(2_000_000 + c));
        p.handle(
            base + 20_000,
            Event::CallAnswered {
                call: 2_000_000 + c,
                human: c % 4 == 0,
            },
        );
    }
    for c in 0..150u64 {
        p.handle(base + 60_000 + c * 50, Event::CallPlaced(1_000_000 + c));
    }
    let n = 100_000u64;
    let t = Instant::now();
    let mut total = 0u64;
    for i in 0..n {
        total += u64::from(p.dials(base + 70_000 + i));
    }
    let ns = t.elapsed().as_nanos() as f64 / n as f64;
    println!("predictive decision, 50 operators and 150 calls ringing: {ns:.0} ns each ({total} dials asked over {n} decisions)\n");
}

/// The setting that gives the most talk with no window over 3% (day-end and exact rolling
/// 24 hours, 30 days), chosen in hindsight, and its run.
fn best_in_hindsight(
    settings: impl IntoIterator<Item = f64>,
    run: impl Fn(f64) -> Report,
) -> Option<(f64, Report)> {
    let mut best: Option<(f64, Report)> = None;
    for setting in settings {
        let r = run(setting);
        if r.windows_over(0.03) == (0, 0)
            && r.max_rolling_24h <= 0.03
            && best
                .as_ref()
                .is_none_or(|(_, b)| r.occupancy() > b.occupancy())
        {
            best = Some((setting, r));
        }
    }
    best
}

fn main() {
    decision_cost();
    let days: u32 = std::env::var("DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    // REF_DAYS=n: the references' days (default DAYS/10)
    let ref_days = std::env::var("REF_DAYS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or((days / 10).max(1));
    // SEED=n: another draw of the same scenarios (every pacer sees the same callers).
    let seed: u64 = std::env::var("SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    // The fixed ratios tried for "best in hindsight": 1.0 to RATIO_MAX in RATIO_STEP steps.
    let env = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let (ratio_max, ratio_step) = (env("RATIO_MAX", 6.0), env("RATIO_STEP", 0.2));
    let steps = ((ratio_max - 1.0) / ratio_step).round() as u32;
    // ONLY=substring runs the scenarios whose name contains it; PREDICTIVE=0 skips ccorch's.
    let only = std::env::var("ONLY").unwrap_or_default();
    let predictive = std::env::var("PREDICTIVE")
        .map(|v| v != "0")
        .unwrap_or(true);
    println!("| scenario | pacer | days | talk occupancy | abandoned / live | incl. AMD false positives | day-end 24 h / 30 d windows > 3% | worst day-end 24 h / 30 d | worst exact rolling 24 h | connects per operator-hour | run time |");
    println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |");
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
    for (name, s) in scenarios.iter().filter(|(n, _)| n.contains(only.as_str())) {
        let t = Instant::now();
        let config = |mode| {
            let mut c = PacerConfig::new(mode);
            c.amd_false_positive_share = s.amd_false_positive_share();
            c
        };
        if predictive {
            let mut p = CampaignPacer::new(config(Mode::Predictive)).unwrap();
            let r = simulate(s, &mut p, seed, days).unwrap();
            row(
                name,
                "ccorch predictive",
                days,
                &r,
                t.elapsed().as_secs_f64(),
            );
        }

        // REFS=0: ccorch's pacer only; REFS=erlang: and the Erlang C reference
        let refs = std::env::var("REFS").unwrap_or_default();
        if refs == "0" {
            continue;
        }
        // Erlang C with feedback: the aim (abandons over live answers it steers to) that
        // gives the most talk with no window over 3%, chosen in hindsight.
        let t = Instant::now();
        let best = best_in_hindsight([0.01, 0.015, 0.02, 0.025, 0.028], |aim| {
            let mut p = ErlangCPacer::new(aim, s.connect_window, s.amd_false_positive_share());
            simulate(s, &mut p, seed, ref_days).unwrap()
        });
        if let Some((aim, r)) = best {
            row(
                name,
                &format!(
                    "Erlang C with feedback, best aim in hindsight ({:.1}%)",
                    100.0 * aim
                ),
                ref_days,
                &r,
                t.elapsed().as_secs_f64(),
            );
        }

        if refs == "erlang" {
            continue;
        }
        let t = Instant::now();
        let mut p = CampaignPacer::new(config(Mode::Progressive)).unwrap();
        let r = simulate(s, &mut p, seed, ref_days).unwrap();
        row(
            name,
            "progressive 1:1",
            ref_days,
            &r,
            t.elapsed().as_secs_f64(),
        );

        let t = Instant::now();
        let mut p = VicidialAdaptive::new(s.amd_false_positive_share());
        let r = simulate(s, &mut p, seed, ref_days).unwrap();
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
        let ratios = (0..=steps).map(|step| 1.0 + ratio_step * f64::from(step));
        let best = best_in_hindsight(ratios, |ratio| {
            let mut cfg = config(Mode::Power { ratio });
            cfg.budget_fallback = false;
            let mut p = CampaignPacer::new(cfg).unwrap();
            simulate(s, &mut p, seed, ref_days).unwrap()
        });
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
