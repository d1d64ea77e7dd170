//! A SHA-256 Merkle tree over the interval records a certificate used.
//!
//! The Merkle tree hash of RFC 6962 §2.1: leaf = SHA-256(0x00 ‖ record line), node =
//! SHA-256(0x01 ‖ left ‖ right) (domain separation, so a leaf cannot pose as a node), the left
//! subtree the largest power of two below n. Built level by level with an odd node carried up
//! unchanged, which gives the same root; tested against pymerkle in `tests/outside_peers.rs`. The
//! record line is the canonical text of `IntervalRecord::canonical_line` (RFC 3339 start in the
//! park's zone, energies with 6 decimals), so anyone can recompute the root from the records.

use sha2::{Digest, Sha256};

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Bytes of a hex string, if it is one.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

fn leaf(line: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0u8]);
    h.update(line.as_bytes());
    h.finalize().into()
}

fn node(l: &[u8; 32], r: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([1u8]);
    h.update(l);
    h.update(r);
    h.finalize().into()
}

/// The root over `lines` in order (SHA-256 of nothing for no lines, as RFC 6962 has it).
pub fn merkle_root<S: AsRef<str>>(lines: &[S]) -> [u8; 32] {
    let mut level: Vec<[u8; 32]> = lines.iter().map(|l| leaf(l.as_ref())).collect();
    if level.is_empty() {
        return Sha256::digest([]).into();
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|c| {
                if c.len() == 2 {
                    node(&c[0], &c[1])
                } else {
                    c[0]
                }
            })
            .collect();
    }
    level[0]
}

/// SHA-256 of bytes, hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_change_with_any_line_and_order() {
        let a = merkle_root(&["a", "b", "c"]);
        assert_ne!(a, merkle_root(&["a", "b", "d"]));
        assert_ne!(a, merkle_root(&["b", "a", "c"]));
        assert_ne!(a, merkle_root(&["a", "b"]));
        assert_eq!(a, merkle_root(&["a", "b", "c"]));
        assert_eq!(
            hex(&merkle_root::<&str>(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // A single leaf is its own root; a leaf hash differs from the line's plain hash.
        assert_ne!(hex(&merkle_root(&["x"])), sha256_hex(b"x"));
        assert_eq!(unhex(&hex(&[0, 15, 255])), Some(vec![0, 15, 255]));
        assert_eq!(unhex("zz"), None);
    }
}
