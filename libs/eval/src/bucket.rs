//! Bucketing: where a context falls in a rollout. This must agree in every SDK, forever.

use crate::murmur3::Murmur3;

/// Number of buckets: weights are thousandths of a percent.
pub const BUCKETS: u64 = 100_000;

/// The bucket, in `[0, 100 000)`, of `value` under `salt`:
/// `(murmur3_x86_32(salt + "." + value, 0) * 100 000) >> 32`.
///
/// Integer arithmetic only, so every platform and language computes the same bucket.
pub fn bucket(salt: &str, value: &str) -> u32 {
    Bucketer::new(salt).bucket(value)
}

/// [`bucket`] with the salt's part of the hash computed once, for a compiled rollout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Bucketer(Murmur3);

impl Bucketer {
    pub(crate) fn new(salt: &str) -> Bucketer {
        Bucketer(Murmur3::new(0).update(salt.as_bytes()).update(b"."))
    }

    pub(crate) fn bucket(self, value: &str) -> u32 {
        let hash = self.0.update(value.as_bytes()).finish();
        ((u64::from(hash) * BUCKETS) >> 32) as u32
    }
}

/// Picks the variation for `bucket` by walking `weights` in order; the last one absorbs rounding.
/// `weights` must not be empty.
pub(crate) fn pick(weights: &[(usize, u32)], bucket: u32) -> usize {
    let mut upper = 0u32;
    for &(variation, weight) in weights {
        upper += weight;
        if bucket < upper {
            return variation;
        }
    }
    weights.last().map_or(0, |&(variation, _)| variation)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_is_picked_by_cumulative_weight() {
        let weights = [(0, 25_000), (1, 75_000)];
        assert_eq!(pick(&weights, 0), 0);
        assert_eq!(pick(&weights, 24_999), 0);
        assert_eq!(pick(&weights, 25_000), 1);
        assert_eq!(pick(&weights, 99_999), 1);
    }

    #[test]
    fn a_zero_weight_variation_is_never_picked_and_the_last_absorbs_rounding() {
        let weights = [(2, 0), (0, 100_000)];
        assert!((0..100_000).step_by(997).all(|b| pick(&weights, b) == 0));
        assert_eq!(pick(&[(1, 10)], 50_000), 1);
    }

    #[test]
    fn a_precomputed_salt_buckets_like_the_plain_function() {
        let bucketer = Bucketer::new("new-checkout");
        for value in ["", "a", "user-1", "a-rather-longer-value-that-spans-blocks"] {
            let expected =
                ((u64::from(crate::murmur3_x86_32(&[format!("new-checkout.{value}").as_bytes()], 0))
                    * BUCKETS)
                    >> 32) as u32;
            assert_eq!(bucketer.bucket(value), expected, "{value:?}");
        }
    }
}
