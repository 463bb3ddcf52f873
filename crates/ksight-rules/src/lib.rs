//! ksight's detections: rules over events, alerts, rule tests.
//!
//! - [`rules`]: YAML rule files (lists, macros, rules, appends, exceptions,
//!   dedup, thresholds, fixtures) loaded into a [`RuleSet`], every error with
//!   `file:line:col`;
//! - [`lang`]: the condition language, parsed; [`compile`]: type-checked
//!   against the field registry and compiled to closures;
//! - [`engine`]: evaluation, thresholds and deduplication, counters;
//! - [`live`]: the engine as a stage of ksight's pipeline, making `alert`
//!   events; [`replay`]: the same on a recorded JSON stream;
//! - [`testing`]: `ksight rules test` (fixtures, baselines).

pub mod compile;
pub mod enforce;
pub mod engine;
pub mod lang;
pub mod live;
pub mod replay;
pub mod rules;
pub mod source;
pub mod template;
pub mod testing;
mod yaml;

pub use engine::{Engine, Fired, RuleStats};
pub use rules::{load, load_dir, read_dir, RuleError, RuleSet};
pub use source::JsonEvent;

include!(concat!(env!("OUT_DIR"), "/pack.rs"));

/// The shipped rule pack's files as (name, text), for [`load`] with others.
pub fn shipped_sources() -> Vec<(String, String)> {
    DEFAULT_PACK
        .iter()
        .map(|(n, t)| (n.to_string(), t.to_string()))
        .collect()
}

/// The shipped rule pack, compiled.
pub fn default_pack() -> Result<RuleSet, Vec<RuleError>> {
    load(&shipped_sources())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_default_pack_loads_and_passes_its_tests() {
        let set = super::default_pack().unwrap_or_else(|e| {
            panic!(
                "{}",
                e.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("\n")
            )
        });
        assert!(set.rules.len() >= 25, "{} rules", set.rules.len());
        for r in &set.rules {
            assert!(
                r.tags.iter().any(|t| t.starts_with('T') && t[1..].starts_with(|c: char| c.is_ascii_digit())),
                "{} has no MITRE ATT&CK tag",
                r.id
            );
            let pos = r.tests.iter().filter(|t| t.expect_match).count();
            let neg = r.tests.iter().filter(|t| !t.expect_match).count();
            assert!(
                pos > 0 && neg > 0,
                "{} needs a positive and a negative fixture",
                r.id
            );
        }
        let report = super::testing::run(set);
        assert!(report.failed.is_empty(), "{:#?}", report.failed);
        assert!(report.untested.is_empty());
    }
}
