//! Prompt playback for one leg: queued prompts, looping music on hold, barge-in on DTMF,
//! and a finished event for each prompt (sans-IO: frames out, events out).

use std::collections::VecDeque;
use std::sync::Arc;

pub const FRAME: usize = 160;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    Done,
    Stopped,
    BargeIn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finished {
    pub id: u64,
    pub reason: EndReason,
}

#[derive(Debug, Clone)]
pub struct Prompt {
    pub id: u64,
    pub samples: Arc<[i16]>,
    pub looping: bool,
    /// A DTMF digit stops this prompt (and queued prompts that allow it).
    pub barge_in: bool,
}

#[derive(Debug, Default)]
pub struct Player {
    queue: VecDeque<Prompt>,
    pos: usize,
}

impl Player {
    pub fn enqueue(&mut self, p: Prompt) {
        self.queue.push_back(p);
    }

    pub fn is_playing(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Fill one frame; returns whether audio was produced. Finished prompts go to `done`.
    pub fn next_frame(&mut self, out: &mut [i16; FRAME], done: &mut Vec<Finished>) -> bool {
        if self.queue.is_empty() {
            return false;
        }
        let mut filled = 0;
        while filled < FRAME {
            let Some(p) = self.queue.front() else { break };
            if p.samples.is_empty() {
                let id = p.id;
                self.queue.pop_front();
                done.push(Finished {
                    id,
                    reason: EndReason::Done,
                });
                continue;
            }
            let take = (p.samples.len() - self.pos).min(FRAME - filled);
            out[filled..filled + take].copy_from_slice(&p.samples[self.pos..self.pos + take]);
            filled += take;
            self.pos += take;
            if self.pos == p.samples.len() {
                self.pos = 0;
                if !p.looping {
                    let id = p.id;
                    self.queue.pop_front();
                    done.push(Finished {
                        id,
                        reason: EndReason::Done,
                    });
                }
            }
        }
        out[filled..].fill(0);
        true
    }

    /// A digit arrived: stop the current prompt and queued ones if they allow barge-in.
    pub fn on_dtmf(&mut self, done: &mut Vec<Finished>) {
        if self.queue.front().is_some_and(|p| p.barge_in) {
            self.pos = 0;
            while self.queue.front().is_some_and(|p| p.barge_in) {
                if let Some(p) = self.queue.pop_front() {
                    done.push(Finished {
                        id: p.id,
                        reason: EndReason::BargeIn,
                    });
                }
            }
        }
    }

    pub fn stop(&mut self, done: &mut Vec<Finished>) {
        self.pos = 0;
        done.extend(self.queue.drain(..).map(|p| Finished {
            id: p.id,
            reason: EndReason::Stopped,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prompt(id: u64, len: usize, value: i16, looping: bool, barge_in: bool) -> Prompt {
        Prompt {
            id,
            samples: vec![value; len].into(),
            looping,
            barge_in,
        }
    }

    #[test]
    fn queued_prompts_play_back_to_back_and_report_done() {
        let mut p = Player::default();
        p.enqueue(prompt(1, 240, 5, false, false));
        p.enqueue(prompt(2, 100, 6, false, false));
        let mut f = [0; FRAME];
        let mut done = Vec::new();
        assert!(p.next_frame(&mut f, &mut done));
        assert!(f.iter().all(|&s| s == 5));
        assert!(p.next_frame(&mut f, &mut done));
        assert_eq!((f[79], f[80], f[159]), (5, 6, 6));
        assert_eq!(
            done,
            vec![Finished {
                id: 1,
                reason: EndReason::Done
            }]
        );
        assert!(p.next_frame(&mut f, &mut done));
        assert_eq!((f[19], f[20]), (6, 0));
        assert_eq!(
            done,
            vec![
                Finished {
                    id: 1,
                    reason: EndReason::Done
                },
                Finished {
                    id: 2,
                    reason: EndReason::Done
                }
            ]
        );
        assert!(!p.next_frame(&mut f, &mut done));
    }

    #[test]
    fn music_loops_until_stopped_and_barge_in_stops_interruptible_prompts() {
        let mut p = Player::default();
        p.enqueue(prompt(1, 200, 1, false, true));
        p.enqueue(prompt(2, 200, 2, false, true));
        p.enqueue(prompt(3, 50, 3, true, false));
        let mut f = [0; FRAME];
        let mut done = Vec::new();
        p.next_frame(&mut f, &mut done);
        p.on_dtmf(&mut done);
        assert_eq!(
            done.iter().map(|d| (d.id, d.reason)).collect::<Vec<_>>(),
            vec![(1, EndReason::BargeIn), (2, EndReason::BargeIn)]
        );
        for _ in 0..100 {
            p.next_frame(&mut f, &mut done);
            assert!(f.iter().all(|&s| s == 3));
        }
        p.on_dtmf(&mut done);
        assert!(p.is_playing());
        p.stop(&mut done);
        assert_eq!(
            done.last(),
            Some(&Finished {
                id: 3,
                reason: EndReason::Stopped
            })
        );
    }
}
