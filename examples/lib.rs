//! Examples of embedding CyNodeAI; run one with `cargo run -p cynode-examples --example NAME`.
