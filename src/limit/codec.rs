//! The byte format of one bucket value in shared data (format version 2).
//!
//! ```text
//! bucket   = version:u8 (= 2)  count:varint  entry{count}  redirects:varint  redirect{redirects}
//! entry    = flags:u8 (bit 0 = verified; other bits must be 0)
//!            name_len:varint  name:utf8
//!            url_len:varint   url:utf8          (the normalised URL)
//!            sends:varint     [first:varint  delta:varint{sends-1}]
//! redirect = flags:u8 (bit 0 = permanent; other bits must be 0)
//!            fingerprint:u32 little endian
//!            offset:varint (>= 1)
//!            until:varint                       (Unix seconds)
//! varint   = unsigned LEB128, at most 10 bytes, no overflow
//! ```
//!
//! Send times are Unix seconds, ascending; the first is absolute and each later one is the
//! difference to the one before (within one hour, so one or two bytes each). A redirect
//! (version 2) says that the webhooks whose home is this bucket, whose fingerprint is this one
//! and that are not among this bucket's entries live `offset` buckets further on (see
//! `src/limit/table.rs`); 7 to 12 bytes each.
//! An empty value (zero bytes) is an empty bucket. Anything else that does not decode exactly
//! (other version, e.g. a version 1 bucket, unknown flag, truncation, trailing bytes, bad UTF-8,
//! overflow, offset 0) is an error: the caller treats such a bucket as occupied by something it
//! does not understand.

/// The format version written in the first byte of every bucket value.
pub const VERSION: u8 = 2;

const FLAG_VERIFIED: u8 = 1;
const FLAG_PERMANENT: u8 = 1;

/// One bucket: the webhooks it holds and the redirects of webhooks whose home it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    pub entries: Vec<Entry>,
    pub redirects: Vec<Redirect>,
}

/// Webhooks of this home bucket with this fingerprint, when not among its entries, live in the
/// bucket `offset` further on (modulo the bucket count).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Redirect {
    pub fingerprint: u32,
    pub offset: u32,
    /// Unix seconds until which it holds; every send recorded through it is at least an hour
    /// older than this.
    pub until: u64,
    /// Kept for ever: a verified webhook lives behind it.
    pub permanent: bool,
}

/// One tracked webhook in a bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub url: String,
    pub verified: bool,
    /// Unix seconds of the sends still counted, ascending.
    pub sends: Vec<u64>,
}

impl Entry {
    /// Moves the state out of the entry (name and URL stay).
    pub fn take_record(&mut self) -> super::Record {
        super::Record {
            verified: self.verified,
            sends: std::mem::take(&mut self.sends),
        }
    }

    pub fn put_record(&mut self, record: super::Record) {
        self.verified = record.verified;
        self.sends = record.sends;
    }
}

/// The value of a bucket with no entries (what `prepare` writes).
pub fn empty_bucket() -> Vec<u8> {
    vec![VERSION, 0, 0]
}

pub fn encode(bucket: &Bucket) -> Vec<u8> {
    let entries = &bucket.entries;
    let mut out = Vec::with_capacity(
        3 + 12 * bucket.redirects.len()
            + entries
                .iter()
                .map(|e| e.name.len() + e.url.len() + 16 + 2 * e.sends.len())
                .sum::<usize>(),
    );
    out.push(VERSION);
    put_varint(&mut out, entries.len() as u64);
    for entry in entries {
        out.push(if entry.verified { FLAG_VERIFIED } else { 0 });
        put_varint(&mut out, entry.name.len() as u64);
        out.extend_from_slice(entry.name.as_bytes());
        put_varint(&mut out, entry.url.len() as u64);
        out.extend_from_slice(entry.url.as_bytes());
        let mut sends = entry.sends.clone();
        sends.sort_unstable();
        put_varint(&mut out, sends.len() as u64);
        let mut previous = 0u64;
        for send in sends {
            put_varint(&mut out, send.saturating_sub(previous));
            previous = send;
        }
    }
    put_varint(&mut out, bucket.redirects.len() as u64);
    for redirect in &bucket.redirects {
        out.push(if redirect.permanent {
            FLAG_PERMANENT
        } else {
            0
        });
        out.extend_from_slice(&redirect.fingerprint.to_le_bytes());
        put_varint(&mut out, u64::from(redirect.offset));
        put_varint(&mut out, redirect.until);
    }
    out
}

