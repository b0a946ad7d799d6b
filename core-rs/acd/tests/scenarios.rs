//! The ACD through the seeds' scenarios, in virtual time (milliseconds).

#![allow(clippy::unwrap_used)] // test code: a panic is a failed test

use ccorch_acd::engine::*;
use ccorch_acd::skills::{parse, SkillId, SkillTable};

const S: Millis = 1000;

struct World {
    acd: Acd,
    skills: SkillTable,
    now: Millis,
}

impl World {
    fn new() -> World {
        World {
            acd: Acd::new(7),
            skills: SkillTable::default(),
            now: 0,
        }
    }
    fn queue(&mut self, name: &str, expr: &str, tweak: impl FnOnce(&mut QueueConfig)) -> QueueId {
        let mut cfg = QueueConfig::new(name, parse(expr, &mut self.skills).unwrap());
        tweak(&mut cfg);
        self.acd.add_queue(cfg).unwrap()
    }
    fn skillset(&mut self, s: &[(&str, u8)]) -> Vec<(SkillId, u8)> {
        s.iter().map(|(n, l)| (self.skills.intern(n), *l)).collect()
    }
    fn agent(&mut self, id: u64, s: &[(&str, u8)], queues: &[QueueId]) -> AgentId {
        let skills = self.skillset(s);
        self.acd
            .login(self.now, AgentId(id), &skills, queues)
            .unwrap();
        self.acd.set_ready(self.now, AgentId(id)).unwrap();
        self.acd.check_invariants().unwrap();
        AgentId(id)
    }
    /// Advance the clock, firing timers on the way.
    fn wait(&mut self, ms: Millis) {
        self.now += ms;
        self.acd.handle_timeout(self.now);
        self.acd.check_invariants().unwrap();
    }
    fn actions(&mut self) -> Vec<Action> {
        let mut v = Vec::new();
        while let Some(a) = self.acd.poll_action() {
            v.push(a);
        }
        v
    }
    fn offers(&mut self) -> Vec<(CallId, AgentId)> {
        self.actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Offer { call, agent, .. } => Some((call, agent)),
                _ => None,
            })
            .collect()
    }
    fn call(&mut self, id: u64, q: QueueId, priority: i32) -> CallId {
        self.acd
            .enqueue(self.now, CallId(id), q, priority, &[])
            .unwrap();
        self.acd.check_invariants().unwrap();
        CallId(id)
    }
}

#[test]
fn caller_presses_1_and_the_longest_idle_operator_answers_then_wraps_up() {
    let mut w = World::new();
    let tech = w.queue("tech", "tech", |c| c.wrap_up = 30 * S);
    let a1 = w.agent(7001, &[("tech", 5)], &[tech]);
    w.wait(5 * S);
    let _a2 = w.agent(7002, &[("tech", 5)], &[tech]);
    w.actions();
    w.wait(S);
    let call = w.call(1, tech, 0);
    assert_eq!(w.offers(), vec![(call, a1)], "longest idle first");
    w.wait(3 * S);
    w.acd.answer(w.now, call).unwrap();
    let acts = w.actions();
    assert!(acts.contains(&Action::CallLeft {
        call,
        queue: tech,
        outcome: Outcome::Answered { agent: a1 },
        waited: 3 * S
    }));
    assert_eq!(w.acd.agent_state(a1), Some(AgentState::Busy { call }));
    w.wait(120 * S);
    w.acd.end_call(w.now, call).unwrap();
    assert_eq!(
        w.acd.agent_state(a1),
        Some(AgentState::WrapUp {
            until: w.now + 30 * S
        })
    );
    w.wait(29 * S);
    assert!(matches!(
        w.acd.agent_state(a1),
        Some(AgentState::WrapUp { .. })
    ));
    w.wait(S);
    assert_eq!(w.acd.agent_state(a1), Some(AgentState::Ready));
    let st = w.acd.agent_stats(w.now, a1).unwrap();
    assert_eq!(st.handled, 1);
    assert_eq!(st.time_in[StateKind::Busy as usize], 120 * S);
    assert_eq!(st.time_in[StateKind::WrapUp as usize], 30 * S);
    assert_eq!(st.aht, Some(150.0));
    let q = w.acd.queue_stats(w.now, tech).unwrap();
    assert_eq!((q.entered, q.answered, q.abandoned), (1, 1, 0));
    assert_eq!(q.service_level, Some(1.0));
    assert_eq!(q.asa, Some(3.0));
}

