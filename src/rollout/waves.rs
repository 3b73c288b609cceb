//! Waves: how the devices to upgrade are cut into a canary wave and following waves, and when a
//! wave counts as done enough to open the next one. Pure arithmetic over counts; which device is
//! in which wave is decided once, when the campaign starts (most recently heard first, see
//! [`super::Campaign`]).

use super::policy::{CanarySize, Policy};

/// Sizes of the waves for `eligible` devices (an empty plan for none).
pub fn plan_sizes(eligible: usize, policy: &Policy) -> Vec<usize> {
    if eligible == 0 {
        return Vec::new();
    }
    let canary = match policy.canary {
        CanarySize::Count(n) => usize::try_from(n).unwrap_or(usize::MAX),
        CanarySize::Percent(p) => (eligible * usize::from(p)).div_ceil(100),
    }
    .clamp(1, eligible);
    let mut sizes = vec![canary];
    let mut rest = eligible - canary;
    let step = match usize::try_from(policy.wave_size) {
        Ok(0) | Err(_) => rest.max(1),
        Ok(n) => n,
    };
    while rest > 0 {
        let size = step.min(rest);
        sizes.push(size);
        rest -= size;
    }
    sizes
}

/// What a wave's members look like, for the gate.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaveTally {
    pub members: usize,
    /// Skipped or canceled: not part of the wave's size for the threshold.
    pub excluded: usize,
    pub succeeded: usize,
    /// In a terminal status (succeeded, failed, rejected, timed out, canceled, skipped).
    pub finished: usize,
}

impl WaveTally {
    /// The devices the success threshold is measured against.
    pub fn eligible(&self) -> usize {
        self.members.saturating_sub(self.excluded)
    }

    /// The next wave may open: `succeeded / eligible >= threshold`. A wave with nothing left to
    /// upgrade (everything skipped or canceled) passes.
    pub fn gate_met(&self, threshold_percent: u8) -> bool {
        self.succeeded * 100 >= usize::from(threshold_percent) * self.eligible()
    }

    /// Every member reached a terminal status, yet the gate is not met: only the operator can
    /// move on.
    pub fn blocked(&self, threshold_percent: u8) -> bool {
        self.finished == self.members && !self.gate_met(threshold_percent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(canary: CanarySize, wave_size: u32) -> Policy {
        Policy {
            canary,
            wave_size,
            ..Policy::default()
        }
    }

    #[test]
    fn canary_then_fixed_waves() {
        assert_eq!(
            plan_sizes(10, &policy(CanarySize::Count(2), 3)),
            vec![2, 3, 3, 2]
        );
        assert_eq!(plan_sizes(10, &policy(CanarySize::Count(2), 0)), vec![2, 8]);
        assert_eq!(
            plan_sizes(10, &policy(CanarySize::Percent(15), 5)),
            vec![2, 5, 3]
        );
        assert_eq!(plan_sizes(3, &policy(CanarySize::Count(50), 5)), vec![3]);
        assert_eq!(plan_sizes(1, &policy(CanarySize::Percent(1), 5)), vec![1]);
        assert!(plan_sizes(0, &Policy::default()).is_empty());
    }

    #[test]
    fn gate_counts_success_against_eligible_members() {
        let t = WaveTally {
            members: 4,
            excluded: 1,
            succeeded: 3,
            finished: 4,
        };
        assert!(t.gate_met(100));
        let t = WaveTally {
            members: 4,
            excluded: 0,
            succeeded: 3,
            finished: 4,
        };
        assert!(!t.gate_met(100));
        assert!(t.gate_met(75));
        assert!(t.blocked(100));
        let t = WaveTally {
            members: 4,
            excluded: 0,
            succeeded: 3,
            finished: 3,
        };
        assert!(!t.blocked(100), "one device still running");
        let all_skipped = WaveTally {
            members: 2,
            excluded: 2,
            succeeded: 0,
            finished: 2,
        };
        assert!(all_skipped.gate_met(100));
    }
}
