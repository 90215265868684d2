//! The answers of recent destination checks, by the URL as the event wrote it. A webhook's URL
//! repeats from event to event, and its check (URL parsing with IDNA, then the policy) gives the
//! same answer for as long as the configuration stays: nothing in it depends on time or DNS.

use super::{Destination, DestinationPolicy};
use crate::error::Failure;
use std::cell::RefCell;
use std::hash::Hasher;
use std::rc::Rc;

/// Slots of the direct-mapped table: a URL's slot is its hash modulo this. Each holds one URL
/// and its answer (a few hundred bytes), so the table stays within tens of KiB per worker.
const SLOTS: usize = 64;

/// A URL longer than this is checked every time, never kept.
const MAX_KEPT_URL: usize = 2048;

type Answer = Result<Rc<Destination>, Failure>;

/// One worker's table (proxy-wasm runs each worker's VM on one thread).
pub struct RecentChecks {
    slots: RefCell<Vec<Option<(String, Answer)>>>,
}

impl Default for RecentChecks {
    fn default() -> Self {
        RecentChecks {
            slots: RefCell::new(vec![None; SLOTS]),
        }
    }
}

impl RecentChecks {
    /// The policy's answer for `raw_url`: kept from an earlier check of the same text, or
    /// checked now and kept (replacing whatever held its slot).
    pub fn check(&self, policy: &DestinationPolicy, raw_url: &str) -> Answer {
        let slot = slot_of(raw_url);
        if let Some(Some((url, answer))) = self.slots.borrow().get(slot) {
            if url == raw_url {
                return answer.clone();
            }
        }
        let answer = policy.check(raw_url).map(Rc::new);
        if raw_url.len() <= MAX_KEPT_URL {
            if let Some(entry) = self.slots.borrow_mut().get_mut(slot) {
                *entry = Some((raw_url.to_string(), answer.clone()));
            }
        }
        answer
    }
}

fn slot_of(raw_url: &str) -> usize {
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(raw_url.as_bytes());
    (hasher.finish() % SLOTS as u64) as usize
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::destination::DestinationConfig;

    fn policy() -> DestinationPolicy {
        DestinationPolicy::new(&DestinationConfig::default()).unwrap()
    }

    #[test]
    fn answers_as_the_policy_does_for_every_url_again_and_again() {
        let (policy, recent) = (policy(), RecentChecks::default());
        let urls: Vec<String> = (0..300)
            .map(|i| match i % 3 {
                0 => format!("https://crm{i}.example.com/hook?x={i}"),
                1 => format!("http://10.0.0.{}/", i % 256),
                _ => format!("ftp://bad{i}.example.com/"),
            })
            .collect();
        for _round in 0..3 {
            for url in &urls {
                let expected = policy.check(url).map(Rc::new);
                assert_eq!(recent.check(&policy, url), expected, "{url}");
            }
        }
    }

    #[test]
    fn a_kept_answer_is_reused_and_only_for_the_same_text() {
        let (policy, recent) = (policy(), RecentChecks::default());
        let first = recent.check(&policy, "https://crm.example.com/a").unwrap();
        let again = recent.check(&policy, "https://crm.example.com/a").unwrap();
        assert!(Rc::ptr_eq(&first, &again), "checked again");
        let other = recent.check(&policy, "https://crm.example.com/b").unwrap();
        assert_eq!(other.path_and_query, "/b");
        let long = format!("https://crm.example.com/{}", "x".repeat(MAX_KEPT_URL));
        let long_first = recent.check(&policy, &long).unwrap();
        let long_again = recent.check(&policy, &long).unwrap();
        assert!(!Rc::ptr_eq(&long_first, &long_again), "a long URL was kept");
        assert_eq!(long_first, long_again);
    }
}
