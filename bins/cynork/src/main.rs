//! `cynork`, the CyNodeAI command-line client. Not yet assembled: it currently exits
//! with a message saying so.

fn main() {
    eprintln!("cynork: not yet assembled");
    std::process::exit(1);
}
