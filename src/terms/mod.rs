//! The domain's data in the operator's language: a dialect's label, notice settings, choices
//! and error meanings ([`dialect`]), campaign states and device statuses ([`states`]). Apart
//! from `i18n`, which stays a leaf (any module may say a sentence through `tr!` without
//! depending on the protocols or the rollout machine).

pub mod dialect;
pub mod ids;
pub mod notes;
pub mod states;