#[test]
fn no_answer_puts_the_call_back_in_its_place_and_the_agent_not_ready() {
    let mut w = World::new();
    let q = w.queue("tech", "tech", |c| c.offer_timeout = 15 * S);
    let a1 = w.agent(1, &[("tech", 5)], &[q]);
    let first = w.call(10, q, 0);
    assert_eq!(w.offers(), vec![(first, a1)]);
    w.wait(S);
    let second = w.call(11, q, 0);
    w.wait(14 * S);
    let acts = w.actions();
    assert!(acts.contains(&Action::RevokeOffer {
        call: first,
        agent: a1
    }));
    assert_eq!(
        w.acd.agent_state(a1),
        Some(AgentState::NotReady(Reason::MISSED_OFFER))
    );
    assert_eq!(
        w.acd.position(first),
        Some(1),
        "back at the head, ahead of the later call"
    );
    assert_eq!(w.acd.position(second), Some(2));
    let a2 = w.agent(2, &[("tech", 1)], &[q]);
    assert_eq!(w.offers(), vec![(first, a2)]);
}

#[test]
fn all_busy_then_the_first_agent_to_free_up_takes_the_waiting_call() {
    let mut w = World::new();
    let q = w.queue("tech", "tech", |c| {
        c.wrap_up = 10 * S;
        c.expected_handle = 70 * S; // what the first call confirms
    });
    let a = w.agent(1, &[("tech", 5)], &[q]);
    let c1 = w.call(1, q, 0);
    w.acd.answer(w.now, c1).unwrap();
    w.wait(60 * S);
    w.acd.end_call(w.now, c1).unwrap(); // some history for the estimate
    w.wait(10 * S);
    let c2 = w.call(2, q, 0);
    w.acd.answer(w.now, c2).unwrap();
    let c3 = w.call(3, q, 0);
    w.actions();
    let ewt = w.acd.estimated_wait(w.now, c3).unwrap();
    assert!(
        (ewt - 70.0).abs() < 1e-9,
        "one ahead-or-serving on one agent at AHT 70 s: {ewt}"
    );
    w.wait(45 * S);
    w.acd.end_call(w.now, c2).unwrap();
    w.wait(10 * S);
    assert_eq!(w.offers(), vec![(c3, a)]);
}

#[test]
fn abandon_while_queued_and_while_ringing() {
    let mut w = World::new();
    let q = w.queue("gen", "general", |_| {});
    let c1 = w.call(1, q, 0);
    w.wait(42 * S);
    w.acd.hangup(w.now, c1).unwrap();
    let acts = w.actions();
    assert!(acts.contains(&Action::CallLeft {
        call: c1,
        queue: q,
        outcome: Outcome::Abandoned,
        waited: 42 * S
    }));
    let a = w.agent(1, &[("general", 1)], &[q]);
    let c2 = w.call(2, q, 0);
    w.actions();
    w.wait(2 * S);
    w.acd.hangup(w.now, c2).unwrap();
    let acts = w.actions();
    assert!(acts.contains(&Action::RevokeOffer { call: c2, agent: a }));
    assert_eq!(
        w.acd.agent_state(a),
        Some(AgentState::Ready),
        "not the agent's fault"
    );
    assert_eq!(
        w.acd.hangup(w.now, c2),
        Err(AcdError::UnknownCall(c2)),
        "ends exactly once"
    );
    let st = w.acd.queue_stats(w.now, q).unwrap();
    assert_eq!(st.abandoned, 2);
    assert_eq!(st.abandon_rate, Some(1.0));
}

#[test]
fn a_caller_who_chooses_a_callback_withdraws_without_counting_as_an_abandon() {
    let mut w = World::new();
    let q = w.queue("gen", "general", |_| {});
    let c1 = w.call(1, q, 0);
    w.wait(30 * S);
    w.acd.withdraw(w.now, c1).unwrap();
    assert!(w.actions().contains(&Action::CallLeft {
        call: c1,
        queue: q,
        outcome: Outcome::Withdrawn,
        waited: 30 * S
    }));
    // While an operator's phone rings: the offer is revoked, the operator stays Ready.
    let a = w.agent(1, &[("general", 1)], &[q]);
    let c2 = w.call(2, q, 0);
    w.actions();
    w.acd.withdraw(w.now, c2).unwrap();
    assert!(w
        .actions()
        .contains(&Action::RevokeOffer { call: c2, agent: a }));
    assert_eq!(w.acd.agent_state(a), Some(AgentState::Ready));
    // Once in conversation there is nothing to withdraw from.
    let c3 = w.call(3, q, 0);
    w.actions();
    w.acd.answer(w.now, c3).unwrap();
    assert!(matches!(
        w.acd.withdraw(w.now, c3),
        Err(AcdError::WrongCallState { .. })
    ));
    let st = w.acd.queue_stats(w.now, q).unwrap();
    assert_eq!(st.abandoned, 0);
}

