//! The one content hash the mesh uses for versions (store objects, MCP collections, xDS
//! resources): 64-bit FNV-1a, stable across processes, restarts and Rust versions, unlike
//! `std`'s hasher.

/// FNV-1a over `bytes`.
pub fn fnv1a64(bytes: impl IntoIterator<Item = u8>) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in bytes {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash
}

/// FNV-1a as 16 hex digits, the form versions are written in.
pub fn fnv1a64_hex(bytes: impl IntoIterator<Item = u8>) -> String {
    format!("{:016x}", fnv1a64(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_fnv1a_reference_values() {
        assert_eq!(fnv1a64(*b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(*b"a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64_hex(*b"foobar"), "85944171f73967e8");
    }
}
