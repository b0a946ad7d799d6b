//! Random event sequences against the ACD, with every invariant checked after every event:
//! each agent in exactly one state, a call offered to at most one agent, no offer past its
//! deadline, no call waiting while an agent who may take it is Ready, every call leaving
//! exactly once with one outcome. 10 million events in all (`ACD_RANDOM_EVENTS` to change).

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use std::collections::{HashMap, HashSet};

use ccorch_acd::engine::*;
use ccorch_acd::skills::{parse, SkillTable};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn build(seed: u64) -> (Acd, Vec<QueueId>, SkillTable) {
    let mut skills = SkillTable::default();
    let mut acd = Acd::new(seed);
    let strategies = [
        Strategy::LongestIdle,
        Strategy::LeastOccupied,
        Strategy::MostSkilled,
        Strategy::RoundRobin,
        Strategy::FewestCalls,
        Strategy::WeightedRandom,
    ];
    let mut queues = Vec::new();
    let overflow_target = {
        let mut c = QueueConfig::new("general", parse("general", &mut skills).unwrap());
        c.strategy = strategies[(seed % 6) as usize];
        c.wrap_up = 2_000;
        acd.add_queue(c).unwrap()
    };
    queues.push(overflow_target);
    let mut tech = QueueConfig::new("tech", parse("tech>=5 & lang:ru", &mut skills).unwrap());
    tech.expansions = vec![
        (3_000, parse("tech>=3", &mut skills).unwrap()),
        (8_000, parse("tech", &mut skills).unwrap()),
    ];
    tech.strategy = strategies[((seed + 1) % 6) as usize];
    tech.max_wait = Some(20_000);
    tech.overflow = Overflow::Queue(overflow_target);
    tech.offer_timeout = 4_000;
    tech.missed_offers_to_not_ready = 2;
    queues.push(acd.add_queue(tech).unwrap());
    let mut billing = QueueConfig::new("billing", parse("billing | tech>=8", &mut skills).unwrap());
    billing.strategy = strategies[((seed + 2) % 6) as usize];
    billing.max_wait = Some(15_000);
    billing.overflow = Overflow::External(1);
    billing.max_length = Some(6);
    billing.wrap_up = 0;
    billing.priority_weight = 3;
    queues.push(acd.add_queue(billing).unwrap());
    (acd, queues, skills)
}

macro_rules! drain {
    ($acd:ident, $now:ident, $r:expr, $history:ident, $ringing:ident, $left:ident, $live:ident, $in_service:ident) => {{
        let now = $now;
        let r = $r;
        while let Some(action) = $acd.poll_action() {
            $history.push((now, r, action));
            if $history.len() > 4000 {
                $history.drain(..2000);
            }
            match action {
                Action::Offer {
                    call,
                    agent,
                    deadline,
                    ..
                } => {
                    assert!(deadline >= now, "offer deadline in the past");
                    if $ringing.insert(call, agent).is_some() {
                        let mine: Vec<_> = $history
                            .iter()
                            .filter(|(_, _, a)| {
                                format!("{a:?}").contains(&format!("CallId({})", call.0))
                            })
                            .collect();
                        panic!("call {call:?} offered twice at once: {mine:?}");
                    }
                }
                Action::RevokeOffer { call, .. } => {
                    $ringing.remove(&call);
                }
                Action::CallLeft { call, outcome, .. } => {
                    assert!($left.insert(call), "call {call:?} left twice");
                    $live.retain(|c| *c != call);
                    if let Outcome::Answered { .. } = outcome {
                        $ringing
                            .remove(&call)
                            .expect("answered calls were $ringing");
                        $in_service.push(call);
                    } else {
                        $ringing.remove(&call);
                    }
                }
                Action::Moved { .. } | Action::AgentChanged { .. } => {}
            }
        }
    }};
}

