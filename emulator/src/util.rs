//! Small helpers of the emulator: randomness, GUIDs, timestamps, URL-encoded forms, JSON paths.

use std::collections::HashMap;
use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// Fills `buf` with random bytes from the ring provider; falls back to std's randomly keyed
/// hasher if the system source fails (the emulator needs unpredictability, not key strength).
pub(crate) fn fill_random(buf: &mut [u8]) {
    let provider = rustls::crypto::ring::default_provider();
    if provider.secure_random.fill(buf).is_ok() {
        return;
    }
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let state = RandomState::new();
    for chunk in buf.chunks_mut(8) {
        let mut hasher = state.build_hasher();
        hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
        hasher.write_u128(
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or_default(),
        );
        let bytes = hasher.finish().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

/// A random version-4 GUID in its usual lowercase hyphenated form.
pub(crate) fn guid() -> String {
    let mut b = [0u8; 16];
    fill_random(&mut b);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// `n` random bytes as unpadded base64url (opaque tokens and endpoint keys).
pub(crate) fn random_token(n: usize) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bytes = vec![0u8; n];
    fill_random(&mut bytes);
    let mut out = String::with_capacity(n * 4 / 3 + 3);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let v = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let idx = (v >> (18 - 6 * i)) & 0x3f;
            out.push(char::from(ALPHABET[idx as usize]));
        }
    }
    out
}

/// Seconds since the Unix epoch.
pub(crate) fn unix_secs(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

/// Civil date (year, month, day) of a day count since 1970-01-01 (proleptic Gregorian).
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn split_time(t: SystemTime) -> (i64, u32, u32, u64, u64, u64, u32) {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, mo, da) = civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    (
        y,
        mo,
        da,
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60,
        d.subsec_nanos(),
    )
}

/// RFC 3339 UTC timestamp with 7 fractional digits, as ARM writes them
/// (`2024-05-01T10:11:12.1234567Z`).
pub(crate) fn rfc3339(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, nanos) = split_time(t);
    format!(
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:07}Z",
        nanos / 100
    )
}

/// The timestamp format of Entra error bodies (`2024-05-01 10:11:12Z`).
pub(crate) fn entra_timestamp(t: SystemTime) -> String {
    let (y, mo, d, h, mi, s, _) = split_time(t);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}Z")
}

/// Decodes an `application/x-www-form-urlencoded` string (also used for query strings).
/// Later duplicates win; undecodable escapes are kept verbatim.
pub(crate) fn parse_form(input: &str) -> HashMap<String, String> {
    input
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' => {
                let decoded = s
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match decoded {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Lowercase, without spaces: ARM's canonical region name (`East US` -> `eastus`).
pub(crate) fn normalize_location(location: &str) -> String {
    location
        .chars()
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect()
}

/// The value at a `/`-separated path of object keys.
pub(crate) fn get_path<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('/').try_fold(v, |cur, key| cur.get(key))
}

/// Sets the value at a `/`-separated path, creating intermediate objects (replacing non-objects).
pub(crate) fn set_path(v: &mut Value, path: &str, value: Value) {
    let mut cur = v;
    let mut keys = path.split('/').peekable();
    while let Some(key) = keys.next() {
        if !cur.is_object() {
            *cur = Value::Object(serde_json::Map::new());
        }
        let Value::Object(map) = cur else { return };
        if keys.peek().is_none() {
            map.insert(key.to_owned(), value);
            return;
        }
        cur = map
            .entry(key.to_owned())
            .or_insert_with(|| Value::Object(serde_json::Map::new()));
    }
}

/// Sets the value at `path` only when nothing is there yet (server-side defaults).
pub(crate) fn default_path(v: &mut Value, path: &str, value: Value) {
    if get_path(v, path).is_none_or(Value::is_null) {
        set_path(v, path, value);
    }
}

/// Removes the value at a `/`-separated path, if present.
pub(crate) fn remove_path(v: &mut Value, path: &str) {
    let (parent, last) = match path.rsplit_once('/') {
        Some((p, l)) => (p, l),
        None => ("", path),
    };
    let target = if parent.is_empty() {
        Some(v)
    } else {
        parent.split('/').try_fold(v, |cur, key| cur.get_mut(key))
    };
    if let Some(Value::Object(map)) = target {
        map.remove(last);
    }
}

/// RFC 7386 JSON merge patch.
pub(crate) fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch_map) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(serde_json::Map::new());
    }
    let Value::Object(map) = target else { return };
    for (k, v) in patch_map {
        if v.is_null() {
            map.remove(k);
        } else {
            merge_patch(map.entry(k.clone()).or_insert(Value::Null), v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instant() {
        let t = UNIX_EPOCH + std::time::Duration::from_millis(1_714_558_272_123);
        assert_eq!(rfc3339(t), "2024-05-01T10:11:12.1230000Z");
        assert_eq!(entra_timestamp(t), "2024-05-01 10:11:12Z");
    }

    #[test]
    fn decodes_forms() {
        let f = parse_form("a=b%2Fc&scope=https%3A%2F%2Fx%2F.default&s=a+b&bad=%zz&e");
        assert_eq!(f["a"], "b/c");
        assert_eq!(f["scope"], "https://x/.default");
        assert_eq!(f["s"], "a b");
        assert_eq!(f["bad"], "%zz");
        assert_eq!(f["e"], "");
    }

    #[test]
    fn guids_and_tokens_look_right() {
        let g = guid();
        assert_eq!(g.len(), 36);
        assert_eq!(&g[14..15], "4");
        assert_ne!(guid(), g);
        assert_eq!(random_token(3).len(), 4);
        assert_eq!(random_token(32).len(), 43);
    }

    #[test]
    fn paths() {
        let mut v = serde_json::json!({"a": {"b": 1}});
        set_path(&mut v, "a/c/d", Value::from(2));
        default_path(&mut v, "a/b", Value::from(5));
        default_path(&mut v, "x", Value::from(6));
        assert_eq!(v, serde_json::json!({"a": {"b": 1, "c": {"d": 2}}, "x": 6}));
        remove_path(&mut v, "a/c/d");
        remove_path(&mut v, "x");
        assert_eq!(v, serde_json::json!({"a": {"b": 1, "c": {}}}));
        merge_patch(&mut v, &serde_json::json!({"a": {"b": null, "z": 1}}));
        assert_eq!(v, serde_json::json!({"a": {"c": {}, "z": 1}}));
    }
}
