//! The SSRF corpora: public spellings, names local only through DNS, and cases derived from the
//! rules, each with its expected verdict.

use super::*;

/// A public corpus of SSRF spellings (PayloadsAllTheThings' SSRF pages and the URL standard's
/// test data; fuzz/seeds/ssrf/), every entry (138), with the category each comes from.
pub(super) const PUBLIC_CORPUS: &[(&str, V)] = &[
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
pub(super) const DNS_CORPUS: &[(&str, V)] = &[
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
pub(super) const RULE_CORPUS: &[(&str, V)] = &[
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
