//! N-party mixing of one 20 ms frame: every listener hears the sum of the others (never
//! itself), summed in 32 bits and saturated once. Whispers reach one listener only.

pub const FRAME: usize = 160;

/// Who hears a participant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Speak {
    /// Everyone else in the room (full and barge participants).
    All,
    /// Nobody (listen-only monitoring, muted, on hold).
    Nobody,
    /// Only the participant at this index (a supervisor whispering to the agent).
    Only(usize),
}

#[inline]
fn saturate(x: i32) -> i16 {
    x.clamp(i32::from(i16::MIN), i32::from(i16::MAX)) as i16
}

/// Mix one frame for every participant: `out[i]` is what participant `i` hears.
/// `scratch` avoids an allocation per frame.
pub fn mix_frame(
    inputs: &[[i16; FRAME]],
    speak: &[Speak],
    out: &mut [[i16; FRAME]],
    scratch: &mut [i32; FRAME],
) {
    let n = inputs.len().min(speak.len()).min(out.len());
    // The common case, a plain two-way call: a copy each way.
    if n == 2 && speak[0] == Speak::All && speak[1] == Speak::All {
        out[0] = inputs[1];
        out[1] = inputs[0];
        return;
    }
    scratch.fill(0);
    for p in 0..n {
        if speak[p] == Speak::All {
            for (acc, &s) in scratch.iter_mut().zip(&inputs[p]) {
                *acc += i32::from(s);
            }
        }
    }
    let whispers = speak[..n].iter().any(|s| matches!(s, Speak::Only(_)));
    for l in 0..n {
        let own = speak[l] == Speak::All;
        if !whispers || !speak[..n].contains(&Speak::Only(l)) {
            // One fused pass: everyone heard by all, minus oneself, saturated once.
            let o = &mut out[l];
            if own {
                for ((o, &acc), &s) in o.iter_mut().zip(scratch.iter()).zip(&inputs[l]) {
                    *o = saturate(acc - i32::from(s));
                }
            } else {
                for (o, &acc) in o.iter_mut().zip(scratch.iter()) {
                    *o = saturate(acc);
                }
            }
            continue;
        }
        // This listener also hears whisperers: accumulate them before the single saturation.
        let mut acc = *scratch;
        if own {
            for (a, &s) in acc.iter_mut().zip(&inputs[l]) {
                *a -= i32::from(s);
            }
        }
        for w in 0..n {
            if w != l && speak[w] == Speak::Only(l) {
                for (a, &s) in acc.iter_mut().zip(&inputs[w]) {
                    *a += i32::from(s);
                }
            }
        }
        for (o, a) in out[l].iter_mut().zip(acc) {
            *o = saturate(a);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(values: &[i16]) -> Vec<[i16; FRAME]> {
        values.iter().map(|&v| [v; FRAME]).collect()
    }

    fn run(values: &[i16], speak: &[Speak]) -> Vec<i16> {
        let inputs = frames(values);
        let mut out = vec![[0; FRAME]; values.len()];
        mix_frame(&inputs, speak, &mut out, &mut [0; FRAME]);
        out.iter().map(|f| f[0]).collect()
    }

    #[test]
    fn each_hears_the_others_and_not_itself() {
        assert_eq!(run(&[1, 10, 100], &[Speak::All; 3]), vec![110, 101, 11]);
        assert_eq!(run(&[1, 10], &[Speak::All; 2]), vec![10, 1]);
    }

    #[test]
    fn saturation_happens_once_after_the_sum() {
        // 30000 + 30000 - 30000: saturating per addition would give 2767.
        let got = run(
            &[30_000, 30_000, -30_000, 0],
            &[Speak::All, Speak::All, Speak::All, Speak::Nobody],
        );
        assert_eq!(got[3], 30_000);
        assert_eq!(got[2], i16::MAX);
    }

    #[test]
    fn whisper_reaches_only_its_target_and_listen_is_silent() {
        // caller 0, agent 1, supervisor 2 whispering to the agent.
        let got = run(&[100, 200, 7], &[Speak::All, Speak::All, Speak::Only(1)]);
        assert_eq!(got, vec![200, 107, 300]);
        // Supervisor listening: heard by nobody, hears both.
        assert_eq!(
            run(&[100, 200, 7], &[Speak::All, Speak::All, Speak::Nobody]),
            vec![200, 100, 300]
        );
        // Barge: heard by all.
        assert_eq!(run(&[100, 200, 7], &[Speak::All; 3]), vec![207, 107, 300]);
        // Two-party call with a whisperer but the target listening only.
        assert_eq!(
            run(&[100, 200, 7], &[Speak::All, Speak::Nobody, Speak::Only(1)]),
            vec![0, 107, 100]
        );
    }
}