#[test]
fn lunch_asked_during_a_call_applies_after_wrap_up_and_illegal_moves_change_nothing() {
    let mut w = World::new();
    let q = w.queue("tech", "tech", |c| c.wrap_up = 5 * S);
    let a = w.agent(1, &[("tech", 5)], &[q]);
    let lunch = Reason(10);
    let c = w.call(1, q, 0);
    w.acd.answer(w.now, c).unwrap();
    assert_eq!(
        w.acd.logout(w.now, a),
        Err(AcdError::IllegalTransition {
            agent: a,
            from: StateKind::Busy,
            action: "log out"
        })
    );
    w.acd.set_not_ready(w.now, a, lunch).unwrap();
    assert_eq!(w.acd.agent_state(a), Some(AgentState::Busy { call: c }));
    w.wait(30 * S);
    w.acd.end_call(w.now, c).unwrap();
    w.wait(5 * S);
    assert_eq!(w.acd.agent_state(a), Some(AgentState::NotReady(lunch)));
    assert!(matches!(
        w.acd.set_not_ready(w.now, a, lunch),
        Err(AcdError::IllegalTransition { .. })
    ));
    w.acd.set_ready(w.now, a).unwrap();
    assert!(matches!(
        w.acd.set_ready(w.now, a),
        Err(AcdError::IllegalTransition { .. })
    ));
    assert_eq!(
        w.acd.answer(w.now, CallId(99)),
        Err(AcdError::UnknownCall(CallId(99)))
    );
    w.acd.logout(w.now, a).unwrap();
    assert_eq!(w.acd.agent_state(a), None);
    w.acd.check_invariants().unwrap();
}

#[test]
fn vip_priority_goes_first() {
    let mut w = World::new();
    let q = w.queue("tech", "tech", |_| {});
    let normal = w.call(1, q, 0);
    w.wait(30 * S);
    let vip = w.call(2, q, 10);
    assert_eq!(w.acd.position(vip), Some(1));
    assert_eq!(w.acd.position(normal), Some(2));
    let a = w.agent(1, &[("tech", 1)], &[q]);
    assert_eq!(w.offers(), vec![(vip, a)]);
}

#[test]
fn skill_expansion_after_30_seconds_accepts_level_3() {
    let mut w = World::new();
    let mut t = SkillTable::default();
    std::mem::swap(&mut t, &mut w.skills);
    let relaxed = parse("billing>=3", &mut t).unwrap();
    std::mem::swap(&mut t, &mut w.skills);
    let q = w.queue("billing", "billing>=5", |c| {
        c.expansions = vec![(30 * S, relaxed)]
    });
    let junior = w.agent(1, &[("billing", 3)], &[q]);
    let c = w.call(1, q, 0);
    assert_eq!(w.offers(), vec![]);
    w.wait(29 * S);
    assert_eq!(w.offers(), vec![]);
    w.wait(S);
    assert_eq!(w.offers(), vec![(c, junior)]);
}

#[test]
fn preferred_manager_gets_the_call_within_its_window_else_anyone() {
    let mut w = World::new();
    let q = w.queue("tech", "tech", |_| {});
    let manager = w.agent(1, &[("tech", 5)], &[q]);
    let other = w.agent(2, &[("tech", 5)], &[q]);
    w.acd.set_not_ready(w.now, manager, Reason(11)).unwrap();
    w.actions();
    w.acd
        .enqueue(w.now, CallId(1), q, 0, &[(manager, w.now + 20 * S)])
        .unwrap();
    assert_eq!(
        w.offers(),
        vec![],
        "reserved for the manager although another agent is Ready"
    );
    w.wait(10 * S);
    w.acd.set_ready(w.now, manager).unwrap();
    assert_eq!(w.offers(), vec![(CallId(1), manager)]);
    w.acd.answer(w.now, CallId(1)).unwrap();

    w.acd
        .enqueue(w.now, CallId(2), q, 0, &[(manager, w.now + 20 * S)])
        .unwrap();
    w.wait(19 * S);
    assert_eq!(w.offers(), vec![]);
    w.wait(S);
    assert_eq!(w.offers(), vec![(CallId(2), other)]);
}

