//! `Settings::parse`: the plugin configuration, then the policies it builds at work.
#![no_main]

use hookgate::config::Settings;
use hookgate::limit::WebhookId;
use hookgate_fuzz::{assert_destination, assert_url_failure, FixedClock, MemStore, T};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let settings = match Settings::parse(data) {
        Ok(settings) => settings,
        Err(message) => {
            assert!(!message.is_empty());
            assert!(
                data.iter().any(|b| !b.is_ascii_whitespace()),
                "blank refused"
            );
            assert_eq!(
                Settings::parse(data).err(),
                Some(message),
                "not deterministic"
            );
            return;
        }
    };
    let again = Settings::parse(data).expect("accepted once, refused the second time");
    assert_eq!(again.config, settings.config);

    let config = &settings.config;
    assert!((1..=64 * 1024 * 1024).contains(&config.max_event_bytes));
    assert!((1..=64 * 1024 * 1024).contains(&config.max_response_bytes));
    assert!((1..=1024).contains(&config.max_name_length));
    for (name, value) in &config.static_headers {
        assert!(!name.is_empty());
        assert!(name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'));
        assert!(!name.starts_with("x-hookgate-") && !name.starts_with("x-envoy-"));
        assert!(!["host", "content-length", "content-type"].contains(&name.as_str()));
        assert!(value
            .bytes()
            .all(|b| b == b'\t' || (0x20..0x7f).contains(&b)));
    }
    assert!((1..=1_000_000).contains(&config.limit.max_tracked));

    // The policies it built work on a request.
    for raw in [
        "https://example.com/hook",
        "http://127.0.0.1:18080/",
        "http://[::1]/",
    ] {
        match settings.destinations.check(raw) {
            Ok(d) => assert_destination(&settings.destinations, raw, &d),
            Err(failure) => assert_url_failure(raw, &failure),
        }
    }
    // Preparing a large table writes one key per 8 webhooks: only small ones here.
    if config.limit.max_tracked <= 256 {
        let store = MemStore::default();
        settings
            .limiter
            .prepare(&store)
            .expect("prepare on an empty store");
        let clock = FixedClock(T);
        let id = WebhookId {
            name: "orders",
            url: "https://example.com/hook",
            normalised: false,
        };
        let ticket = settings
            .limiter
            .acquire(&store, &clock, &id)
            .expect("first send");
        let _ = settings
            .limiter
            .observe_answer(&store, &ticket, br#"{"key":"s3cret"}"#)
            .expect("observe");
        let _ = settings.limiter.state(&store, &clock, &id).expect("state");
    }
});
