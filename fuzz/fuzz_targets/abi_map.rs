//! `abi::deserialize_map`: a header map as the host hands it over, sizes untrusted.
#![no_main]

use hookgate::abi::{deserialize_map, serialize_map};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let pairs = deserialize_map(data);
    // Never more pairs than announced or than the bytes can hold.
    if let Some(count) = data.get(..4) {
        let count = u32::from_le_bytes([count[0], count[1], count[2], count[3]]) as usize;
        assert!(pairs.len() <= count);
        assert!(pairs.len() <= (data.len() - 4) / 8);
    } else {
        assert!(pairs.is_empty());
    }
    // What decoded encodes back to a map that decodes to the same pairs.
    let borrowed: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let encoded = serialize_map(&borrowed);
    assert_eq!(deserialize_map(&encoded), pairs);
    // Decoding is a prefix property: appending bytes never loses a pair already decoded.
    let mut longer = data.to_vec();
    longer.extend_from_slice(&[0; 8]);
    let more = deserialize_map(&longer);
    assert!(more.len() >= pairs.len());
    assert_eq!(more.get(..pairs.len()), Some(&pairs[..]));
});