#[test]
fn overflow_after_max_wait_moves_the_call_to_the_other_queue() {
    let mut w = World::new();
    let general = w.queue("general", "general", |_| {});
    let tech = w.queue("tech", "tech", |c| {
        c.max_wait = Some(60 * S);
        c.overflow = Overflow::Queue(general);
    });
    let g = w.agent(1, &[("general", 2)], &[general]);
    let c = w.call(1, tech, 0);
    w.wait(60 * S);
    let acts = w.actions();
    assert!(acts.contains(&Action::Moved {
        call: c,
        from: tech,
        to: general
    }));
    assert!(acts.contains(&Action::Offer {
        call: c,
        agent: g,
        queue: general,
        deadline: w.now + 15 * S
    }));
    let _ = tech;
}

#[test]
fn timed_out_or_external_overflow_end_the_call() {
    let mut w = World::new();
    let q = w.queue("q", "x", |c| c.max_wait = Some(10 * S));
    let vm = w.queue("vm", "x", |c| {
        c.max_wait = Some(10 * S);
        c.overflow = Overflow::External(7);
    });
    w.call(1, q, 0);
    w.call(2, vm, 0);
    w.wait(10 * S);
    let left: Vec<_> = w
        .actions()
        .into_iter()
        .filter_map(|a| {
            if let Action::CallLeft { call, outcome, .. } = a {
                Some((call, outcome))
            } else {
                None
            }
        })
        .collect();
    assert_eq!(
        left,
        vec![
            (CallId(1), Outcome::TimedOut),
            (CallId(2), Outcome::Overflowed(7))
        ]
    );
}

#[test]
fn strategies_choose_as_named() {
    // most skilled
    let mut w = World::new();
    let q = w.queue("q", "net", |c| c.strategy = Strategy::MostSkilled);
    w.agent(1, &[("net", 3)], &[q]);
    w.wait(S);
    let expert = w.agent(2, &[("net", 9)], &[q]);
    w.actions();
    w.call(1, q, 0);
    assert_eq!(w.offers()[0].1, expert);

    // fewest calls: agent 1 handled one call, agent 2 none
    let mut w = World::new();
    let q = w.queue("q", "net", |c| {
        c.strategy = Strategy::FewestCalls;
        c.wrap_up = 0;
    });
    let a1 = w.agent(1, &[("net", 3)], &[q]);
    let c = w.call(1, q, 0);
    w.acd.answer(w.now, c).unwrap();
    let a2 = w.agent(2, &[("net", 3)], &[q]);
    w.wait(S);
    w.acd.end_call(w.now, c).unwrap();
    w.actions();
    w.call(2, q, 0);
    assert_eq!(
        w.offers()[0].1,
        a2,
        "a1 has handled more and is idle shorter"
    );
    let _ = a1;

    // round robin: offers rotate over three agents
    let mut w = World::new();
    let q = w.queue("q", "net", |c| {
        c.strategy = Strategy::RoundRobin;
        c.wrap_up = 0;
    });
    for id in 1..=3 {
        w.agent(id, &[("net", 1)], &[q]);
    }
    w.actions();
    let mut order = Vec::new();
    for n in 0..6 {
        let c = w.call(100 + n, q, 0);
        let (_, agent) = w.offers()[0];
        order.push(agent.0);
        w.acd.answer(w.now, c).unwrap();
        w.acd.end_call(w.now, c).unwrap();
        w.actions();
    }
    assert_eq!(order, vec![1, 2, 3, 1, 2, 3]);
}

#[test]
fn weighted_random_favours_higher_levels_reproducibly() {
    let run = |seed: u64| {
        let mut w = World::new();
        w.acd = Acd::new(seed);
        let q = w.queue("q", "net", |c| {
            c.strategy = Strategy::WeightedRandom;
            c.wrap_up = 0;
        });
        w.agent(1, &[("net", 1)], &[q]);
        w.agent(2, &[("net", 9)], &[q]);
        w.actions();
        let mut counts = [0u32; 3];
        for n in 0..2000 {
            let c = w.call(n, q, 0);
            let (_, agent) = w.offers()[0];
            counts[agent.0 as usize] += 1;
            w.acd.answer(w.now, c).unwrap();
            w.acd.end_call(w.now, c).unwrap();
            w.actions();
        }
        counts
    };
    let a = run(1);
    assert_eq!(a, run(1), "same seed, same choices");
    // Expected shares 1/10 and 9/10.
    assert!((150..=250).contains(&a[1]), "{a:?}");
}

