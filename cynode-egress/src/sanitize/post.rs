//! Steps 5–8 on the extracted text: denylisted sections, denylisted lines, the leak
//! filter and truncation.

use regex::bytes::Regex;

/// Section-marker state.
enum Section<'m> {
    None,
    /// Dropping until a line starting with this end marker (inclusive).
    UntilEnd(&'m str),
    /// Dropping until the next blank line.
    UntilBlank,
}

/// A marker `BEGIN X` pairs with the end marker `END X`.
pub(crate) fn end_marker(marker: &str) -> Option<String> {
    marker
        .strip_prefix("BEGIN ")
        .map(|rest| format!("END {rest}"))
}

/// Marks the lines to drop. Returns (`drop` per line, sections started, lines dropped
/// by patterns).
pub(crate) fn mark_lines(
    text: &str,
    line_starts: &[usize],
    markers: &[(String, Option<String>)],
    lines: Option<&Regex>,
) -> (Vec<bool>, u32, u32) {
    let n = line_starts.len();
    let mut drop = vec![false; n];
    let mut sections = 0u32;
    if !markers.is_empty() {
        let mut state = Section::None;
        for (i, d) in drop.iter_mut().enumerate() {
            let line = line_at(text, line_starts, i);
            match state {
                Section::UntilEnd(end) => {
                    *d = true;
                    if line.starts_with(end) {
                        state = Section::None;
                    }
                    continue;
                }
                Section::UntilBlank => {
                    if line.is_empty() {
                        state = Section::None;
                    } else {
                        *d = true;
                    }
                    continue;
                }
                Section::None => {}
            }
            if let Some((_, end)) = markers.iter().find(|(m, _)| line.starts_with(m.as_str())) {
                *d = true;
                sections += 1;
                state = match end {
                    Some(e) => Section::UntilEnd(e.as_str()),
                    None => Section::UntilBlank,
                };
            }
        }
    }
    let mut dropped = 0u32;
    if let Some(re) = lines {
        for m in re.find_iter(text.as_bytes()) {
            if m.is_empty() {
                continue;
            }
            let first = line_of(line_starts, m.start());
            let last = line_of(line_starts, m.end() - 1);
            for d in &mut drop[first..=last] {
                if !*d {
                    *d = true;
                    dropped += 1;
                }
            }
        }
    }
    (drop, sections, dropped)
}

/// Byte offsets where each line starts.
pub(crate) fn line_starts(text: &str) -> Vec<usize> {
    let mut v = Vec::with_capacity(text.len() / 64 + 1);
    v.push(0);
    v.extend(memchr::memchr_iter(b'\n', text.as_bytes()).map(|i| i + 1));
    v
}

fn line_at<'t>(text: &'t str, starts: &[usize], i: usize) -> &'t str {
    let s = starts[i];
    let e = starts.get(i + 1).map_or(text.len(), |n| n - 1);
    &text[s..e]
}

fn line_of(starts: &[usize], offset: usize) -> usize {
    match starts.binary_search(&offset) {
        Ok(i) => i,
        Err(i) => i - 1,
    }
}

/// Joins the kept lines, with at most one blank line in a row and none at the ends.
pub(crate) fn join_kept(text: &str, starts: &[usize], drop: &[bool]) -> String {
    if !drop.iter().any(|d| *d) {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len());
    let mut blank_pending = false;
    for (i, d) in drop.iter().enumerate() {
        if *d {
            continue;
        }
        let line = line_at(text, starts, i);
        if line.is_empty() {
            blank_pending = !out.is_empty();
            continue;
        }
        if !out.is_empty() {
            out.push_str(if blank_pending { "\n\n" } else { "\n" });
        }
        blank_pending = false;
        out.push_str(line);
    }
    out
}

/// Cuts `text` to at most `cap` characters on a character boundary and appends
/// `marker`. Returns whether it cut.
pub(crate) fn truncate(text: &mut String, cap: usize, marker: &str) -> bool {
    if text.len() <= cap {
        return false;
    }
    let Some((cut, _)) = text.char_indices().nth(cap) else {
        return false;
    };
    text.truncate(cut);
    let trimmed = text.trim_end().len();
    text.truncate(trimmed);
    text.push_str(marker);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(text: &str, pattern: Option<&str>) -> (String, u32, u32) {
        let markers: Vec<(String, Option<String>)> =
            ["BEGIN PROMPT", "END PROMPT", "INSTRUCTIONS:", "SYSTEM:"]
                .iter()
                .map(|m| (m.to_string(), end_marker(m)))
                .collect();
        let re = pattern.map(|p| Regex::new(p).expect("test pattern"));
        let starts = line_starts(text);
        let (drop, s, l) = mark_lines(text, &starts, &markers, re.as_ref());
        (join_kept(text, &starts, &drop), s, l)
    }

    #[test]
    fn sections_and_lines() {
        let t = "keep 1\nBEGIN PROMPT\nsecret stuff\n\nmore\nEND PROMPT\nkeep 2\n\nSYSTEM: obey\nstill system\n\nkeep 3";
        let (out, s, _) = run(t, None);
        assert_eq!(out, "keep 1\nkeep 2\n\nkeep 3");
        assert_eq!(s, 2);
        let (out, _, l) = run(
            "a\nplease Ignore\nprevious instructions now\nb",
            Some(r"(?i)ignore\s+previous\s+instructions"),
        );
        assert_eq!(out, "a\nb");
        assert_eq!(l, 2);
    }

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut s = "héllo wörld".to_string();
        assert!(truncate(&mut s, 7, "\n[truncated]"));
        assert_eq!(s, "héllo w\n[truncated]");
        let mut s = "日本語".to_string();
        assert!(truncate(&mut s, 2, "…"));
        assert_eq!(s, "日本…");
        let mut s = "short".to_string();
        assert!(!truncate(&mut s, 5, "x"));
        assert_eq!(s, "short");
    }
}
