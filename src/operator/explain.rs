//! `hookgate explain`: what the filter decides for one webhook URL, before DNS and after it.

use crate::config::Settings;
use crate::error::Failure;

/// The decision for a webhook URL before DNS, and for each given resolved address after DNS.
/// Ok(lines) when every decision could be made; the bool tells whether the webhook is sent.
pub fn explain(settings: &Settings, url: &str, resolved: &[String]) -> (bool, Vec<String>) {
    let describe = |failure: &Failure| {
        format!(
            "refused: {} {} ({}) {failure}",
            failure.http_status(),
            failure.code().number(),
            failure.code().message()
        )
    };
    let destination = match settings.destinations.check(url) {
        Ok(destination) => destination,
        Err(failure) => {
            let mut lines = vec![format!("before DNS: {}", describe(&failure))];
            if !resolved.is_empty() {
                lines.push("after DNS: not reached (refused before DNS)".into());
            }
            return (false, lines);
        }
    };
    let mut lines = vec![format!(
        "before DNS: allowed, sent to {} as {}",
        destination.authority, destination.url
    )];
    let port = destination
        .authority
        .rsplit_once(':')
        .map_or("", |(_, port)| port);
    let mut sent = true;
    for address in resolved {
        let socket = if address.contains(':') && !address.starts_with('[') {
            format!("[{address}]:{port}")
        } else {
            format!("{address}:{port}")
        };
        match settings
            .destinations
            .check_resolved(&destination.host, &socket)
        {
            Ok(()) => lines.push(format!("after DNS {socket}: allowed")),
            Err(failure) => {
                sent = false;
                lines.push(format!("after DNS {socket}: {}", describe(&failure)));
            }
        }
    }
    (sent, lines)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_before_and_after_dns() {
        let settings = Settings::parse(
            br#"{"destination": {"allow": [{"cidr": "127.0.0.1/32", "port": 18080}]}}"#,
        )
        .unwrap();
        let (sent, lines) = explain(
            &settings,
            "http://receiver.test:18080/hook",
            &["127.0.0.1".into(), "10.1.2.3".into()],
        );
        assert!(!sent);
        assert_eq!(
            lines,
            [
                "before DNS: allowed, sent to receiver.test:18080 as http://receiver.test:18080/hook",
                "after DNS 127.0.0.1:18080: allowed",
                "after DNS 10.1.2.3:18080: refused: 403 11110114 (Incorrect url ip) destination blocked: \"receiver.test\" resolved: 10.1.2.3 is in 10.0.0.0/8 (private)"
            ]
        );
        let (sent, lines) = explain(&settings, "http://169.254.169.254/", &["1.1.1.1".into()]);
        assert!(!sent);
        assert_eq!(lines[0], "before DNS: refused: 403 11110114 (Incorrect url ip) destination blocked: 169.254.169.254 is in 169.254.0.0/16 (link-local)");
        assert_eq!(lines[1], "after DNS: not reached (refused before DNS)");
        let (sent, _) = explain(&settings, "https://example.com/", &["93.184.216.34".into()]);
        assert!(sent);
    }
}
