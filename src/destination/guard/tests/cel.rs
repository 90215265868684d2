//! The shipped guard's conditions, evaluated as Envoy's CEL does.

use super::*;

/// CEL as Envoy evaluates the guard's conditions, for the few forms they use: Err is CEL's error
/// value, which `&&` and `||` absorb only when the other side decides alone. `too_large` stands
/// for a pattern Envoy's RE2 limit refuses.
pub(super) fn eval(
    expr: &serde_json::Value,
    headers: &[(&str, String)],
    address: &str,
    too_large: &str,
) -> Result<serde_json::Value, ()> {
    use serde_json::Value;
    if let Some(c) = expr.get("const_expr") {
        return Ok(c["string_value"].clone());
    }
    if let Some(s) = expr.get("select_expr") {
        return Ok(Value::String(format!(
            "{}.{}",
            s["operand"]["ident_expr"]["name"].as_str().unwrap(),
            s["field"].as_str().unwrap()
        )));
    }
    let call = &expr["call_expr"];
    let args: Vec<&Value> = call["args"].as_array().unwrap().iter().collect();
    let value = |e: &Value| eval(e, headers, address, too_large);
    let header = |name: &Value| {
        headers
            .iter()
            .find(|(h, _)| Some(*h) == name.as_str())
            .map(|(_, v)| v.clone())
    };
    match call["function"].as_str().unwrap() {
        "_&&_" | "_||_" => {
            let decides = Value::Bool(call["function"] == "_||_");
            let (a, b) = (value(args[0]), value(args[1]));
            if a.as_ref() == Ok(&decides) || b.as_ref() == Ok(&decides) {
                Ok(decides)
            } else {
                a.and(b)
            }
        }
        "!_" => Ok(Value::Bool(!value(args[0])?.as_bool().unwrap())),
        // String order, as CEL compares strings (by code point; these texts are ASCII).
        compare @ ("_>=_" | "_<_") => {
            let text = |e: &Value| -> Result<String, ()> {
                let v = value(e)?;
                let v = v.as_str().unwrap();
                Ok(if v == "upstream.address" { address } else { v }.to_string())
            };
            let (a, b) = (text(args[0])?, text(args[1])?);
            Ok(Value::Bool(if compare == "_>=_" { a >= b } else { a < b }))
        }
        "@in" => Ok(Value::Bool(header(&value(args[0])?).is_some())),
        "_[_]" => header(&value(args[1])?).map(Value::String).ok_or(()),
        "matches" => {
            assert_eq!(value(&call["target"])?, "upstream.address");
            let pattern = value(args[0])?;
            let pattern = pattern.as_str().unwrap();
            if pattern == too_large {
                return Err(());
            }
            Ok(Value::Bool(matches(pattern, address)))
        }
        other => panic!("unexpected function {other}"),
    }
}

/// Whether a policy of the shipped guard lets `address` through (its condition true; an error
/// counts as not matched, as in Envoy).
fn condition_holds(
    policy: &str,
    headers: &[(&str, String)],
    address: &str,
    too_large: &str,
) -> bool {
    let rules = guard_rules();
    let condition = &rules["policies"][policy]["condition"];
    eval(condition, headers, address, too_large) == Ok(serde_json::Value::Bool(true))
}

#[test]
fn the_guard_reads_every_slot_and_a_failed_pattern_never_lets_an_address_through() {
    let cidrs = widest(2 * GUARD_SLOTS);
    let allow: Vec<(&str, Option<u16>)> = cidrs.iter().map(|c| (c.as_str(), Some(443))).collect();
    let g = guard(&allow, &as_strs(&cidrs)).unwrap();
    let headers = g.headers(None, 443);
    assert_eq!(
        headers.len(),
        2 * GUARD_SLOTS,
        "every slot of both kinds in use"
    );
    for (i, cidr) in cidrs.iter().enumerate() {
        let Net::V4 { addr, .. } = net(cidr) else {
            panic!()
        };
        let address = format!("{}:443", Ipv4Addr::from(addr + 1));
        // Its own slot holds it: excepted, and denied.
        assert!(condition_holds(EXCEPTED_POLICY, &headers, &address, ""));
        assert!(!condition_holds(PUBLIC_POLICY, &headers, &address, ""));
        // Its slot's pattern refused by Envoy: not excepted; any slot refused: not public.
        let own = &headers[i / 2].1;
        assert!(!condition_holds(EXCEPTED_POLICY, &headers, &address, own));
        for (_, pattern) in &headers {
            assert!(!condition_holds(PUBLIC_POLICY, &headers, &address, pattern));
        }
    }
    // Outside every CIDR: public unless a deny pattern fails; never excepted.
    let outside = "93.184.216.34:443";
    assert!(condition_holds(PUBLIC_POLICY, &headers, outside, ""));
    assert!(!condition_holds(EXCEPTED_POLICY, &headers, outside, ""));
    assert!(!condition_holds(
        PUBLIC_POLICY,
        &headers,
        outside,
        &headers[GUARD_SLOTS + 7].1
    ));
    // No pseudo-header (the default policy): public, not excepted.
    assert!(condition_holds(PUBLIC_POLICY, &[], outside, ""));
    assert!(!condition_holds(EXCEPTED_POLICY, &[], outside, ""));
}

