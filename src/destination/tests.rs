//! The destination policy's corpus: every public bypass spelling with its verdict.

use super::*;

#[test]
fn host_as_written_for_refusal_logs() {
    assert_eq!(host_as_written("http://0x7f.1/x"), "\"0x7f.1\"");
    assert_eq!(
        host_as_written("https://user:pw@Evil.example:8080/?q#f"),
        "\"Evil.example:8080\""
    );
    assert_eq!(host_as_written("no scheme"), "\"no scheme\"");
    assert_eq!(
        host_as_written("http://\u{ff11}27.0.0.1/"),
        "\"\\u{ff11}27.0.0.1\""
    );
    assert_eq!(host_as_written(""), "\"\"");
}

/// Expected verdicts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum V {
    /// Passes.
    P,
    /// Passes the filter: a public DNS name that only becomes local through DNS or a
    /// redirect; the filter cannot resolve it, Envoy's RBAC refuses the resolved address.
    D,
    /// Refused as a blocked destination (403, 11110114).
    B,
    /// Refused as an invalid URL (400).
    I,
}
use V::{B, D, I, P};

fn policy() -> DestinationPolicy {
    DestinationPolicy::new(&DestinationConfig::default()).unwrap()
}

fn verdict(policy: &DestinationPolicy, raw: &str) -> V {
    match policy.check(raw) {
        Ok(destination) => {
            // The limit tracks `Destination::url` as it is (`WebhookId::normalised`): it must be
            // the URL's normalised form, and stay so when normalised again.
            let tracked = crate::limit::normalise_url(raw);
            assert_eq!(destination.url, tracked, "{raw:?}: tracked URL");
            assert_eq!(crate::limit::normalise_url(&tracked), tracked, "{raw:?}");
            P
        }
        Err(Failure::BlockedDestination(_)) => B,
        Err(Failure::InvalidUrl(_)) => I,
        Err(other) => panic!("{raw:?}: unexpected failure {other:?}"),
    }
}

