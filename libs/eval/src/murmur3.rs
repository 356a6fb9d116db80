//! MurmurHash3 x86_32, streaming, so that a rollout can hash its fixed `salt + "."` prefix once at
//! compile time and only the context's value per evaluation (no concatenation, no allocation).

const C1: u32 = 0xcc9e_2d51;
const C2: u32 = 0x1b87_3593;

fn scramble(k: u32) -> u32 {
    k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2)
}

fn mix_block(h: u32, block: u32) -> u32 {
    (h ^ scramble(block)).rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64)
}

fn finalize(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

/// A MurmurHash3 x86_32 computation in progress. `Copy`, so a state fed a fixed prefix can be reused
/// for many suffixes.
#[derive(Debug, Clone, Copy)]
pub struct Murmur3 {
    h: u32,
    /// Bytes of an incomplete block, little-endian: kept in a register, not a byte buffer, because
    /// writing bytes to memory and reading them back as a word stalls store forwarding.
    tail: u32,
    tail_len: u32,
    total_len: usize,
}

impl Murmur3 {
    /// Starts a hash with `seed`.
    pub fn new(seed: u32) -> Murmur3 {
        Murmur3 { h: seed, tail: 0, tail_len: 0, total_len: 0 }
    }

    /// Feeds more bytes.
    pub fn update(mut self, bytes: &[u8]) -> Murmur3 {
        self.total_len += bytes.len();
        let mut rest = bytes;
        if self.tail_len > 0 {
            while self.tail_len < 4 {
                let Some((&byte, after)) = rest.split_first() else { return self };
                self.push_tail(byte);
                rest = after;
            }
            self.h = mix_block(self.h, self.tail);
            self.tail = 0;
            self.tail_len = 0;
        }
        let mut blocks = rest.chunks_exact(4);
        for block in &mut blocks {
            self.h = mix_block(self.h, u32::from_le_bytes([block[0], block[1], block[2], block[3]]));
        }
        for &byte in blocks.remainder() {
            self.push_tail(byte);
        }
        self
    }

    fn push_tail(&mut self, byte: u8) {
        self.tail |= u32::from(byte) << (8 * self.tail_len);
        self.tail_len += 1;
    }

    /// The hash of everything fed so far.
    pub fn finish(self) -> u32 {
        let mut h = self.h;
        if self.tail_len > 0 {
            h ^= scramble(self.tail);
        }
        // The reference implementation mixes in the length modulo 2^32.
        finalize(h ^ self.total_len as u32)
    }
}

/// MurmurHash3 (x86, 32-bit) of the concatenation of `parts`, with `seed`.
pub fn murmur3_x86_32(parts: &[&[u8]], seed: u32) -> u32 {
    parts.iter().fold(Murmur3::new(seed), |state, part| state.update(part)).finish()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn it_matches_the_reference_values() {
        // From the reference implementation (SMHasher) and PyPI's mmh3.
        assert_eq!(murmur3_x86_32(&[b""], 0), 0);
        assert_eq!(murmur3_x86_32(&[b""], 1), 0x514e_28b7);
        assert_eq!(murmur3_x86_32(&[b"hello"], 0), 0x248b_fa47);
        assert_eq!(murmur3_x86_32(&[b"The quick brown fox jumps over the lazy dog"], 0), 0x2e4f_f723);
    }

    proptest! {
        #[test]
        fn splitting_the_input_does_not_change_the_hash(bytes in proptest::collection::vec(any::<u8>(), 0..64), a in 0usize..64, b in 0usize..64, seed: u32) {
            let (a, b) = (a.min(bytes.len()), b.min(bytes.len()));
            let (lo, hi) = (a.min(b), a.max(b));
            let whole = murmur3_x86_32(&[&bytes], seed);
            let parts = murmur3_x86_32(&[&bytes[..lo], &bytes[lo..hi], &bytes[hi..]], seed);
            prop_assert_eq!(whole, parts);
        }
    }
}