/// An address inside `cidr` (its network address plus one), as Envoy writes it on port 443.
fn inside(cidr: &str) -> String {
    let Net::V4 { addr, .. } = net(cidr) else {
        panic!()
    };
    format!("{}:443", Ipv4Addr::from(addr + 1))
}

#[test]
fn hookgate_fills_the_slots_from_0_and_the_guard_decides_as_every_slot_says() {
    let cidrs = widest(2 * GUARD_SLOTS);
    for used in 0..=GUARD_SLOTS {
        let these = as_strs(&cidrs[..2 * used]);
        let every_port: Vec<(&str, Option<u16>)> = these.iter().map(|&c| (c, None)).collect();
        for (allow, deny, names) in [
            (&every_port[..], &[][..], &GUARD_ALLOW_HEADERS),
            (&[][..], &these[..], &GUARD_DENY_HEADERS),
        ] {
            let headers = guard(allow, deny).unwrap().headers(None, 443);
            let sent: Vec<&str> = headers.iter().map(|(h, _)| *h).collect();
            assert_eq!(sent, names[..used], "the first {used} slots, in order");
            let mut addresses: Vec<String> = these.iter().map(|c| inside(c)).collect();
            addresses.push("93.184.216.34:443".into());
            for address in &addresses {
                let matching: Vec<usize> = (0..used)
                    .filter(|&i| matches(&headers[i].1, address))
                    .collect();
                // No slot refused by Envoy, then each slot's pattern refused in turn.
                for failing in std::iter::once(None).chain((0..used).map(Some)) {
                    let too_large = failing.map_or("", |i| headers[i].1.as_str());
                    let matched = matching.iter().any(|&i| Some(i) != failing);
                    let (public, excepted) = if deny.is_empty() {
                        (true, matched)
                    } else {
                        (failing.is_none() && matching.is_empty(), false)
                    };
                    let case = format!("{used} slots, {address}, failing {failing:?}");
                    assert_eq!(
                        condition_holds(PUBLIC_POLICY, &headers, address, too_large),
                        public,
                        "public: {case}"
                    );
                    assert_eq!(
                        condition_holds(EXCEPTED_POLICY, &headers, address, too_large),
                        excepted,
                        "excepted: {case}"
                    );
                }
            }
        }
    }
    // An IP literal an exception covers: slot 0 alone.
    let literal = guard(&[("198.51.100.0/24", None)], &[]).unwrap();
    let headers = literal.headers(Some("198.51.100.7".parse().unwrap()), 443);
    assert_eq!(headers.len(), 1);
    assert_eq!(headers[0].0, GUARD_ALLOW_HEADERS[0]);
}

#[test]
fn without_slot_0_the_guard_reads_no_other_slot_and_is_the_built_in_list_alone() {
    // Headers hookgate never sends (it fills from 0, above) and no caller can (pseudo-headers):
    // slots 1 to 7 without slot 0, each pattern naming the address, one even refused by Envoy.
    let cidrs = widest(2 * GUARD_SLOTS);
    let g = guard(
        &cidrs.iter().map(|c| (c.as_str(), None)).collect::<Vec<_>>(),
        &as_strs(&cidrs),
    )
    .unwrap();
    let all = g.headers(None, 443);
    let without_0: Vec<(&str, String)> = all
        .iter()
        .filter(|(h, _)| *h != GUARD_ALLOW_HEADERS[0] && *h != GUARD_DENY_HEADERS[0])
        .cloned()
        .collect();
    assert_eq!(without_0.len(), 2 * (GUARD_SLOTS - 1));
    let address = inside(&cidrs[2]);
    for too_large in ["", without_0[0].1.as_str()] {
        assert!(condition_holds(
            PUBLIC_POLICY,
            &without_0,
            &address,
            too_large
        ));
        assert!(!condition_holds(
            EXCEPTED_POLICY,
            &without_0,
            &address,
            too_large
        ));
    }
    // With slot 0 as well, the same address is denied, and excepted.
    assert!(!condition_holds(PUBLIC_POLICY, &all, &address, ""));
    assert!(condition_holds(EXCEPTED_POLICY, &all, &address, ""));
}

#[test]
fn the_public_policy_is_evaluated_first() {
    // Envoy's RBAC keeps its policies in a map ordered by name and stops at the first match.
    let rules = guard_rules();
    let names: Vec<&String> = rules["policies"].as_object().unwrap().keys().collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, [PUBLIC_POLICY, EXCEPTED_POLICY]);
}
