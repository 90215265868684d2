#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
//! The repository stands alone: no tracked file points outside it, at a tracker's numbers or at
//! the notes of the people who wrote it, and every relative link of the documentation leads to
//! a file and heading that exist.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::repo;

/// Tracked files, except third-party text kept verbatim (the published CRDs). This file is read
/// too: it builds what it looks for from pieces, so it never spells a phrase it refuses.
fn tracked_text_files() -> Vec<(PathBuf, String)> {
    let out = Command::new("git")
        .args(["ls-files", "-z"])
        .current_dir(repo())
        .output()
        .unwrap();
    assert!(out.status.success(), "git ls-files failed");
    String::from_utf8(out.stdout)
        .unwrap()
        .split('\0')
        .filter(|p| !p.is_empty())
        .filter(|p| !p.starts_with("tests/fixtures/schemas/"))
        .filter_map(|p| {
            let path = repo().join(p);
            let text = std::fs::read_to_string(&path).ok()?;
            Some((PathBuf::from(p), text))
        })
        .collect()
}

/// Phrases that point outside the repository or at the authors' own work (lower case).
const OUTSIDE: &[&str] = &[
    concat!("../s", "hared"),
    concat!("/wo", "rk/"),
    concat!("envoy", "-facts"),
    concat!("this s", "ession"),
    concat!("the se", "ssion's"),
    concat!("second", " round"),
    concat!("third", " round"),
    concat!("this ", "round"),
    concat!("the r", "ound's"),
    concat!("roun", "d two"),
    concat!("round", " three"),
    concat!("sto", "p 1"),
    concat!("sto", "p 2"),
    concat!("sto", "p 3"),
];

/// A tracker's numbers: the word issue (or issues) followed by a number, or `#` and a digit
/// starting a word.
fn tracker_numbers(text: &str) -> Vec<String> {
    let lower = text.to_lowercase();
    let bytes = lower.as_bytes();
    let mut found = Vec::new();
    for word in ["issue ", "issues ", "issue #"] {
        for (at, _) in lower.match_indices(word) {
            if bytes.get(at + word.len()).is_some_and(u8::is_ascii_digit) {
                found.push(lower[at..(at + word.len() + 3).min(lower.len())].to_string());
            }
        }
    }
    for (at, _) in lower.match_indices('#') {
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let starts_word = before.is_none_or(|b| b == b' ' || b == b'(' || b == b'\n');
        if starts_word && bytes.get(at + 1).is_some_and(u8::is_ascii_digit) {
            found.push(lower[at..(at + 4).min(lower.len())].to_string());
        }
    }
    found
}

#[test]
fn no_tracked_file_refers_outside_the_repository_or_to_tracker_numbers() {
    let mut offences = Vec::new();
    for (path, text) in tracked_text_files() {
        let lower = text.to_lowercase();
        for (n, line) in lower.lines().enumerate() {
            for phrase in OUTSIDE {
                if line.contains(phrase) {
                    offences.push(format!("{}:{}: {phrase:?}", path.display(), n + 1));
                }
            }
            for number in tracker_numbers(line) {
                offences.push(format!("{}:{}: {number:?}", path.display(), n + 1));
            }
        }
    }
    assert!(offences.is_empty(), "{}", offences.join("\n"));
}

#[test]
fn the_check_finds_what_it_looks_for() {
    let issue = concat!("iss", "ue");
    assert_eq!(
        tracker_numbers(&format!("see {issue} 9.")),
        [format!("{issue} 9.")]
    );
    assert_eq!(tracker_numbers(&format!("fixed ({}12)", '#')), ["#12)"]);
    assert!(tracker_numbers("# heading, ${#1}, color #fff, issue tracker").is_empty());
}

/// Every `[text](target)` link of a Markdown file that stays in the repository: (path, anchor).
fn relative_links(text: &str) -> Vec<(String, String)> {
    let mut links = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let Some(end) = rest.find(')') else { break };
        let target = rest[..end].trim();
        let (path, anchor) = target.split_once('#').unwrap_or((target, ""));
        let external = target.contains("://") || target.starts_with("mailto:");
        if !target.is_empty() && !external {
            links.push((path.to_string(), anchor.to_string()));
        }
        rest = &rest[end..];
    }
    links
}

/// The anchors GitHub gives a Markdown file's headings: lower case, punctuation dropped, spaces
/// as hyphens.
fn anchors(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with('#'))
        .map(|l| {
            l.trim_start_matches('#')
                .trim()
                .to_lowercase()
                .chars()
                .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
                .map(|c| if c == ' ' { '-' } else { c })
                .collect()
        })
        .collect()
}

#[test]
fn every_relative_link_of_the_documentation_leads_to_a_file_and_heading() {
    let mut broken = Vec::new();
    let mut checked = 0;
    for (path, text) in tracked_text_files() {
        if path.extension().is_none_or(|e| e != "md") {
            continue;
        }
        let dir = repo().join(&path).parent().map(Path::to_path_buf).unwrap();
        for (link, anchor) in relative_links(&text) {
            checked += 1;
            let target = if link.is_empty() {
                repo().join(&path)
            } else {
                dir.join(&link)
            };
            if !target.exists() {
                broken.push(format!("{}: {link}", path.display()));
            } else if !anchor.is_empty() {
                let heading_text = std::fs::read_to_string(&target).unwrap_or_default();
                if !anchors(&heading_text).contains(&anchor) {
                    broken.push(format!("{}: {link}#{anchor}", path.display()));
                }
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
    assert!(
        checked > 10,
        "only {checked} links found: is the parser right?"
    );
}
