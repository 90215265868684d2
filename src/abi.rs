//! The proxy-wasm ABI's header-map encoding, decoded without trusting the host's sizes.

/// The ABI's map encoding: count, (key size, value size) pairs, then each key and value NUL-ended.
pub fn serialize_map(pairs: &[(&str, &str)]) -> Vec<u8> {
    let size = 4 + pairs
        .iter()
        .map(|(k, v)| k.len() + v.len() + 10)
        .sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(pairs.len() as u32).to_le_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u32).to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
    }
    for (k, v) in pairs {
        out.extend_from_slice(k.as_bytes());
        out.push(0);
        out.extend_from_slice(v.as_bytes());
        out.push(0);
    }
    out
}

/// Decodes the ABI's map encoding as text (lossy for bytes that are not UTF-8).
pub fn deserialize_map(bytes: &[u8]) -> Vec<(String, String)> {
    map_pairs(bytes)
        .into_iter()
        .map(|(k, v)| {
            (
                String::from_utf8_lossy(k).into_owned(),
                String::from_utf8_lossy(v).into_owned(),
            )
        })
        .collect()
}

/// Decodes the ABI's map encoding into borrowed pairs, without trusting its sizes (a bad map
/// decodes short).
pub fn map_pairs(bytes: &[u8]) -> Vec<(&[u8], &[u8])> {
    let read_u32 = |at: usize| -> Option<usize> {
        let raw: [u8; 4] = bytes.get(at..at.checked_add(4)?)?.try_into().ok()?;
        Some(u32::from_le_bytes(raw) as usize)
    };
    let Some(count) = read_u32(0) else {
        return Vec::new();
    };
    let mut pairs = Vec::with_capacity(count.min(256));
    let mut data = 4usize.saturating_add(count.saturating_mul(8));
    for n in 0..count {
        let entry = 4 + n * 8;
        let (Some(key_size), Some(value_size)) = (read_u32(entry), read_u32(entry + 4)) else {
            break;
        };
        let key = data
            .checked_add(key_size)
            .and_then(|end| bytes.get(data..end));
        data = data.saturating_add(key_size).saturating_add(1);
        let value = data
            .checked_add(value_size)
            .and_then(|end| bytes.get(data..end));
        data = data.saturating_add(value_size).saturating_add(1);
        let (Some(key), Some(value)) = (key, value) else {
            break;
        };
        pairs.push((key, value));
    }
    pairs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_round_trip() {
        let pairs = [
            (":status", "200"),
            ("content-type", "application/json"),
            ("x-empty", ""),
        ];
        let decoded = deserialize_map(&serialize_map(&pairs));
        let expected: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(decoded, expected);
    }

    #[test]
    fn malformed_maps_decode_short_without_panicking() {
        let good = serialize_map(&[("a", "b"), ("c", "d")]);
        for cut in 0..good.len() {
            let _ = deserialize_map(&good[..cut]);
        }
        assert!(deserialize_map(&[0xff, 0xff, 0xff, 0xff]).is_empty());
        assert_eq!(
            deserialize_map(&[1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, b'k', 0, 0xff, 0]),
            vec![("k".into(), "\u{fffd}".into())]
        );
    }
}
