//! The CyNodeAI worker (node manager): registers with the orchestrator and runs jobs in
//! sandboxes. Not yet assembled: it currently exits with a message saying so.

fn main() {
    eprintln!("cynode-worker: not yet assembled");
    std::process::exit(1);
}