#[test]
fn multi_queue_agent_takes_the_call_nearest_to_breaching_its_service_level() {
    let mut w = World::new();
    let fast = w.queue("fast", "x", |c| c.sl_threshold = 20 * S);
    let slow = w.queue("slow", "x", |c| c.sl_threshold = 60 * S);
    let old_slow = w.call(1, slow, 0);
    w.wait(30 * S); // breaches at 60 s
    let new_fast = w.call(2, fast, 0); // breaches at 30 + 20 = 50 s
    w.wait(5 * S);
    let a = w.agent(1, &[("x", 1)], &[fast, slow]);
    assert_eq!(w.offers(), vec![(new_fast, a)]);
    let _ = old_slow;
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let mut w = World::new();
    let q = w.queue("q", "x", |c| c.max_length = Some(1));
    w.call(1, q, 0);
    assert_eq!(
        w.acd.enqueue(w.now, CallId(2), q, 0, &[]),
        Err(AcdError::QueueFull {
            queue: q,
            length: 1
        })
    );
    assert_eq!(
        w.acd.enqueue(w.now, CallId(1), q, 0, &[]),
        Err(AcdError::DuplicateCall(CallId(1)))
    );
    assert_eq!(
        w.acd.enqueue(w.now, CallId(3), QueueId(9), 0, &[]),
        Err(AcdError::UnknownQueue(QueueId(9)))
    );
    assert!(w.acd.login(w.now, AgentId(1), &[], &[QueueId(5)]).is_err());
    assert_eq!(w.acd.agent_state(AgentId(1)), None);
    let mut bad = QueueConfig::new("bad", ccorch_acd::skills::SkillExpr::Any);
    bad.overflow = Overflow::Queue(QueueId(0));
    assert!(matches!(w.acd.add_queue(bad), Err(AcdError::BadConfig(_))));
    assert_eq!(w.acd.queue_count(), 1);
    w.acd.check_invariants().unwrap();
}

#[test]
fn a_full_queue_sends_new_callers_to_its_overflow_target() {
    let mut w = World::new();
    let general = w.queue("general", "general", |c| c.max_length = Some(1));
    let tech = w.queue("tech", "tech", |c| {
        c.max_length = Some(1);
        c.overflow = Overflow::Queue(general);
    });
    let vm = w.queue("vm", "x", |c| {
        c.max_length = Some(0);
        c.overflow = Overflow::External(9);
    });
    w.call(1, tech, 0);
    w.actions();
    w.call(2, tech, 0); // tech is full: joins general
    assert_eq!(
        w.actions(),
        vec![Action::Moved {
            call: CallId(2),
            from: tech,
            to: general
        }]
    );
    assert_eq!(w.acd.position(CallId(2)), Some(1));
    // Both full now, and general has no target of its own: refused, nothing changed.
    assert_eq!(
        w.acd.enqueue(w.now, CallId(3), tech, 0, &[]),
        Err(AcdError::QueueFull {
            queue: general,
            length: 1
        })
    );
    w.call(4, vm, 0);
    assert_eq!(
        w.actions(),
        vec![Action::CallLeft {
            call: CallId(4),
            queue: vm,
            outcome: Outcome::Overflowed(9),
            waited: 0
        }]
    );
    assert_eq!(w.acd.waiting_calls(), 2);
}

#[test]
fn a_call_transferred_back_into_a_queue_keeps_its_wait_and_place() {
    let mut w = World::new();
    let q = w.queue("general", "general", |_| {});
    w.wait(100 * S);
    let early = w.call(1, q, 0);
    w.wait(20 * S);
    let late = w.call(2, q, 0);
    w.wait(5 * S);
    // an operator sends back a caller who first queued 60 s ago (same priority)
    w.acd
        .enqueue_waited(w.now, CallId(3), q, 0, &[], 60 * S)
        .unwrap();
    w.acd.check_invariants().unwrap();
    let moved = CallId(3);
    assert_eq!(w.acd.position(moved), Some(1));
    assert_eq!(w.acd.position(early), Some(2));
    assert_eq!(w.acd.position(late), Some(3));
    let a = w.agent(1, &[("general", 1)], &[q]);
    assert_eq!(w.offers(), vec![(moved, a)]);
    w.wait(2 * S);
    w.acd.answer(w.now, moved).unwrap();
    assert!(w.actions().contains(&Action::CallLeft {
        call: moved,
        queue: q,
        outcome: Outcome::Answered { agent: a },
        waited: 62 * S
    }));
    // a higher priority still goes first, however long the other waited
    let vip = w.call(4, q, 10);
    assert_eq!(w.acd.position(vip), Some(1));
}

