//! Who may call is the plugin's `callers`, in every filter chain; the engine chain's
//! `filter_chain_match.source_prefix_ranges` only decides which bounds a caller's connections get.

use super::Chain;

/// The networks of the plugin's `callers` outside the engine chain's ranges: served by the
/// listener's default chain when it runs hookgate with the same policy (a warning: its tighter
/// bounds apply), else refused there (a problem). (errors, warnings)
pub(super) fn check(
    listener: &str,
    plugin: &str,
    chain: &Chain,
    default_serves: bool,
) -> (Vec<String>, Vec<String>) {
    let callers: Vec<String> = serde_json::from_str::<serde_json::Value>(plugin)
        .ok()
        .and_then(|json| json.get("callers").cloned())
        .and_then(|c| serde_json::from_value(c).ok())
        .unwrap_or_else(crate::caller::default_callers);
    let as_network = |cidr: &str| match cidr.split_once('/') {
        Some((address, len)) => (address.to_string(), len.parse().unwrap_or(0)),
        None => (cidr.to_string(), if cidr.contains(':') { 128 } else { 32 }),
    };
    // A network of `callers` is covered by a chain range that holds its first address and is
    // no narrower.
    let covered = |(address, len): &(String, u64)| {
        let Ok(ip) = address.parse::<std::net::IpAddr>() else {
            return false;
        };
        chain.networks.iter().any(|(range, range_len)| {
            range_len <= len
                && crate::cidr::parse_cidr(&format!("{range}/{range_len}"))
                    .is_some_and(|net| net.contains(ip))
        })
    };
    let (mut errors, mut warnings) = (Vec::new(), Vec::new());
    for (address, len) in callers
        .iter()
        .map(|c| as_network(c))
        .filter(|c| !covered(c))
    {
        if default_serves {
            warnings.push(format!(
                "listener {listener}: callers has {address}/{len}, which the engine chain's \
                 filter_chain_match.source_prefix_ranges does not cover: its callers are served \
                 by the default chain, under its tighter bounds (add the range to the engine \
                 chain for its bounds)"
            ));
        } else {
            errors.push(format!(
                "listener {listener}: callers has {address}/{len} but the listener's \
                 filter_chain_match.source_prefix_ranges does not, and the default chain does not \
                 run hookgate with the same plugin configuration: its callers are refused"
            ));
        }
    }
    (errors, warnings)
}
