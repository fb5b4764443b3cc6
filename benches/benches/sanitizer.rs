//! Sanitizer throughput and injection survival, side by side with trafilatura, nh3 and
//! readability-lxml on the same corpus.
//!
//! Runs `../shared/peers/sanitizer.sh` (relative to the repository root), which builds
//! the corpus (200 realistic pages with planted prompt injections, ~22 MB) in
//! `/opt/peers/html-corpus` and times the peers; then times this crate's sanitizer on
//! one thread over the same files and counts the pages on which a planted injection
//! survives, separately for hidden plants (display:none, hidden, aria-hidden/off-screen,
//! font-size:0, comments, noscript, alt text) and visible ones (inside a paragraph).
//!
//! Environment: `CORPUS_DIR` (default `/opt/peers/html-corpus`), `SKIP_PEERS=1` to use
//! an existing corpus without running the peers, `PEERS_DIR` (the folder holding
//! `sanitizer.sh`), `PASSES` (default 5; the median pass is reported).
//!
//! Run: `cargo bench -p cynode-benches --bench sanitizer`.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use cynode_egress::sanitize::{ContentKind, SanitizeOptions, SanitizeRules, Sanitizer};

/// The phrases the peers' script checks for (same test, so the counts compare).
const PHRASES: &[&str] = &[
    "ignore previous instructions",
    "ignore all prior instructions",
    "disregard your guidelines",
    "forget everything above",
];

#[derive(Default, Debug)]
struct Peer {
    mb_s: Option<f64>,
    survives: Option<String>,
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// `../shared/peers/sanitizer.sh` from the repository root; from a nested checkout
/// (a worktree) the nearest ancestor holding `shared/peers/` is used. `PEERS_DIR`
/// overrides.
fn peers_script() -> Option<PathBuf> {
    if let Ok(dir) = std::env::var("PEERS_DIR") {
        return Some(PathBuf::from(dir).join("sanitizer.sh"));
    }
    let root = repo_root();
    root.ancestors()
        .map(|a| a.join("shared/peers/sanitizer.sh"))
        .find(|p| p.is_file())
}

fn run_peers(corpus: &Path) -> (String, Vec<(String, Peer)>) {
    let Some(script) = peers_script() else {
        eprintln!("[sanitizer bench] ../shared/peers/sanitizer.sh not found; set PEERS_DIR");
        return (String::new(), Vec::new());
    };
    eprintln!("[sanitizer bench] running {}", script.display());
    let out = match Command::new("bash").arg(&script).arg(corpus).output() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("[sanitizer bench] could not run the peers: {e}");
            return (String::new(), Vec::new());
        }
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprint!("{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .rfind(|l| l.starts_with("sanitizer-peers:"))
        .unwrap_or("")
        .to_string();
    println!("{line}");
    let mut peers = Vec::new();
    for name in ["trafilatura", "nh3", "readability"] {
        let mut p = Peer::default();
        let key = format!("{name}_mb_s=");
        if let Some(v) = line
            .split_whitespace()
            .find_map(|w| w.strip_prefix(key.as_str()))
        {
            p.mb_s = v.parse().ok();
        }
        let tag = format!("[bench] {name}:");
        if let Some(l) = stderr.lines().find(|l| l.starts_with(&tag)) {
            p.survives = l
                .rsplit("survives on ")
                .next()
                .map(|s| s.trim_end_matches(" pages").to_string());
        }
        peers.push((name.to_string(), p));
    }
    (line, peers)
}

fn load(corpus: &Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus)
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("page-") && n.ends_with(".html"))
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files
        .iter()
        .filter_map(|f| std::fs::read_to_string(f).ok())
        .collect()
}

/// Byte ranges of every planted phrase, with whether the plant is hidden.
///
/// The generator wraps a hidden plant in a hiding element, a comment or an `alt`
/// attribute, and puts a visible plant directly inside a bare `<p>` with prose; so a
/// plant is visible exactly when the innermost markup before it is `<p>` and it is not
/// inside a tag.
fn plants(page: &str) -> Vec<(usize, usize, bool)> {
    let lower = page.to_ascii_lowercase();
    let mut v = Vec::new();
    for p in PHRASES {
        let mut from = 0;
        while let Some(off) = lower[from..].find(p) {
            let at = from + off;
            let before = &lower[..at];
            let lt = before.rfind('<').unwrap_or(0);
            let gt = before.rfind('>');
            let inside_tag = gt.is_none_or(|g| g < lt);
            let hidden = inside_tag || !before[lt..].starts_with("<p>");
            v.push((at, at + p.len(), hidden));
            from = at + p.len();
        }
    }
    v.sort_unstable();
    v
}

fn without(page: &str, plants: &[(usize, usize, bool)], drop_hidden: bool) -> String {
    let mut out = String::with_capacity(page.len());
    let mut last = 0;
    for &(a, z, hidden) in plants {
        if hidden == drop_hidden {
            out.push_str(&page[last..a]);
            last = z;
        }
    }
    out.push_str(&page[last..]);
    out
}

/// CPU time of this thread in seconds (Linux), to show what the machine's load does
/// to the wall-clock figure.
fn thread_cpu() -> Option<f64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: f64 = s.split_whitespace().next()?.parse().ok()?;
    Some(ns / 1e9)
}

fn survives(text: &str) -> bool {
    let low = text.to_lowercase();
    PHRASES.iter().any(|p| low.contains(p))
}

