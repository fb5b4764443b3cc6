//! Fuzzes the sanitizer: any bytes (made UTF-8 with replacement characters, as a page
//! body would be) through every content kind, mode and a few rule variants. Panics only
//! if the sanitizer panics or breaks an invariant (determinism, cap, clean output).
//!
//! Run: `cargo +nightly fuzz run sanitize` from `cynode-egress/`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    cynode_egress::sanitize::fuzz_one(data);
});
