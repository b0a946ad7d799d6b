//! Abandoned-call accounting the way regulators count it.
//!
//! A call answered by a live person and not connected to an operator within 2 seconds of
//! the greeting is abandoned. The rate is abandoned over live-answered calls:
//! - US TSR: per campaign, over a rolling 30 days;
//! - UK Ofcom: per campaign, over 24 hours, counting an estimate of answering-machine-
//!   detection false positives (live people taken for machines and dropped) as abandoned:
//!   (abandoned + FP) / (live + FP), with FP = machine verdicts × the estimated share of
//!   them that were people.
//!
//! Counts are kept in hourly buckets (720 for 30 days), so a window sums at most 720
//! buckets and recording is O(1).
//!
//! Ofcom's 24 hours are also kept as the campaign's calendar day (from local midnight):
//! a rolling window alone lets a pacer spend, in the morning, the slack of yesterday
//! afternoon's calls, which leave the window before today's day ends, so the day would
//! close over the limit. The budget is the smaller of the two.

pub type Millis = u64;

const HOUR: Millis = 3_600_000;
const DAY: Millis = 24 * HOUR;
const BUCKETS: usize = 30 * 24;

#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Bucket {
    hour: u64,
    live: u64,
    abandoned: u64,
    machine: u64,
}

#[derive(Clone, Debug)]
pub struct AbandonLedger {
    buckets: Vec<Bucket>,
    /// Estimated share of machine verdicts that were live people (Ofcom).
    amd_false_positive_share: f64,
    /// Local midnight is UTC midnight plus this (times are Unix epoch milliseconds).
    utc_offset: i64,
    /// The current calendar day and its counts.
    day: u64,
    today: WindowCounts,
}

/// Counts over one window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct WindowCounts {
    pub live: u64,
    pub abandoned: u64,
    pub machine: u64,
}

impl AbandonLedger {
    pub fn new(amd_false_positive_share: f64) -> AbandonLedger {
        AbandonLedger {
            buckets: vec![
                Bucket {
                    hour: u64::MAX,
                    ..Bucket::default()
                };
                BUCKETS
            ],
            amd_false_positive_share: amd_false_positive_share.clamp(0.0, 1.0),
            utc_offset: 0,
            day: 0,
            today: WindowCounts::default(),
        }
    }

    /// The campaign's time zone, as minutes east of UTC (its calendar day starts at local
    /// midnight).
    pub fn with_utc_offset_minutes(mut self, minutes: i32) -> AbandonLedger {
        self.utc_offset = i64::from(minutes) * 60_000;
        self
    }

    fn calendar_day(&self, now: Millis) -> u64 {
        (now as i64 + self.utc_offset).max(0) as u64 / DAY
    }

    fn today_mut(&mut self, now: Millis) -> &mut WindowCounts {
        let day = self.calendar_day(now);
        if day != self.day {
            self.day = day;
            self.today = WindowCounts::default();
        }
        &mut self.today
    }

    /// Counts since the campaign's local midnight.
    pub fn today(&self, now: Millis) -> WindowCounts {
        if self.calendar_day(now) == self.day {
            self.today
        } else {
            WindowCounts::default()
        }
    }

    fn bucket(&mut self, now: Millis) -> &mut Bucket {
        let hour = now / HOUR;
        let b = &mut self.buckets[(hour % BUCKETS as u64) as usize];
        if b.hour != hour {
            *b = Bucket {
                hour,
                ..Bucket::default()
            };
        }
        b
    }

    /// A live person answered (whether or not an operator then took the call).
    pub fn live_answer(&mut self, now: Millis) {
        self.bucket(now).live += 1;
        self.today_mut(now).live += 1;
    }

    /// A live-answered call was not connected within 2 s of the greeting.
    pub fn abandoned(&mut self, now: Millis) {
        self.bucket(now).abandoned += 1;
        self.today_mut(now).abandoned += 1;
    }

    /// Answering-machine detection said "machine" and the call was dropped.
    pub fn machine(&mut self, now: Millis) {
        self.bucket(now).machine += 1;
        self.today_mut(now).machine += 1;
    }

    /// Sums over the `hours` hours ending with the current one.
    pub fn window(&self, now: Millis, hours: u64) -> WindowCounts {
        let current = now / HOUR;
        let first = current.saturating_sub(hours.saturating_sub(1));
        let mut w = WindowCounts::default();
        for b in &self.buckets {
            if b.hour != u64::MAX && b.hour >= first && b.hour <= current {
                w.live += b.live;
                w.abandoned += b.abandoned;
                w.machine += b.machine;
            }
        }
        w
    }

