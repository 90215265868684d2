//! The shipped guard's conditions, evaluated as Envoy's CEL does.

use super::*;

/// CEL as Envoy evaluates the guard's conditions, for the few forms they use: Err is CEL's error
/// value, which `&&` and `||` absorb only when the other side decides alone. `too_large` stands
/// for a pattern Envoy's RE2 limit refuses.
fn eval(
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
        assert!(condition_holds(
            "excepted-destinations",
            &headers,
            &address,
            ""
        ));
        assert!(!condition_holds(
            "public-destinations",
            &headers,
            &address,
            ""
        ));
        // Its slot's pattern refused by Envoy: not excepted; any slot refused: not public.
        let own = &headers[i / 2].1;
        assert!(!condition_holds(
            "excepted-destinations",
            &headers,
            &address,
            own
        ));
        for (_, pattern) in &headers {
            assert!(!condition_holds(
                "public-destinations",
                &headers,
                &address,
                pattern
            ));
        }
    }
    // Outside every CIDR: public unless a deny pattern fails; never excepted.
    let outside = "93.184.216.34:443";
    assert!(condition_holds(
        "public-destinations",
        &headers,
        outside,
        ""
    ));
    assert!(!condition_holds(
        "excepted-destinations",
        &headers,
        outside,
        ""
    ));
    assert!(!condition_holds(
        "public-destinations",
        &headers,
        outside,
        &headers[GUARD_SLOTS + 7].1
    ));
    // No pseudo-header (the default policy): public, not excepted.
    assert!(condition_holds("public-destinations", &[], outside, ""));
    assert!(!condition_holds("excepted-destinations", &[], outside, ""));
}