#[test]
fn an_operator_extends_the_wrap_up_once_and_may_end_it_early() {
    let mut w = World::new();
    let tech = w.queue("tech", "tech", |c| c.wrap_up = 30 * S);
    let a1 = w.agent(7001, &[("tech", 5)], &[tech]);
    // extending needs a wrap-up
    assert!(w.acd.extend_wrap_up(w.now, a1, 30 * S).is_err());
    let call = w.call(1, tech, 0);
    w.acd.answer(w.now, call).unwrap();
    w.wait(60 * S);
    w.acd.end_call(w.now, call).unwrap();
    w.actions();
    w.wait(20 * S);
    let until = w.acd.extend_wrap_up(w.now, a1, 30 * S).unwrap();
    assert_eq!(
        until,
        w.now + 10 * S + 30 * S,
        "30 s more after the 10 s left"
    );
    assert_eq!(
        w.actions(),
        vec![Action::AgentChanged {
            agent: a1,
            state: AgentState::WrapUp { until }
        }]
    );
    assert!(
        w.acd.extend_wrap_up(w.now, a1, 30 * S).is_err(),
        "once per wrap-up"
    );
    w.wait(39 * S);
    assert!(matches!(
        w.acd.agent_state(a1),
        Some(AgentState::WrapUp { .. })
    ));
    w.wait(S);
    assert_eq!(w.acd.agent_state(a1), Some(AgentState::Ready));
    // the next call's wrap-up may be extended again, and ended early with Ready
    let call = w.call(2, tech, 0);
    w.acd.answer(w.now, call).unwrap();
    w.wait(10 * S);
    w.acd.end_call(w.now, call).unwrap();
    w.acd.extend_wrap_up(w.now, a1, 30 * S).unwrap();
    w.wait(5 * S);
    w.acd.set_ready(w.now, a1).unwrap();
    assert_eq!(w.acd.agent_state(a1), Some(AgentState::Ready));
    w.wait(120 * S); // the extended end's timer is gone: nothing happens
    assert_eq!(w.acd.agent_state(a1), Some(AgentState::Ready));
    let st = w.acd.agent_stats(w.now, a1).unwrap();
    assert_eq!(st.time_in[StateKind::WrapUp as usize], 60 * S + 5 * S);
}

#[test]
fn ending_the_wrap_up_early_applies_a_not_ready_asked_during_the_call() {
    let mut w = World::new();
    let tech = w.queue("tech", "tech", |c| c.wrap_up = 30 * S);
    let a1 = w.agent(7001, &[("tech", 5)], &[tech]);
    assert!(w.acd.end_wrap_up(w.now, a1).is_err(), "not in wrap-up");
    let call = w.call(1, tech, 0);
    w.acd.answer(w.now, call).unwrap();
    w.acd.set_not_ready(w.now, a1, Reason::SUPERVISOR).unwrap();
    w.wait(10 * S);
    w.acd.end_call(w.now, call).unwrap();
    w.wait(5 * S);
    w.acd.end_wrap_up(w.now, a1).unwrap();
    assert_eq!(
        w.acd.agent_state(a1),
        Some(AgentState::NotReady(Reason::SUPERVISOR))
    );
    w.wait(60 * S); // the wrap-up's timer is gone
    assert_eq!(
        w.acd.agent_state(a1),
        Some(AgentState::NotReady(Reason::SUPERVISOR))
    );
    // Ready said in wrap-up wins over the pending Not ready, and clears it
    w.acd.set_ready(w.now, a1).unwrap();
    let call = w.call(2, tech, 0);
    w.acd.answer(w.now, call).unwrap();
    w.acd.set_not_ready(w.now, a1, Reason(10)).unwrap();
    w.acd.end_call(w.now, call).unwrap();
    w.acd.set_ready(w.now, a1).unwrap();
    let call = w.call(3, tech, 0);
    w.acd.answer(w.now, call).unwrap();
    w.acd.end_call(w.now, call).unwrap();
    w.wait(30 * S);
    assert_eq!(w.acd.agent_state(a1), Some(AgentState::Ready));
}
