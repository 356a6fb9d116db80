//! Bucketing must agree in every SDK, forever: these vectors were produced by an independent
//! MurmurHash3 implementation (PyPI `mmh3`) and must never change.

use vexil_eval::{bucket, murmur3_x86_32};

#[test]
fn the_published_bucketing_vectors_hold() {
    let text = include_str!("data/bucketing-vectors.csv");
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.starts_with('#')).skip(1) {
        let fields: Vec<&str> = line.split(',').collect();
        let [salt, value, hash, expected] = fields[..] else { panic!("malformed vector line {line:?}") };
        let input = format!("{salt}.{value}");
        assert_eq!(murmur3_x86_32(&[input.as_bytes()], 0), hash.parse::<u32>().unwrap(), "hash of {input:?}");
        assert_eq!(bucket(salt, value), expected.parse::<u32>().unwrap(), "bucket of {input:?}");
        checked += 1;
    }
    assert!(checked >= 30, "only {checked} vectors");
}