    /// US TSR rate over the rolling 30 days; None before any live answer.
    pub fn rate_30_days(&self, now: Millis) -> Option<f64> {
        let w = self.window(now, 30 * 24);
        (w.live > 0).then(|| w.abandoned as f64 / w.live as f64)
    }

    /// Ofcom rate over 24 hours, AMD false positives included; None before any call.
    pub fn rate_24_hours(&self, now: Millis) -> Option<f64> {
        let w = self.window(now, 24);
        let fp = w.machine as f64 * self.amd_false_positive_share;
        let denominator = w.live as f64 + fp;
        (denominator > 0.0).then(|| (w.abandoned as f64 + fp) / denominator)
    }

    /// How many more abandons both windows allow now at `target` (e.g. 0.03), before the
    /// next live answers widen it: the pacer's budget. Negative when over.
    pub fn budget(&self, now: Millis, target: f64) -> f64 {
        let m = self.window(now, 30 * 24);
        let tsr = target * m.live as f64 - m.abandoned as f64;
        // (a + fp + x) / (l + fp) ≤ t  ⇔  x ≤ t (l + fp) − a − fp
        let ofcom = |d: WindowCounts| {
            let fp = d.machine as f64 * self.amd_false_positive_share;
            target * (d.live as f64 + fp) - d.abandoned as f64 - fp
        };
        tsr.min(ofcom(self.window(now, 24)))
            .min(ofcom(self.today(now)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_small_cases() {
        let mut l = AbandonLedger::new(0.1);
        assert_eq!(l.rate_30_days(0), None);
        // 100 live answers, 3 of them abandoned, 20 machine verdicts, all in hour 0.
        for _ in 0..100 {
            l.live_answer(1000);
        }
        for _ in 0..3 {
            l.abandoned(2000);
        }
        for _ in 0..20 {
            l.machine(3000);
        }
        assert_eq!(l.rate_30_days(HOUR - 1), Some(0.03));
        // Ofcom: (3 + 2) / (100 + 2)
        let ofcom = l.rate_24_hours(HOUR - 1).unwrap();
        assert!((ofcom - 5.0 / 102.0).abs() < 1e-12);
        // Budget at 3%: TSR 3 − 3 = 0; Ofcom 0.03 · 102 − 5 = −1.94.
        assert!((l.budget(HOUR - 1, 0.03) - (0.03 * 102.0 - 5.0)).abs() < 1e-12);
    }

    #[test]
    fn yesterdays_slack_is_not_spent_today() {
        // Yesterday 13:00–17:00: 1,000 live answers, none abandoned. Today 09:00: 100 live
        // answers, 3 abandoned. The rolling 24 hours still hold yesterday's slack (30 more
        // abandons), but it leaves the window before today ends: the budget is today's.
        let mut l = AbandonLedger::new(0.0);
        for i in 0..1000 {
            l.live_answer(13 * HOUR + i * 10_000);
        }
        let today = DAY + 9 * HOUR;
        for _ in 0..100 {
            l.live_answer(today);
        }
        for _ in 0..3 {
            l.abandoned(today);
        }
        assert_eq!(l.window(today, 24).live, 1100);
        assert_eq!(l.today(today).live, 100);
        assert!(l.budget(today, 0.03).abs() < 1e-9);
        // Local midnight three hours before UTC's: 22:00 UTC yesterday is already today.
        let mut l = AbandonLedger::new(0.0).with_utc_offset_minutes(180);
        l.live_answer(DAY - 2 * HOUR);
        assert_eq!(l.today(DAY + HOUR).live, 1);
        assert_eq!(l.today(2 * DAY - 2 * HOUR).live, 0);
    }

    #[test]
    fn windows_roll() {
        let mut l = AbandonLedger::new(0.0);
        l.live_answer(0);
        l.abandoned(0);
        for h in 1..=23 {
            l.live_answer(h * HOUR);
        }
        assert_eq!(
            l.window(23 * HOUR, 24),
            WindowCounts {
                live: 24,
                abandoned: 1,
                machine: 0
            }
        );
        // Hour 0 leaves the 24-hour window but stays in the 30-day one.
        assert_eq!(l.window(24 * HOUR, 24).abandoned, 0);
        assert_eq!(l.rate_30_days(24 * HOUR), Some(1.0 / 24.0));
        // After 30 days it is gone everywhere, and its bucket is reused cleanly.
        assert_eq!(l.window(30 * 24 * HOUR, 30 * 24).live, 23);
        l.live_answer(30 * 24 * HOUR);
        assert_eq!(
            l.window(30 * 24 * HOUR, 1),
            WindowCounts {
                live: 1,
                abandoned: 0,
                machine: 0
            }
        );
    }
}