fn run(seed: u64, events: u64) {
    let (mut acd, queues, mut skills) = build(seed);
    let mut rng = Rng(seed);
    let mut now: Millis = 0;
    let agent_ids: Vec<AgentId> = (1..=8).map(AgentId).collect();
    let mut next_call = 1u64;
    let mut live: Vec<CallId> = Vec::new();
    let mut left: HashSet<CallId> = HashSet::new();
    let mut ringing: HashMap<CallId, AgentId> = HashMap::new();
    let mut in_service: Vec<CallId> = Vec::new();
    let skill_names = ["general", "tech", "lang:ru", "billing"];
    let mut history: Vec<(Millis, u64, Action)> = Vec::new();
    for _ in 0..events {
        now += rng.below(1500);
        acd.handle_timeout(now);
        drain!(acd, now, 100, history, ringing, left, live, in_service);
        let r = rng.below(100);
        let agent = agent_ids[rng.below(8) as usize];
        let _ = match r {
            0..=4 => {
                let n = 1 + rng.below(3) as usize;
                let s: Vec<_> = (0..n)
                    .map(|_| {
                        (
                            skills.intern(skill_names[rng.below(4) as usize]),
                            1 + rng.below(10) as u8,
                        )
                    })
                    .collect();
                let qs: Vec<_> = queues
                    .iter()
                    .copied()
                    .filter(|_| rng.below(3) > 0)
                    .collect();
                acd.login(now, agent, &s, &qs)
            }
            5..=6 => acd.logout(now, agent),
            7..=21 => acd.set_ready(now, agent),
            22..=26 => acd.set_not_ready(now, agent, Reason(10 + rng.below(3) as u16)),
            27..=44 => {
                let call = CallId(next_call);
                next_call += 1;
                let q = queues[rng.below(3) as usize];
                let preferred: Vec<_> = if rng.below(4) == 0 {
                    vec![(agent, now + rng.below(10_000))]
                } else {
                    vec![]
                };
                let res = acd.enqueue(now, call, q, rng.below(3) as i32, &preferred);
                if res.is_ok() {
                    live.push(call);
                }
                res
            }
            45..=64 => match ringing.keys().next().copied() {
                Some(call) => acd.answer(now, call),
                None => Ok(()),
            },
            65..=69 => match ringing.keys().next().copied() {
                Some(call) => {
                    let res = acd.reject(now, call);
                    if res.is_ok() {
                        ringing.remove(&call); // the controller knows it stopped ringing
                    }
                    res
                }
                None => Ok(()),
            },
            70..=79 if !live.is_empty() => {
                let call = live[rng.below(live.len() as u64) as usize];
                acd.hangup(now, call)
            }
            80..=94 if !in_service.is_empty() => {
                let i = rng.below(in_service.len() as u64) as usize;
                acd.end_call(now, in_service[i])
            }
            _ => Ok(()),
        };
        // Errors are fine (illegal moves are refused); the state must stay consistent.
        drain!(acd, now, r, history, ringing, left, live, in_service);
        // A rejected or ended call is no longer ringing or in service.
        ringing.retain(|c, a| matches!(acd.agent_state(*a), Some(AgentState::Offered { call, .. }) if call == *c));
        in_service.retain(|c| acd.serving_agent(*c).is_some());
        if let Err(e) = acd.check_invariants() {
            panic!("seed {seed}, event at {now} ms: {e}");
        }
    }
    // Drain: every call still known leaves exactly once.
    for call in live.clone() {
        acd.hangup(now, call).expect("live calls can hang up");
    }
    while let Some(action) = acd.poll_action() {
        if let Action::CallLeft { call, .. } = action {
            assert!(left.insert(call), "call {call:?} left twice");
        }
    }
    let entered = next_call - 1;
    assert!(left.len() as u64 <= entered);
    assert_eq!(acd.waiting_calls(), 0);
}

#[test]
fn ten_million_random_events_keep_every_invariant() {
    let total: u64 = std::env::var("ACD_RANDOM_EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let seeds = 20u64;
    for seed in 0..seeds {
        run(seed, total / seeds);
    }
}
