//! The CyNodeAI orchestrator: storage, scheduler, gateway and control plane in one
//! process. Not yet assembled: it currently exits with a message saying so.

fn main() {
    eprintln!("cynode-orchestrator: not yet assembled (storage layer only in this build)");
    std::process::exit(1);
}