fn assert_corpus(policy: &DestinationPolicy, corpus: &[(&str, V)]) {
    let mut wrong = Vec::new();
    for &(raw, expected) in corpus {
        let got = verdict(policy, raw);
        let expected_here = if expected == D { P } else { expected };
        if got != expected_here {
            wrong.push(format!(
                "{raw:?}: expected {expected:?}, got {:?}",
                policy.check(raw)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} wrong:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// A public corpus of SSRF spellings (PayloadsAllTheThings' SSRF pages and the URL standard's
/// test data; fuzz/seeds/ssrf/), every entry (138), with the category each comes from.
const PUBLIC_CORPUS: &[(&str, V)] = &[
    ("http://localhost:80", B),                         // default-targets
    ("http://localhost:22", B),                         // default-targets
    ("https://localhost:443", B),                       // default-targets
    ("http://127.0.0.1:80", B),                         // default-targets
    ("http://127.0.0.1:22", B),                         // default-targets
    ("https://127.0.0.1:443", B),                       // default-targets
    ("http://0.0.0.0:80", B),                           // default-targets
    ("http://0.0.0.0:22", B),                           // default-targets
    ("https://0.0.0.0:443", B),                         // default-targets
    ("http://localhost:443", B),                        // default-targets
    ("http://127.0.0.1:443", B),                        // default-targets
    ("http://0.0.0.0:443", B),                          // default-targets
    ("https://127.0.0.1/", B),                          // default-targets
    ("https://localhost/", B),                          // default-targets
    ("http://[::]:80/", B),                             // ipv6-notation
    ("http://[0000::1]:80/", B),                        // ipv6-notation
    ("http://[0:0:0:0:0:ffff:127.0.0.1]", B),           // ipv6-notation
    ("http://[::ffff:127.0.0.1]", B),                   // ipv6-notation
    ("http://[::]:25/", B),                             // ipv6-notation
    ("http://[::]:22/", B),                             // ipv6-notation
    ("http://[::]:3128/", B),                           // ipv6-notation
    ("http://[0000::1]:25/", B),                        // ipv6-notation
    ("http://[0000::1]:22/", B),                        // ipv6-notation
    ("http://[0000::1]:3128/", B),                      // ipv6-notation
    ("http://0000::1:80/", I),                          // ipv6-notation
    ("http://0000::1:25/", I),                          // ipv6-notation
    ("http://0000::1:22/", I),                          // ipv6-notation
    ("http://0000::1:3128/", I),                        // ipv6-notation
    ("http://127.127.127.127", B),                      // loopback-cidr
    ("http://127.0.1.3", B),                            // loopback-cidr
    ("http://127.0.0.0", B),                            // loopback-cidr
    ("http://0/", B),                                   // short-form
    ("http://127.1", B),                                // short-form
    ("http://127.0.1", B),                              // short-form
    ("http://2130706433/", B),                          // decimal
    ("http://3232235521/", B),                          // decimal
    ("http://3232235777/", B),                          // decimal
    ("http://2852039166/", B),                          // decimal
    ("http://2852039166", B),                           // decimal
    ("http://7147006462", I),                           // decimal
    ("http://425.510.425.510", I),                      // decimal
    ("http://2852039166/latest/meta-data/", B),         // decimal
    ("http://0177.0.0.1/", B),                          // octal
    ("http://o177.0.0.1/", I),                          // octal
    ("http://0o177.0.0.1/", I),                         // octal
    ("http://q177.0.0.1/", I),                          // octal
    ("http://0251.0376.0251.0376", B),                  // octal
    ("http://0251.00376.000251.0000376", B),            // octal
    ("http://0251.254.169.254", B),                     // octal
    ("http://0x7f000001", B),                           // hex
    ("http://0xc0a80101", B),                           // hex
    ("http://0xa9fea9fe", B),                           // hex
    ("http://0xA9FEA9FE", B),                           // hex
    ("http://0xA9.0xFE.0xA9.0xFE", B),                  // hex
    ("http://0x41414141A9FEA9FE", I),                   // hex
    ("http://[::ffff:a9fe:a9fe]", B),                   // ipv6-metadata
    ("http://[0:0:0:0:0:ffff:a9fe:a9fe]", B),           // ipv6-metadata
    ("http://[0:0:0:0:0:ffff:169.254.169.254]", B),     // ipv6-metadata
    ("http://[fd00:ec2::254]", B),                      // ipv6-metadata
    ("http://[fd00:ec2::254]/latest/meta-data/", B),    // ipv6-metadata
    ("http://[::ffff:a9fe:a9fe]/latest/meta-data/", B), // ipv6-metadata
    ("http://[0:0:0:0:0:ffff:a9fe:a9fe]/latest/meta-data/", B), // ipv6-metadata
    (
        "http://[0:0:0:0:0:ffff:169.254.169.254]/latest/meta-data/",
        B,
    ), // ipv6-metadata
    ("http://127.1.1.1:80\\@127.2.2.2:80/", I),         // parser-discrepancy
    ("http://127.1.1.1:80\\@@127.2.2.2:80/", I),        // parser-discrepancy
    ("http://127.1.1.1:80:\\@@127.2.2.2:80/", I),       // parser-discrepancy
    ("http://127.1.1.1:80#\\@127.2.2.2:80/", I),        // parser-discrepancy
    ("http://127.0.0.1/%61dmin", B),                    // path-encoding
    ("http://127.0.0.1/%2561dmin", B),                  // path-encoding
    ("http://169.254.169.254", B),                      // metadata-endpoints
    ("http://169.254.169.254/latest/meta-data/", B),    // metadata-endpoints
    ("http://169.254.169.254/latest/api/token", B),     // metadata-endpoints
    ("http://169.254.169.254/latest/user-data", B),     // metadata-endpoints
    (
        "http://169.254.169.254/latest/meta-data/iam/security-credentials",
        B,
    ), // metadata-endpoints
    (
        "http://169.254.169.254/latest/dynamic/instance-identity/document",
        B,
    ), // metadata-endpoints
    ("http://169.254.169.254/computeMetadata/v1/", B),  // metadata-endpoints
    ("http://169.254.169.254/metadata/v1.json", B),     // metadata-endpoints
    (
        "http://169.254.169.254/metadata/instance?api-version=2017-04-02",
        B,
    ), // metadata-endpoints
    ("http://169.254.169.254/openstack", B),            // metadata-endpoints
    ("http://169.254.169.254/2009-04-04/meta-data/", B), // metadata-endpoints
    ("http://169.254.169.254/hetzner/v1/metadata", B),  // metadata-endpoints
    ("http://192.0.0.192/latest/", B),                  // metadata-endpoints
    ("http://100.100.100.200/latest/meta-data/", B),    // metadata-endpoints
    ("http://127.0.0.1:2379/version", B),               // metadata-endpoints
    ("http://127.0.0.1:2375/v1.24/containers/json", B), // metadata-endpoints
    (
        "http://localhost:9001/2018-06-01/runtime/invocation/next",
        B,
    ), // metadata-endpoints
    ("http://0x7f.0x0.0x0.0x1:80/", B),                 // ippy-case1
    ("http://2130706433:80/", B),                       // ippy-case3
    ("http://383.256.256.257:80/", I),                  // ippy-case4
    ("http://0177.00.00.01:80/", B),                    // ippy-case5
    ("http://00177.0000.00000.000001:80/", B),          // ippy-case6
    ("http://[::127.0.0.1]:80/", B),                    // ippy-case7
    ("http://[::ffff:127.0.0.1]:80/", B),               // ippy-case8
    ("http://0x7f.00.1:80/", B),                        // ippy-case9
    ("http://0x7f.1:80/", B),                           // ippy-case10
    ("http://00177.1:80/", B),                          // ippy-case11
    ("http://00177.0x0.1:80/", B),                      // ippy-case12
    ("http://127。0。0。1/", B),                        // ippy-case14-ideographic-dot
    ("http://127｡0｡0｡1/", B),                           // ippy-case14-ideographic-dot
    ("http://⑫⑦。⓪。⓪。①/", B),                         // ippy-case15-enclosed
    ("http://⓪ⓧ⑦ⓕ。⓪ⓧ⓪。⓪ⓧ⓪。⓪ⓧ①:80/", B),              // ippy-case15-enclosed
    ("http://②①③⓪⑦⓪⑥④③③:80/", B),                       // ippy-case15-enclosed
    ("http://⓪ⓧ⑦ⓕ。①:80/", B),                          // ippy-case15-enclosed
    ("http://www.google.com@0x7f.0x0.0x0.0x1:80/", I),  // ippy-userinfo
    ("http://0x7f.0x0.0x0.0x1:80?@www.google.com/", B), // ippy-userinfo
    ("http://0x7f.0x0.0x0.0x1:80#@www.google.com/", B), // ippy-userinfo
    ("http://0xa9.0xfe.0xa9.0xfe:80/", B),              // ippy-case1
    ("http://0xa9fea9fe:80/", B),                       // ippy-case2
    ("http://2852039166:80/", B),                       // ippy-case3
    ("http://425.510.425.510:80/", I),                  // ippy-case4
    ("http://0251.0376.0251.0376:80/", B),              // ippy-case5
    ("http://00251.000376.0000251.00000376:80/", B),    // ippy-case6
    ("http://[::169.254.169.254]:80/", B),              // ippy-case7
    ("http://[::ffff:169.254.169.254]:80/", B),         // ippy-case8
    ("http://0xa9.0376.43518:80/", B),                  // ippy-case9
    ("http://0xa9.16689662:80/", B),                    // ippy-case10
    ("http://00251.16689662:80/", B),                   // ippy-case11
    ("http://00251.0xfe.43518:80/", B),                 // ippy-case12
    ("http://169。254。169。254/", B),                  // ippy-case14-ideographic-dot
    ("http://169｡254｡169｡254/", B),                     // ippy-case14-ideographic-dot
    ("http://⑯⑨。②⑤④。⑯⑨。②⑤④/", B),                    // ippy-case15-enclosed
    ("http://⓪ⓧⓐ⑨。⓪ⓧⓕⓔ。⓪ⓧⓐ⑨。⓪ⓧⓕⓔ:80/", B),           // ippy-case15-enclosed
    ("http://②⑧⑤②⓪③⑨①⑥⑥:80/", B),                       // ippy-case15-enclosed
    ("http://⓪ⓧⓐ⑨。⑯⑥⑧⑨⑥⑥②:80/", B),                    // ippy-case15-enclosed
    ("http://www.google.com@0xa9.0xfe.0xa9.0xfe:80/", I), // ippy-userinfo
    ("http://0xa9.0xfe.0xa9.0xfe:80?@www.google.com/", B), // ippy-userinfo
    ("http://0xa9.0xfe.0xa9.0xfe:80#@www.google.com/", B), // ippy-userinfo
    ("http://192.0x00A80001", B),                       // wpt-normalisation
    ("http://%30%78%63%30%2e%30%32%35%30.01", B),       // wpt-normalisation
    ("http://%30%78%63%30%2e%30%32%35%30.01%2e", B),    // wpt-normalisation
    ("http://０Ｘｃ０．０２５０．０１", B),             // wpt-normalisation
    ("http://192.168.257", B),                          // wpt-normalisation
    ("http://192.168.257.", B),                         // wpt-normalisation
    ("http://4294967295", B),                           // wpt-normalisation
    ("http://0xffffffff", B),                           // wpt-normalisation
    ("https://0x.0x.0", B),                             // wpt-normalisation
    ("http://[::127.0.0.1]", B),                        // wpt-normalisation
    ("http://256", B),                                  // wpt-normalisation
];

/// Public names that only become local through DNS (fuzz/seeds/ssrf/), every entry (20): names only DNS
/// or a redirect makes local pass the filter (D) unless refused by name.
const DNS_CORPUS: &[(&str, V)] = &[
    ("http://localtest.me", D),
    (
        "http://customer1.app.localhost.my.company.127.0.0.1.nip.io",
        D,
    ),
    ("http://spoofed.burpcollaborator.net", D),
    ("http://mail.ebc.apple.com", D),
    ("http://bugbounty.dod.network", D),
    ("http://localh.st", D),
    ("http://company.127.0.0.1.nip.io", D),
    ("http://127.0.0.1.nip.io", D),
    ("http://ip6-localhost", B),
    ("http://ip6-loopback", B),
    ("http://instance-data", D),
    ("http://169.254.169.254.nip.io/", D),
    ("http://169.254.169.254.xip.io/", D),
    ("http://metadata.google.internal/computeMetadata/v1/", B),
    ("http://metadata/computeMetadata/v1/", D),
    ("http://make-1.2.3.4-rebind-169.254-169.254-rr.1u.ms/", D),
    ("http://ß.localdomain.pw/", D),
    ("https://307.r3dir.me/--to/?url=http://localhost", D),
    (
        "https://62epax5fhvj3zzmzigyoe5ipkbn7fysllvges3a.302.r3dir.me",
        D,
    ),
    ("http://nicob.net/redir-http-169.254.169.254:80-", D),
];

/// Derived from the rules.
const RULE_CORPUS: &[(&str, V)] = &[
    // Public destinations that must pass.
    ("http://8.8.8.8/", P),
    ("https://8.8.8.8:8443/x", P),
    ("http://100.63.255.254/", P),
    ("http://100.128.0.1/", P),
    ("http://[2001:4860:4860::8888]/", P),
    ("https://[2606:4700:4700::1111]/", P),
    ("https://crm.example.com/hooks/sendpulse", P),
    ("HTTPS://CRM.Example.COM:443/hooks/sendpulse?a=1#frag", P),
    ("http://example.com/a@b", P),
    ("http://example.com/?next=http://127.0.0.1/", P),
    ("https://bücher.example/", P),
    ("http://notlocalhost/", D),
    ("http://localhost.example.com/", D),
    ("http://localhostx/", D),
    ("http://ip6-localhost.example/", D),
    ("http://metadata.google.internal.example/", D),
    ("http://google.internal/", D),
    // Neighbours of deny ranges.
    ("http://9.255.255.255/", P),
    ("http://11.0.0.0/", P),
    ("http://126.255.255.255/", P),
    ("http://128.0.0.0/", P),
    ("http://169.253.255.255/", P),
    ("http://169.255.0.0/", P),
    ("http://172.15.255.255/", P),
    ("http://172.32.0.0/", P),
    ("http://192.167.255.255/", P),
    ("http://192.169.0.0/", P),
    ("http://198.17.255.255/", P),
    ("http://198.20.0.0/", P),
    ("http://223.255.255.255/", P),
    ("http://1.0.0.0/", P),
    ("http://192.0.1.0/", P),
    ("http://192.0.3.0/", P),
    ("http://[2001:db9::]/", P),
    ("http://[3fff:1000::1]/", P),
    ("http://[2003::1]/", P),
    // Decimal, octal, hex, short forms.
    ("http://2130706433/", B),
    ("http://017700000001/", B),
    ("http://0x7f000001/", B),
    ("http://0x7f.1/", B),
    ("http://0x7F.0.0.1/", B),
    ("http://0177.0.0.1/", B),
    ("http://0177.1/", B),
    ("http://127.1/", B),
    ("http://127.0.1/", B),
    ("http://0/", B),
    ("http://0x0/", B),
    ("http://00/", B),
    ("http://0.0/", B),
    ("http://167772161/", B),
    ("http://012.1/", B),
    ("http://0xa.0.0.1/", B),
    ("http://0xA9FEA9FE/", B),
    ("http://3232235777/", B),
    ("http://4294967295/", B),
    ("http://4294967296/", I),
    ("http://0x100000000/", I),
    ("http://256.0.0.1/", I),
    ("http://08.0.0.1/", I),
    ("http://134744072/", P),
    ("http://0x8080808/", P),
    ("http://010.010.010.010/", P),
    ("http://8.526344/", P),
    // Unicode digits, dots and letters IDNA maps.
    ("http://１２７.０.０.１/", B),
    ("http://１２７．０．０．１/", B),
    ("http://127。0。0。1/", B),
    ("http://０ｘ７ｆ.1/", B),
    ("http://𝟏𝟐𝟕.𝟎.𝟎.𝟏/", B),
    ("http://¹²⁷.0.0.1/", B),
    ("http://⑫⑦.⓪.⓪.①/", B),
    ("http://８.８.８.８/", P),
    // Unicode digits IDNA keeps: read as digits, judged by the address.
    ("http://१२७.०.०.१/", B),
    ("http://१२७.१/", B),
    ("http://०x७f.१/", B),
    ("http://๑๒๗.๐.๐.๑/", B),
    ("http://๑๖๙.๒๕๔.๑๖๙.๒๕๔/", B),
    ("http://२१३०७०६४३३/", B),
    ("http://८.८.८.८/", D),
    ("http://१२७.example/", D),
    ("http://१२७.0.0.1/", I),
    ("http://١٢٧.٠.٠.١/", I),
    ("http://۱۲۷.۰.۰.۱/", B),
    // Percent-encoding.
    ("http://%31%32%37.0.0.1/", B),
    ("http://127.0.0.1%2e/", B),
    ("http://%30x7f.1/", B),
    ("http://lo%63alhost/", B),
    ("http://%6c%6f%63%61%6c%68%6f%73%74/", B),
    ("http://%00/", I),
    ("http://a%40b/", I),
    ("http://%2e/", I),
    // Look-alike separators IDNA maps to characters a host may not hold.
    ("http://example.com＠127.0.0.1/", I),
    ("http://evil.com﹫127.0.0.1/", I),
    ("http://127.0.0.1／foo", I),
    ("http://127.0.0.1：80/", I),
    ("http://127.0.0.1%3a80/", I),
    ("http://[::ffff:127.0.0.1]：80/", I),
    ("http://ⅼocalhost/", B),
    ("http://LOCALHOST%E3%80%82/", B),
    ("http://localhost%2e%2e/", B),
    // Trailing dots.
    ("http://127.0.0.1./", B),
    ("http://127.0.0.1../", B),
    ("http://127.0.0.1.../", B),
    ("http://2130706433./", B),
    ("http://2130706433../", B),
    ("http://8.8.8.8../", D),
    ("http://a..b/", I),
    ("http://./", I),
    ("http://../", I),
    // Host names refused by name.
    ("http://localhost/", B),
    ("http://LOCALHOST/", B),
    ("http://localhost./", B),
    ("http://LocalHost../", B),
    ("http://foo.localhost/", B),
    ("http://a.b.LOCALHOST./", B),
    ("http://ｌｏｃａｌｈｏｓｔ/", B),
    ("http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/", B),
    ("http://localhost:18080/", B),
    ("http://IP6-LOCALHOST./", B),
    ("http://ip6-loopback/", B),
    ("http://metadata.google.internal./", B),
    ("http://METADATA.GOOGLE.INTERNAL/computeMetadata/v1/", B),
    // IPv6 spellings.
    ("http://[::1]/", B),
    ("http://[0:0:0:0:0:0:0:1]/", B),
    ("http://[::]/", B),
    ("http://[::0]/", B),
    ("http://[0::]/", B),
    ("http://[::ffff:127.0.0.1]/", B),
    ("http://[::ffff:7f00:1]/", B),
    ("http://[::FFFF:7F00:1]/", B),
    ("http://[::ffff:10.1.2.3]/", B),
    ("http://[::ffff:0.0.0.0]/", B),
    ("http://[::ffff:255.255.255.255]/", B),
    ("http://[::ffff:8.8.8.8]/", P),
    ("http://[::127.0.0.1]/", B),
    ("http://[::a9fe:a9fe]/", B),
    ("http://[::8.8.8.8]/", P),
    ("http://[::ffff:0:127.0.0.1]/", B),
    ("http://[::ffff:0:8.8.8.8]/", P),
    ("http://[64:ff9b::127.0.0.1]/", B),
    ("http://[64:ff9b::a9fe:a9fe]/", B),
    ("http://[64:ff9b::10.0.0.1]/", B),
    ("http://[64:ff9b::8.8.8.8]/", P),
    ("http://[64:ff9b:1::808:808]/", B),
    ("http://[64:ff9b:1:7f00:0:100::]/", B),
    ("http://[64:ff9b:1:ffff:ffff:ffff:ffff:ffff]/", B),
    ("http://[64:ff9b:2::]/", B),
    ("http://[2002:7f00:1::]/", B),
    ("http://[2002:a9fe:a9fe::1]/", B),
    ("http://[2002:c0a8:101:1::1]/", B),
    ("http://[2002:808:808::1]/", P),
    ("http://[2001::1]/", B),
    ("http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/", B),
    ("http://[2001:0:ffff:ffff:ffff:ffff:ffff:ffff]/", B),
    ("http://[fd00:ec2::254]/", B),
    ("http://[fc00::]/", B),
    ("http://[fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff]/", B),
    ("http://[fe80::1]/", B),
    ("http://[febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff]/", B),
    ("http://[ff02::1]/", B),
    ("http://[2001:db8::1]/", B),
    ("http://[3fff::1]/", B),
    ("http://[100::]/", B),
    ("http://[5f00::1]/", B),
    // IPv6 zone ids: 403 when the address is refused, 400 otherwise.
    ("http://[fe80::1%25eth0]/", B),
    ("http://[fe80::1%eth0]/", B),
    ("http://[fe80::1%251]:8080/x", B),
    ("http://[::1%25lo]/", B),
    ("http://[::ffff:127.0.0.1%25eth0]/", B),
    ("http://[2001:4860:4860::8888%25eth0]/", I),
    ("http://[::ffff:8.8.8.8%25eth0]/", I),
    ("http://[nonsense%25eth0]/", I),
    ("http://[fe80::1%25eth0/", I),
    // Userinfo, even empty.
    ("http://user@example.com/", I),
    ("http://user:pass@example.com/", I),
    ("http://:pass@example.com/", I),
    ("http://@example.com/", I),
    ("http://:@example.com/", I),
    ("http://@@example.com/", I),
    ("https://example.com@127.0.0.1/", I),
    ("https://127.0.0.1@example.com/", I),
    ("http://user%40x@example.com/", I),
    ("http:@example.com/", I),
    // Backslashes.
    ("http://example.com\\@127.0.0.1/", I),
    ("http:\\\\example.com/", I),
    ("http://example.com/a\\b", I),
    ("http://example.com/#\\", I),
    // Whitespace, control and invisible characters, anywhere.
    (" http://example.com/", I),
    ("http://example.com/ ", I),
    ("http://exa mple.com/", I),
    ("http://example.com/a b", I),
    ("http://example.com/\t", I),
    ("http://exam\tple.com/", I),
    ("http://exam\nple.com/", I),
    ("http://example.com/\r\n", I),
    ("http://example.com/\u{0b}", I),
    ("http://example.com/\u{0c}", I),
    ("http://example.com/\u{a0}", I),
    ("http://example.com/\u{3000}", I),
    ("http://example.com/\u{2028}", I),
    ("http://example.com/\u{85}", I),
    ("http://example.com/\u{0}", I),
    ("http://example.com/\u{1b}", I),
    ("http://example.com/\u{7f}", I),
    ("http://example.com/\u{9f}", I),
    ("\u{0}http://example.com/", I),
    ("http://loc\u{ad}alhost/", I),
    ("http://example.com/\u{200b}", I),
    ("http://example.com/\u{202e}", I),
    ("\u{feff}http://example.com/", I),
    // Empty host and other shapes.
    ("", I),
    ("http://", I),
    ("http:///", I),
    ("http:///example.com/", I),
    ("http:////example.com/", I),
    ("http:example.com", I),
    ("http:/example.com", I),
    ("http://:80/", I),
    ("http://?x", I),
    ("http://#x", I),
    ("http://[]/", I),
    ("//example.com/", I),
    ("example.com", I),
    ("example.com:80/x", I),
    ("http://example.com:0/", I),
    ("http://example.com:65536/", I),
    ("http://example.com:-1/", I),
    ("http://example.com:8o/", I),
    ("http://exa<mple.com/", I),
    ("http://example.com:80:80/", I),
    // Schemes.
    ("ftp://example.com/", I),
    ("file:///etc/passwd", I),
    ("file://localhost/etc/passwd", I),
    ("gopher://127.0.0.1:6379/_INFO", I),
    ("javascript:alert(1)", I),
    ("data:text/plain,hi", I),
    ("dict://127.0.0.1:11211/stats", I),
    ("ldap://127.0.0.1/", I),
    ("ws://example.com/", I),
    ("wss://example.com/", I),
    ("httpx://example.com/", I),
    ("http+unix://%2Fvar%2Frun/", I),
    ("jar:http://example.com/!/", I),
    ("view-source:http://example.com/", I),
];

#[test]
fn public_corpus() {
    assert_eq!(PUBLIC_CORPUS.len(), 138);
    assert_corpus(&policy(), PUBLIC_CORPUS);
}

#[test]
fn dns_corpus() {
    assert_eq!(DNS_CORPUS.len(), 20);
    assert_corpus(&policy(), DNS_CORPUS);
}

#[test]
fn rule_corpus() {
    assert_corpus(&policy(), RULE_CORPUS);
}

#[test]
fn details_name_reason_and_address() {
    let policy = policy();
    let cases = [
        ("http://127.0.0.1/", "127.0.0.1 is in 127.0.0.0/8 (loopback)"),
        ("http://2130706433/", "127.0.0.1 is in 127.0.0.0/8 (loopback)"),
        (
            "http://0xa9fea9fe/latest/meta-data/",
            "169.254.169.254 is in 169.254.0.0/16 (link-local)",
        ),
        ("http://255.255.255.255/", "255.255.255.255 is in 255.255.255.255/32 (broadcast)"),
        ("http://[::1]/", "::1 is in ::1/128 (loopback)"),
        (
            "http://[::ffff:127.0.0.1]/",
            "::ffff:127.0.0.1 is in ::ffff:0:0/96 (IPv4-mapped) and embeds 127.0.0.1, which is in 127.0.0.0/8 (loopback)",
        ),
        (
            "http://[2002:a9fe:a9fe::]/",
            "2002:a9fe:a9fe:: is in 2002::/16 (6to4) and embeds 169.254.169.254, which is in 169.254.0.0/16 (link-local)",
        ),
        ("http://localhost/", "host \"localhost\" matches \"localhost\" (local host name)"),
        ("http://a.localhost./", "host \"a.localhost\" matches \"*.localhost\" (local host name)"),
        (
            "http://127.0.0.1../",
            "host \"127.0.0.1\" is written as an address: 127.0.0.1 is in 127.0.0.0/8 (loopback)",
        ),
        (
            "http://[fe80::1%25eth0]/",
            "fe80::1 is in fe80::/10 (link-local) (zone id \"eth0\")",
        ),
    ];
    for (raw, detail) in cases {
        assert_eq!(
            policy.check(raw),
            Err(Failure::BlockedDestination(detail.to_string())),
            "{raw}"
        );
    }
    let blocked = policy.check("http://127.0.0.1/").unwrap_err();
    assert_eq!(blocked.http_status(), 403);
    assert_eq!(blocked.code().number(), 11110114);
    let invalid = policy.check("http://user@example.com/").unwrap_err();
    assert_eq!(invalid.http_status(), 400);
    assert_eq!(
        invalid,
        Failure::InvalidUrl("userinfo (user@) not allowed".into())
    );
}

#[test]
fn details_are_ascii() {
    let policy = policy();
    for raw in [
        "http://१२७.०.०.१/",
        "ftp\u{e9}://x/",
        "http://example.com/\u{3000}",
        "http://[fe80::1%25\u{e9}\u{e9}]/",
    ] {
        let failure = policy.check(raw).unwrap_err();
        assert!(failure.to_string().is_ascii(), "{raw}: {failure}");
    }
}

fn destination(raw: &str) -> Destination {
    policy().check(raw).unwrap()
}

#[test]
fn what_will_be_sent() {
    assert_eq!(
        destination("https://crm.example.com/hooks/sendpulse"),
        Destination {
            url: "https://crm.example.com/hooks/sendpulse".into(),
            https: true,
            authority: "crm.example.com:443".into(),
            path_and_query: "/hooks/sendpulse".into(),
            host: "crm.example.com".into(),
        }
    );
    assert_eq!(
        destination("HTTP://Example.COM:80?a=1&b=%20#frag"),
        Destination {
            url: "http://example.com/?a=1&b=%20".into(),
            https: false,
            authority: "example.com:80".into(),
            path_and_query: "/?a=1&b=%20".into(),
            host: "example.com".into(),
        }
    );
    assert_eq!(
        destination("https://[2001:4860:4860:0:0:0:0:8888]:8443/a/../b?q#"),
        Destination {
            url: "https://[2001:4860:4860::8888]:8443/b?q".into(),
            https: true,
            authority: "[2001:4860:4860::8888]:8443".into(),
            path_and_query: "/b?q".into(),
            host: "[2001:4860:4860::8888]".into(),
        }
    );
    let d = destination("http://134744072:8080");
    assert_eq!(d.url, "http://8.8.8.8:8080/");
    assert_eq!(d.authority, "8.8.8.8:8080");
    assert_eq!(d.path_and_query, "/");
    let d = destination("https://bücher.example/ä?x=ü");
    assert_eq!(d.url, "https://xn--bcher-kva.example/%C3%A4?x=%C3%BC");
    assert_eq!(d.authority, "xn--bcher-kva.example:443");
    assert_eq!(d.path_and_query, "/%C3%A4?x=%C3%BC");
    let d = destination("http://example.com/?");
    assert_eq!(d.url, "http://example.com/?");
    assert_eq!(d.path_and_query, "/?");
    let d = destination("https://example.com:443/x");
    assert_eq!(
        (d.url.as_str(), d.authority.as_str()),
        ("https://example.com/x", "example.com:443")
    );
    let d = destination("http://example.com:443/x");
    assert_eq!(
        (d.url.as_str(), d.authority.as_str()),
        ("http://example.com:443/x", "example.com:443")
    );
}

fn with(config: serde_json::Value) -> DestinationPolicy {
    let config: DestinationConfig = serde_json::from_value(config).unwrap();
    DestinationPolicy::new(&config).unwrap()
}

#[test]
fn exceptions_name_exactly_what_they_allow() {
    let policy = with(serde_json::json!({
        "allow": [
            {"cidr": "127.0.0.1/32", "port": 18080},
            {"cidr": "10.1.0.0/16"},
            {"cidr": "fd12:3456::/32", "port": 443},
            {"cidr": "::ffff:192.168.7.7/128"},
        ]
    }));
    assert_corpus(
        &policy,
        &[
            ("http://127.0.0.1:18080/hook", P),
            ("http://2130706433:18080/hook", P),
            ("http://127.1:18080/hook", P),
            ("http://127.0.0.1/hook", B),
            ("http://127.0.0.1:8080/hook", B),
            ("https://127.0.0.1:18081/hook", B),
            ("http://127.0.0.2:18080/hook", B),
            ("http://localhost:18080/hook", B),
            ("http://127.0.0.1..:18080/hook", B),
            ("http://१२७.०.०.१:18080/hook", B),
            ("http://[::ffff:127.0.0.1]:18080/hook", B),
            ("http://[::127.0.0.1]:18080/hook", B),
            ("http://[64:ff9b::127.0.0.1]:18080/hook", B),
            ("http://[2002:7f00:1::]:18080/hook", B),
            ("http://[::1]:18080/hook", B),
            ("http://10.1.2.3/", P),
            ("http://10.1.2.3:9999/", P),
            ("http://10.2.0.1/", B),
            ("http://[::ffff:10.1.2.3]/", B),
            ("https://[fd12:3456::1]/", P),
            ("http://[fd12:3456::1]:443/", P),
            ("http://[fd12:3456::1]/", B),
            ("https://[fd12:3457::1]/", B),
            ("http://[::ffff:192.168.7.7]/", P),
            ("http://192.168.7.7/", B),
            ("http://[::ffff:192.168.7.8]/", B),
            ("http://[fe80::1%25eth0]:18080/", B),
            ("http://8.8.8.8/", P),
        ],
    );
    assert_eq!(
        policy.check("http://127.0.0.1:8080/"),
        Err(Failure::BlockedDestination(
            "127.0.0.1 is in 127.0.0.0/8 (loopback); the exception for \"127.0.0.1/32\" covers port 18080 only, not 8080"
                .into()
        ))
    );
}

#[test]
fn configured_denials() {
    let policy = with(serde_json::json!({
        "deny_cidrs": ["203.0.113.7/32", "fd12::/16", "8.8.4.0/24", "93.184.216.34"],
        "deny_hosts": ["*.corp.example", "Evil.Example.", "bücher.example"],
    }));
    assert_corpus(
        &policy,
        &[
            ("http://8.8.4.4/", B),
            ("http://134743044/", B),
            ("http://[::ffff:8.8.4.4]/", B),
            ("http://[64:ff9b::8.8.4.4]/", B),
            ("http://[2002:808:404::]/", B),
            ("http://8.8.8.8/", P),
            ("http://93.184.216.34/", B),
            ("http://93.184.216.35/", P),
            ("http://[fd12::1]/", B),
            ("http://corp.example/", B),
            ("http://a.b.CORP.example./", B),
            ("http://notcorp.example/", P),
            ("http://corp.example.com/", P),
            ("http://evil.example/", B),
            ("http://www.evil.example/", P),
            ("http://BÜCHER.example/", B),
            ("http://xn--bcher-kva.example/", B),
            ("http://localhost/", B),
        ],
    );
    assert_eq!(
        policy.check("http://8.8.4.4/"),
        Err(Failure::BlockedDestination(
            "8.8.4.4 is in 8.8.4.0/24 (configured deny_cidrs)".into()
        ))
    );
    assert_eq!(
        policy.check("http://x.corp.example/"),
        Err(Failure::BlockedDestination(
            "host \"x.corp.example\" matches \"*.corp.example\" (configured deny_hosts)".into()
        ))
    );
    // A configured deny is lifted by an exception naming the address.
    let policy = with(serde_json::json!({
        "deny_cidrs": ["8.8.4.0/24"],
        "allow": [{"cidr": "8.8.4.4/32"}],
    }));
    assert_eq!(verdict(&policy, "http://8.8.4.4/"), P);
    assert_eq!(verdict(&policy, "http://8.8.4.5/"), B);
}

#[test]
fn config_errors_name_the_key() {
    let bad_cidr = |cidr: &str| {
        let config = DestinationConfig {
            deny_cidrs: vec!["10.0.0.0/8".into(), "fd00::/8".into(), cidr.into()],
            ..Default::default()
        };
        DestinationPolicy::new(&config).err()
    };
    assert_eq!(
        bad_cidr("10.0.0.0/33"),
        Some("destination.deny_cidrs[2]: invalid CIDR \"10.0.0.0/33\"".into())
    );
    for cidr in [
        "",
        "/8",
        "10.0.0.0/",
        "10.0.0.1/8",
        "010.0.0.0/8",
        "10.0.0/8",
        "10.0.0.0/08",
        "10.0.0.0/+8",
        "10.0.0.0/-1",
        "10.0.0.0/8/8",
        "10.0.0.0 /8",
        "0x0a000000/8",
        "fd00::1/8",
        "fe80::1%eth0/128",
        "::/129",
        "[::1]/128",
        "localhost",
        "10.0.0.0/4294967304",
    ] {
        assert!(bad_cidr(cidr).is_some(), "{cidr:?} accepted");
    }
    for cidr in [
        "0.0.0.0/0",
        "::/0",
        "10.0.0.1",
        "::1",
        "::ffff:1.2.3.4/128",
        "10.0.0.0/8",
    ] {
        assert_eq!(bad_cidr(cidr), None, "{cidr:?}");
    }

    let bad_host = |host: &str| {
        let config = DestinationConfig {
            deny_hosts: vec!["ok.example".into(), host.into()],
            ..Default::default()
        };
        DestinationPolicy::new(&config).err()
    };
    assert_eq!(
        bad_host("a/b"),
        Some(
            "destination.deny_hosts[1]: invalid host name \"a/b\": only a name, or *. and a name"
                .into()
        )
    );
    for host in [
        "",
        "*.",
        "*",
        "a/b",
        "127.0.0.1",
        "2130706433",
        "[::1]",
        "::1",
        "a..b",
        "*.*.x",
        "x:80",
        "a b",
        "user@x",
        ".",
        "..",
        "x%2e",
        "*x.example",
    ] {
        assert!(bad_host(host).is_some(), "{host:?} accepted");
    }

    let config = DestinationConfig {
        allow: vec![
            AllowRule {
                cidr: "127.0.0.1/32".into(),
                port: None,
            },
            AllowRule {
                cidr: "127.0.0.1/33".into(),
                port: None,
            },
        ],
        ..Default::default()
    };
    assert_eq!(
        DestinationPolicy::new(&config).err(),
        Some("destination.allow[1].cidr: invalid CIDR \"127.0.0.1/33\"".into())
    );
    let config = DestinationConfig {
        allow: vec![AllowRule {
            cidr: "127.0.0.1/32".into(),
            port: Some(0),
        }],
        ..Default::default()
    };
    assert_eq!(
        DestinationPolicy::new(&config).err(),
        Some("destination.allow[0].port: must be 1..=65535, got 0".into())
    );
}

#[test]
fn config_json_shape() {
    let config: DestinationConfig = serde_json::from_str("{}").unwrap();
    assert_eq!(config, DestinationConfig::default());
    let config: DestinationConfig = serde_json::from_str(
        r#"{"deny_cidrs": ["203.0.113.7/32"], "deny_hosts": ["*.corp.example"],
            "allow": [{"cidr": "127.0.0.1/32", "port": 18080}, {"cidr": "10.0.0.0/8"}]}"#,
    )
    .unwrap();
    assert_eq!(config.allow[0].port, Some(18080));
    assert_eq!(config.allow[1].port, None);
    assert!(serde_json::from_str::<DestinationConfig>(r#"{"deny": []}"#).is_err());
    assert!(
        serde_json::from_str::<DestinationConfig>(r#"{"allow": [{"cidr": "x", "ports": 1}]}"#)
            .is_err()
    );
    assert!(serde_json::from_str::<DestinationConfig>(r#"{"allow": [{"port": 1}]}"#).is_err());
    assert!(serde_json::from_str::<DestinationConfig>(
        r#"{"allow": [{"cidr": "x", "port": 70000}]}"#
    )
    .is_err());
}

#[test]
fn unicode_digit_table() {
    for &zero in UNICODE_ZEROS {
        for i in 0..10 {
            let c = char::from_u32(zero + i).unwrap();
            assert!(c.is_numeric(), "U+{:04X}", zero + i);
            assert_eq!(
                unicode_digit(c),
                char::from_digit(i, 10),
                "U+{:04X}",
                zero + i
            );
        }
    }
    assert_eq!(unicode_digit('a'), None);
    assert_eq!(unicode_digit('\u{0665}'), Some('5'));
    assert_eq!(unicode_digit('\u{096F}'), Some('9'));
    // Digits of a script the table does not know: refused when the host would be an IPv4
    // address with them read as any digit, a name otherwise.
    let unknown = '\u{10D40}';
    assert_eq!(unicode_digit(unknown), None);
    assert!(unknown.is_numeric());
    assert_eq!(
        unicode_digits_as_ipv4(&format!("{unknown}.0.0.1")),
        DigitsVerdict::Unsure
    );
    assert_eq!(
        unicode_digits_as_ipv4(&format!("{unknown}{unknown}")),
        DigitsVerdict::Unsure
    );
    assert_eq!(
        unicode_digits_as_ipv4(&format!("{unknown}.example")),
        DigitsVerdict::Name
    );
    assert_eq!(
        unicode_digits_as_ipv4("१२७.०.०.१"),
        DigitsVerdict::Address(Ipv4Addr::new(127, 0, 0, 1))
    );
    assert_eq!(unicode_digits_as_ipv4("example.com"), DigitsVerdict::Name);
}

/// Nothing panics: every prefix of every corpus entry, and some odd strings.
#[test]
fn never_panics() {
    let policy = with(serde_json::json!({"allow": [{"cidr": "0.0.0.0/0", "port": 1}]}));
    let odd = [
        "http://[",
        "http://]",
        "http://[]]",
        "http://[%]",
        "http://[%25",
        "http://[::1%]",
        "http://[::1%25]/",
        "http://%",
        "http://%%",
        "http://%zz/",
        "http://xn--/",
        "http://xn--ls8h/",
        "http://xn--e4bcp.xn--d4b.xn--d4b.xn--e4b/",
        "http:",
        ":",
        "://",
        "http://:",
        "http://a:",
        "https://a:99999999999999999999/",
        "http://\u{10FFFF}/",
        "http://\u{FFFD}/",
        "http://🙂.example/",
        "http://1.2.3.4.5/",
        "http://0x/",
        "http://0x.0x.0x.0x/",
        "http://9999999999999999999999999/",
        "http://.1/",
        "http://1./",
    ];
    let long = format!("http://{}/", "1.".repeat(10_000));
    let all = PUBLIC_CORPUS
        .iter()
        .chain(DNS_CORPUS)
        .chain(RULE_CORPUS)
        .map(|(raw, _)| *raw)
        .chain(odd);
    for raw in all {
        for (i, _) in raw.char_indices().chain([(raw.len(), ' ')]) {
            let _ = policy.check(&raw[..i]);
        }
    }
    assert!(policy.check(&long).is_err());
}