pub fn decode(bytes: &[u8]) -> Result<Bucket, String> {
    if bytes.is_empty() {
        return Ok(Bucket::default());
    }
    let mut reader = Reader { bytes, pos: 0 };
    let version = reader.byte()?;
    if version != VERSION {
        return Err(format!("unknown format version {version}"));
    }
    let count = reader.varint()?;
    let mut entries = Vec::new();
    for _ in 0..count {
        // Every entry takes at least four bytes: a claimed count beyond that is garbage, and
        // the loop must not run for billions of rounds on it.
        if reader.remaining() < 4 {
            return Err("truncated entry".to_string());
        }
        let flags = reader.byte()?;
        if flags & !FLAG_VERIFIED != 0 {
            return Err(format!("unknown flags {flags:#04x}"));
        }
        let name = reader.text()?;
        let url = reader.text()?;
        let send_count = reader.varint()?;
        if send_count > reader.remaining() as u64 {
            return Err("truncated send list".to_string());
        }
        let mut sends = Vec::new();
        let mut previous = 0u64;
        for _ in 0..send_count {
            let delta = reader.varint()?;
            previous = previous
                .checked_add(delta)
                .ok_or_else(|| "send time overflows".to_string())?;
            sends.push(previous);
        }
        entries.push(Entry {
            name,
            url,
            verified: flags & FLAG_VERIFIED != 0,
            sends,
        });
    }
    let count = reader.varint()?;
    let mut redirects = Vec::new();
    for _ in 0..count {
        // Every redirect takes at least seven bytes (see the loop over entries).
        if reader.remaining() < 7 {
            return Err("truncated redirect".to_string());
        }
        let flags = reader.byte()?;
        if flags & !FLAG_PERMANENT != 0 {
            return Err(format!("unknown redirect flags {flags:#04x}"));
        }
        let mut fingerprint = [0u8; 4];
        for byte in &mut fingerprint {
            *byte = reader.byte()?;
        }
        let offset = u32::try_from(reader.varint()?)
            .ok()
            .filter(|&offset| offset >= 1)
            .ok_or_else(|| "redirect offset out of range".to_string())?;
        let until = reader.varint()?;
        redirects.push(Redirect {
            fingerprint: u32::from_le_bytes(fingerprint),
            offset,
            until,
            permanent: flags & FLAG_PERMANENT != 0,
        });
    }
    if reader.remaining() != 0 {
        return Err(format!("{} trailing bytes", reader.remaining()));
    }
    Ok(Bucket { entries, redirects })
}

fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    loop {
        let low = (value & 0x7f) as u8;
        value >>= 7;
        if value == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    fn byte(&mut self) -> Result<u8, String> {
        let byte = *self
            .bytes
            .get(self.pos)
            .ok_or_else(|| "truncated".to_string())?;
        self.pos += 1;
        Ok(byte)
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for index in 0..10u32 {
            let byte = self.byte()?;
            let bits = u64::from(byte & 0x7f);
            let shift = 7 * index;
            // The tenth byte may only carry the top bit of a u64.
            if index == 9 && bits > 1 {
                return Err("varint overflows".to_string());
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint too long".to_string())
    }

    fn text(&mut self) -> Result<String, String> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| "length overflows".to_string())?;
        let end = self
            .pos
            .checked_add(len)
            .ok_or_else(|| "length overflows".to_string())?;
        let raw = self
            .bytes
            .get(self.pos..end)
            .ok_or_else(|| "truncated text".to_string())?;
        self.pos = end;
        String::from_utf8(raw.to_vec()).map_err(|_| "text is not UTF-8".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Bucket {
        Bucket {
            entries: vec![
                Entry {
                    name: "orders".into(),
                    url: "https://example.com/hook".into(),
                    verified: false,
                    sends: vec![1_700_000_000, 1_700_000_010, 1_700_003_599],
                },
                Entry {
                    name: "ünïcode".into(),
                    url: "https://example.org/".into(),
                    verified: true,
                    sends: vec![],
                },
            ],
            redirects: vec![
                Redirect {
                    fingerprint: 0xdead_beef,
                    offset: 3,
                    until: 1_700_007_200,
                    permanent: false,
                },
                Redirect {
                    fingerprint: 7,
                    offset: 200,
                    until: 0,
                    permanent: true,
                },
            ],
        }
    }

    #[test]
    fn round_trips_and_is_compact() {
        let bucket = sample();
        let bytes = encode(&bucket);
        assert_eq!(decode(&bytes), Ok(bucket));
        assert_eq!(bytes.first(), Some(&VERSION));
        // One unverified webhook with one send: 1 flag + 1+name + 1+url + 1 count + 5 time.
        let one = Bucket {
            entries: vec![Entry {
                name: "n".into(),
                url: "https://a.example/".into(),
                verified: false,
                sends: vec![1_700_000_000],
            }],
            redirects: vec![],
        };
        assert_eq!(encode(&one).len(), 3 + 1 + 2 + 19 + 1 + 5);
        // One redirect: 1 flag + 4 fingerprint + 1 offset + 5 until.
        let redirect = Bucket {
            entries: vec![],
            redirects: vec![Redirect {
                fingerprint: 1,
                offset: 1,
                until: 1_700_007_200,
                permanent: false,
            }],
        };
        assert_eq!(encode(&redirect).len(), 3 + 11);
        assert_eq!(decode(&empty_bucket()), Ok(Bucket::default()));
        assert_eq!(encode(&Bucket::default()), empty_bucket());
        assert_eq!(decode(b""), Ok(Bucket::default()));
    }

    #[test]
    fn rejects_every_truncation_and_bad_byte_without_panicking() {
        let bytes = encode(&sample());
        for cut in 1..bytes.len() {
            assert!(
                decode(bytes.get(..cut).unwrap_or_default()).is_err(),
                "cut {cut}"
            );
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        assert!(decode(&[1, 0]).is_err(), "version 1");
        assert!(decode(&[3, 0, 0]).is_err(), "unknown version");
        assert!(decode(&[2, 1, 0x80, 0, 0, 0, 0]).is_err(), "unknown flag");
        assert!(decode(&[2, 1, 0, 1, 0xff, 0, 0, 0]).is_err(), "bad utf-8");
        assert!(
            decode(&[2, 0, 1, 2, 1, 0, 0, 0, 1, 0]).is_err(),
            "unknown redirect flag"
        );
        assert!(decode(&[2, 0, 1, 0, 1, 0, 0, 0, 0, 0]).is_err(), "offset 0");
        assert_eq!(
            decode(&[2, 0, 1, 1, 1, 0, 0, 0, 1, 0]),
            Ok(Bucket {
                entries: vec![],
                redirects: vec![Redirect {
                    fingerprint: 1,
                    offset: 1,
                    until: 0,
                    permanent: true
                }]
            })
        );
        assert!(decode(&[2, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]).is_err());
        let mut huge_count = vec![VERSION];
        put_varint(&mut huge_count, u64::MAX);
        assert!(decode(&huge_count).is_err());
        let mut huge_redirects = vec![VERSION, 0];
        put_varint(&mut huge_redirects, u64::MAX);
        assert!(decode(&huge_redirects).is_err());
        // Pseudo-random garbage: never a panic, whatever the result.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        for round in 0..20_000 {
            let len = round % 64;
            let garbage: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    (state >> 24) as u8
                })
                .collect();
            let _ = decode(&garbage);
            let mut tagged = vec![VERSION];
            tagged.extend_from_slice(&garbage);
            let _ = decode(&tagged);
        }
    }
}
