//! The routing workload: 10,000 agents, 500 skills, 1,000 queues, 50,000 waiting
//! calls. Prints load time, decisions per second, p50/p99 decision latency, the cost of an
//! agent state change, and resident memory. Run: `cargo bench -p ccorch-acd --bench routing`.

#![allow(clippy::unwrap_used)] // bench code: a panic is a failed run

use std::time::Instant;

use ccorch_acd::engine::*;
use ccorch_acd::skills::{parse, SkillTable};

struct Rng(u64);
impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) % n
    }
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(str::to_owned)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    sorted[((sorted.len() as f64 - 1.0) * p) as usize]
}

fn main() {
    const AGENTS: u64 = 10_000;
    const SKILLS: u64 = 500;
    const QUEUES: u64 = 1_000;
    const CALLS: u64 = 50_000;
    const MEMBERSHIPS_PER_AGENT: u64 = 8; // 80,000 requested, ≥ 75,000
    let rss0 = rss_kib();
    let mut rng = Rng(42);
    let mut skills = SkillTable::default();
    let mut acd = Acd::new(1);
    let strategies = [
        Strategy::LongestIdle,
        Strategy::MostSkilled,
        Strategy::FewestCalls,
        Strategy::RoundRobin,
    ];
    let mut queue_skill = Vec::new();
    for q in 0..QUEUES {
        let s = rng.below(SKILLS);
        queue_skill.push(s);
        let mut cfg = QueueConfig::new(
            &format!("q{q}"),
            parse(&format!("s{s}>=2"), &mut skills).unwrap(),
        );
        cfg.strategy = strategies[(q % 4) as usize];
        cfg.wrap_up = 0;
        cfg.expansions = vec![(30_000, parse(&format!("s{s}"), &mut skills).unwrap())];
        acd.add_queue(cfg).unwrap();
    }
    // Agents: member of 8 queues, with those queues' skills (levels 1..10) and 2 others.
    let mut logins = Vec::new();
    for a in 0..AGENTS {
        let queues: Vec<QueueId> = (0..MEMBERSHIPS_PER_AGENT)
            .map(|_| QueueId(rng.below(QUEUES) as u32))
            .collect();
        let mut sk: Vec<_> = queues
            .iter()
            .map(|q| {
                (
                    skills.intern(&format!("s{}", queue_skill[q.0 as usize])),
                    1 + rng.below(10) as u8,
                )
            })
            .collect();
        for _ in 0..2 {
            sk.push((
                skills.intern(&format!("s{}", rng.below(SKILLS))),
                1 + rng.below(10) as u8,
            ));
        }
        logins.push((AgentId(a), sk, queues));
    }
    let t = Instant::now();
    for (a, sk, qs) in &logins {
        acd.login(0, *a, sk, qs).unwrap();
    }
    let load = t.elapsed();
    // 50,000 calls wait while every agent is NotReady.
    for c in 0..CALLS {
        acd.enqueue(
            1,
            CallId(c),
            QueueId(rng.below(QUEUES) as u32),
            rng.below(3) as i32,
            &[],
        )
        .unwrap();
    }
    while acd.poll_action().is_some() {}
    let rss_loaded = rss_kib();

    // Decisions: an agent frees up and takes the most urgent call it may serve; the caller
    // is replaced by a new one so 50,000 stay waiting. Each measured op is one end_call
    // (which routes) or one set_ready.
    let mut now = 2;
    let mut next_call = CALLS;
    let mut lat = Vec::with_capacity(400_000);
    let mut offers: Vec<(CallId, AgentId)> = Vec::new();
    let started = Instant::now();
    for (a, _, _) in &logins {
        let t = Instant::now();
        acd.set_ready(now, *a).unwrap();
        lat.push(t.elapsed().as_nanos() as u64);
    }
    let mut decisions = 0u64;
    for round in 0..40 {
        offers.clear();
        while let Some(action) = acd.poll_action() {
            if let Action::Offer { call, agent, .. } = action {
                offers.push((call, agent));
            }
        }
        decisions += offers.len() as u64;
        now += 1000;
        for &(call, _) in &offers {
            acd.answer(now, call).unwrap();
            acd.enqueue(
                now,
                CallId(next_call),
                QueueId(rng.below(QUEUES) as u32),
                0,
                &[],
            )
            .unwrap();
            next_call += 1;
        }
        while acd.poll_action().is_some() {}
        now += 1000;
        for &(call, _) in &offers {
            let t = Instant::now();
            acd.end_call(now, call).unwrap(); // wrap-up 0: the agent is Ready and routed again
            lat.push(t.elapsed().as_nanos() as u64);
        }
        let _ = round;
    }
    let elapsed = started.elapsed();
    lat.sort_unstable();

    // Agent state changes without a call to route: every waiting caller hangs up, then
    // idle agents go Ready <-> NotReady(lunch).
    // In id order: a ringing call's hang-up frees its agent, who may take a later call,
    // which this same pass then reaches.
    for c in 0..next_call {
        let _ = acd.hangup(now, CallId(c));
    }
    while acd.poll_action().is_some() {}
    let idle: Vec<AgentId> = logins
        .iter()
        .map(|(a, _, _)| *a)
        .filter(|a| acd.agent_state(*a) == Some(AgentState::Ready))
        .collect();
    let t = Instant::now();
    let mut changes = 0u32;
    for _ in 0..20 {
        for &a in &idle {
            acd.set_not_ready(now, a, Reason(10)).unwrap();
            acd.set_ready(now, a).unwrap();
            changes += 2;
        }
        while acd.poll_action().is_some() {}
    }
    let per_change = t.elapsed().as_nanos() as f64 / f64::from(changes.max(1));
    let decision_ops = lat.len() - logins.len();
    let mean_ns = lat.iter().sum::<u64>() as f64 / lat.len() as f64;

    println!("acd routing workload: {AGENTS} agents, {SKILLS} skills, {QUEUES} queues, {CALLS} waiting calls");
    println!(
        "  login of {} agent-queue memberships: {:.1} ms",
        AGENTS * MEMBERSHIPS_PER_AGENT,
        load.as_secs_f64() * 1e3
    );
    println!(
        "  {} measured ops that route ({decision_ops} freed agents each taking a call, {decisions} offers), mean {mean_ns:.0} ns: {:.0} decisions/s on one core ({:.2} s wall incl. unmeasured answer/enqueue)",
        lat.len(),
        1e9 / mean_ns,
        elapsed.as_secs_f64()
    );
    println!(
        "  op latency incl. decision: p50 {} ns, p99 {} ns, max {} ns",
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        lat.last().copied().unwrap_or(0)
    );
    println!(
        "  agent state change (no call to route, {} idle agents): {per_change:.0} ns",
        idle.len()
    );
    println!(
        "  resident memory: {:.1} MiB before, {:.1} MiB with the workload loaded (+{:.1} MiB)",
        rss0 as f64 / 1024.0,
        rss_loaded as f64 / 1024.0,
        (rss_loaded - rss0) as f64 / 1024.0
    );
    acd.check_invariants().unwrap();
}