fn main() {
    let corpus = PathBuf::from(
        std::env::var("CORPUS_DIR").unwrap_or_else(|_| "/opt/peers/html-corpus".into()),
    );
    let passes: usize = std::env::var("PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let (_, peers) = if std::env::var("SKIP_PEERS").is_ok_and(|v| v == "1") {
        (String::new(), Vec::new())
    } else {
        run_peers(&corpus)
    };
    let docs = load(&corpus);
    if docs.is_empty() {
        eprintln!("[sanitizer bench] no corpus in {}", corpus.display());
        std::process::exit(1);
    }
    let bytes: usize = docs.iter().map(String::len).sum();
    let mb = bytes as f64 / 1e6;

    // Default rules, except no output cap: a cap would hide late injections and make
    // the survival count meaningless (the peers output everything too).
    let mut rules = SanitizeRules::default();
    rules.sanitization.max_output_chars = usize::MAX;
    let Ok(s) = Sanitizer::new(rules) else {
        eprintln!("[sanitizer bench] default rules do not compile");
        std::process::exit(1);
    };
    let opts = SanitizeOptions::default();

    for d in docs.iter().take(10) {
        std::hint::black_box(s.sanitize_with(d, ContentKind::Html, &opts));
    }
    let mut times = Vec::with_capacity(passes);
    let mut cpu_times = Vec::with_capacity(passes);
    let mut out_bytes = 0usize;
    let mut outs = Vec::new();
    for pass in 0..passes {
        let c0 = thread_cpu();
        let t0 = Instant::now();
        let o: Vec<_> = docs
            .iter()
            .map(|d| s.sanitize_with(d, ContentKind::Html, &opts))
            .collect();
        times.push(t0.elapsed().as_secs_f64());
        if let (Some(a), Some(b)) = (c0, thread_cpu()) {
            cpu_times.push(b - a);
        }
        if pass == 0 {
            out_bytes = o.iter().map(|r| r.text.len()).sum();
            outs = o;
        }
    }
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted[sorted.len() / 2];
    let best = sorted[0];
    let ours = mb / median;
    cpu_times.sort_by(f64::total_cmp);
    let cpu_mb_s = cpu_times.get(cpu_times.len() / 2).map(|c| mb / c);

    // Survival: any plant; then hidden plants alone (visible ones removed from the
    // input) and visible plants alone (hidden ones removed).
    let any = outs.iter().filter(|o| survives(&o.text)).count();
    let (mut hidden_pages, mut visible_pages, mut hidden_surv, mut visible_surv) = (0, 0, 0, 0);
    for d in &docs {
        let p = plants(d);
        if p.iter().any(|x| x.2) {
            hidden_pages += 1;
            let only_hidden = without(d, &p, false);
            if survives(&s.sanitize_with(&only_hidden, ContentKind::Html, &opts).text) {
                hidden_surv += 1;
            }
        }
        if p.iter().any(|x| !x.2) {
            visible_pages += 1;
            let only_visible = without(d, &p, true);
            if survives(
                &s.sanitize_with(&only_visible, ContentKind::Html, &opts)
                    .text,
            ) {
                visible_surv += 1;
            }
        }
    }
    let n = docs.len();
    eprintln!(
        "[sanitizer bench] cynode: {passes} passes, median {median:.3} s (best {best:.3} s) -> {ours:.1} MB/s; \
         output {:.2} MB; injection phrase survives on {any}/{n} pages; on-CPU throughput {} MB/s",
        out_bytes as f64 / 1e6,
        cpu_mb_s.map_or("?".into(), |c| format!("{c:.1}"))
    );

    let peer = |name: &str| peers.iter().find(|(n, _)| n == name).map(|(_, p)| p);
    println!();
    println!(
        "sanitizer throughput, single thread, {n} pages, {mb:.2} MB (MB = 10^6 bytes), same run"
    );
    println!(
        "{:<14} {:>10} {:>12} {:>26}",
        "tool", "MB/s", "ours is", "injection survives (pages)"
    );
    println!(
        "{:<14} {:>10.1} {:>12} {:>26}",
        "cynode",
        ours,
        "",
        format!(
            "{any}/{n} (hidden {hidden_surv}/{hidden_pages}, visible {visible_surv}/{visible_pages})"
        )
    );
    let mut ratios = Vec::new();
    for name in ["trafilatura", "nh3", "readability"] {
        if let Some(p) = peer(name) {
            let ratio = p.mb_s.map(|m| ours / m);
            println!(
                "{:<14} {:>10} {:>12} {:>26}",
                name,
                p.mb_s.map_or("?".into(), |m| format!("{m:.2}")),
                ratio.map_or("?".into(), |r| format!("{r:.1}x faster")),
                p.survives.clone().unwrap_or_else(|| "?".into())
            );
            if let Some(r) = ratio {
                ratios.push(format!("ratio_{name}={r:.1}"));
            }
        }
    }
    println!(
        "(wall-clock for every tool; cynode's on-CPU figure, unaffected by other load on the machine: {} MB/s)",
        cpu_mb_s.map_or("?".into(), |c| format!("{c:.1}"))
    );
    println!(
        "sanitizer: cynode_mb_s={ours:.1} cynode_cpu_mb_s={} {} survive_any={any} survive_hidden={hidden_surv} survive_visible={visible_surv} pages={n} corpus_mb={mb:.2}",
        cpu_mb_s.map_or("?".into(), |c| format!("{c:.1}")),
        ratios.join(" ")
    );
}
